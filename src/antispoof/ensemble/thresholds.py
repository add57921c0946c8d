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
from sklearn.metrics import precision_recall_curve

from antispoof.metrics.detection import bonafide_mask, compute_eer

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


def _between(value: float, distinct: np.ndarray) -> float:
    """Midway from a score to the next higher distinct score, so the cut transfers to new data."""
    i = int(np.searchsorted(distinct, value, side="right"))
    return float(np.nextafter(value, np.inf)) if i == distinct.size else float((value + distinct[i]) / 2)


def f1_threshold(scores, labels, prior: float | None = None) -> dict:
    """F1-optimal threshold for spoof as the positive class, with optional prior reweighting.

    sklearn's precision_recall_curve on negated scores visits every cut "score <= s";
    the threshold is placed midway to the next distinct score (as metrics.best_f1_threshold).
    """
    s = np.asarray(scores, dtype=float)
    spoof = ~bonafide_mask(labels)
    if not spoof.any():
        raise ValueError("no spoof clips: F1 is undefined")
    precision, recall, cuts = precision_recall_curve(spoof, -s, sample_weight=prior_weights(labels, prior))
    precision, recall = precision[:-1], recall[:-1]
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(denom), where=denom > 0)
    i = int(np.argmax(f1))
    return {"threshold": _between(-cuts[i], np.unique(s)), "f1": float(f1[i]),
            "precision": float(precision[i]), "recall": float(recall[i])}


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
