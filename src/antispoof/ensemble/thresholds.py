"""Decision thresholds fitted on OOF scores (rule everywhere: score < threshold -> spoof).

F1 depends on the class balance, and the hidden test split need not have the OOF balance
(SpoofBench-mini: 48 % spoof in training, 45 % in test). With an expected test spoof share
(`prior`), every OOF clip is weighted so that the weighted spoof share equals it, and the
F1-optimal threshold is searched on the weighted counts: a larger expected spoof share makes
false alarms relatively cheaper, so the threshold moves up (more clips called spoof).
The EER threshold needs no prior: FRR and FAR are rates within each class.
"""
from __future__ import annotations

import numpy as np

from antispoof.metrics.detection import best_f1_threshold, bonafide_mask, compute_eer

RULES = ("f1", "eer")


def prior_weights(labels, prior: float | None) -> np.ndarray:
    """Per-clip weights making the weighted spoof share equal `prior` (ones when None)."""
    spoof = ~bonafide_mask(labels)
    if prior is None:
        return np.ones(spoof.size)
    if not 0 < prior < 1:
        raise ValueError(f"threshold prior must be a spoof share in (0, 1), not {prior}")
    share = spoof.mean()
    if share in (0.0, 1.0):
        raise ValueError("a prior needs OOF clips of both classes")
    return np.where(spoof, prior / share, (1 - prior) / (1 - share))


def f1_threshold(scores, labels, prior: float | None = None) -> dict:
    """F1-optimal threshold for spoof as the positive class, with optional prior reweighting:
    metrics.best_f1_threshold on the clips weighted by `prior_weights`."""
    return best_f1_threshold(scores, labels, "spoof", sample_weight=prior_weights(labels, prior))


def eer_threshold(scores, labels) -> float:
    bona = bonafide_mask(labels)
    s = np.asarray(scores, dtype=float)
    return compute_eer(s[bona], s[~bona])[1]


def fit_threshold(scores, labels, rule: str = "f1", prior: float | None = None) -> float:
    """The threshold a system decides with: F1-optimal (with prior) or at the EER."""
    if rule == "f1":
        return f1_threshold(scores, labels, prior)["threshold"]
    if rule == "eer":
        return eer_threshold(scores, labels)
    raise ValueError(f"threshold rule must be one of {', '.join(RULES)}, not {rule!r}")
