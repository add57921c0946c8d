"""Test conditions: which clips each per-condition figure is computed on, and the figures.

A pooled EER mixes conditions of very different difficulty (whole-utterance spoofs of a seen
system, an unseen system, partial spoofs, concatenations, languages training never heard), so
every results table shows one column per condition beside it. Each test clip carries one
`condition` (SpoofBench's `solution.csv`; importers leave it out when a corpus has no such
notion): a spoof condition is scored against the bona fide clips of seen languages
(`bonafide`), while `unseen_language` holds both classes of the unseen languages.
"""
from __future__ import annotations

import numpy as np

from antispoof.metrics.detection import binary_scores, bonafide_mask, compute_eer

# SpoofBench v3 splits whole-utterance spoofs by generation (seen_classical, seen_neural,
# unseen_neural); v2 data sets and imports carry seen_attack / unseen_attack.
CONDITIONS = ("seen_classical", "seen_neural", "seen_attack", "unseen_classical", "unseen_neural", "unseen_attack",
              "partial", "concatenation", "unseen_language")
BONAFIDE = "bonafide"


def condition_masks(conditions) -> dict[str, np.ndarray]:
    """Row masks of each condition present: its own rows, plus the seen-language bona fide
    rows for a spoof condition. Conditions with no rows are left out."""
    conditions = np.asarray(conditions, dtype=object)
    bona = conditions == BONAFIDE
    masks = {}
    for name in CONDITIONS:
        own = conditions == name
        if own.any():
            masks[name] = own if name == "unseen_language" else own | bona
    return masks


def eer_by_condition(scores, labels, conditions) -> dict[str, float]:
    """`pooled` and one EER per condition (NaN where a condition lacks one class)."""
    scores = np.asarray(scores, dtype=float)
    bona = bonafide_mask(labels)
    out = {"pooled": _eer(scores, bona)}
    for name, mask in condition_masks(conditions).items():
        out[name] = _eer(scores[mask], bona[mask])
    return out


def f1_by_condition(truth, predicted, conditions) -> dict[str, float]:
    """`pooled` and one F1 per condition of hard decisions (booleans: the positive class)."""
    truth, predicted = np.asarray(truth, dtype=bool), np.asarray(predicted, dtype=bool)
    out = {"pooled": binary_scores(truth, predicted)["f1"]}
    for name, mask in condition_masks(conditions).items():
        out[name] = binary_scores(truth[mask], predicted[mask])["f1"]
    return out


def _eer(scores: np.ndarray, bona: np.ndarray) -> float:
    if bona.all() or not bona.any():
        return float("nan")
    return float(compute_eer(scores[bona], scores[~bona])[0])


def bootstrap_half_width(scores, labels, n: int = 500, seed: int = 0) -> float:
    """Half the width of the 95 % interval of the EER over class-stratified bootstrap resamples."""
    scores = np.asarray(scores, dtype=float)
    bona = bonafide_mask(labels)
    b, s = scores[bona], scores[~bona]
    if not len(b) or not len(s):
        return float("nan")
    rng = np.random.default_rng(seed)
    eers = [compute_eer(b[rng.integers(0, len(b), len(b))], s[rng.integers(0, len(s), len(s))])[0]
            for _ in range(n)]
    low, high = np.percentile(eers, [2.5, 97.5])
    return float((high - low) / 2)


def expected_half_width(n_bonafide: int, n_spoof: int, eer: float = 0.10) -> float:
    """Normal-approximation 95 % half-width of an EER estimate at a given true EER: the miss
    and false-alarm rates at the EER threshold each vary binomially, and the EER is their mean."""
    if not n_bonafide or not n_spoof:
        return float("nan")
    return float(1.96 * np.sqrt(eer * (1 - eer) * (1 / n_bonafide + 1 / n_spoof) / 4))
