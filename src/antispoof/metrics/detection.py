"""Utterance detection metrics: EER, minDCF, actDCF, Cllr, F1 and the thresholds behind them.

Conventions (DESIGN.md section 2): every score is "higher = more bona fide", and bona fide
is the target (positive) class of the DET curve, as in ASVspoof. Label arrays may hold the
strings ``bonafide`` / ``spoof`` or the segment convention 1 = bona fide, 0 = spoof.

The utterance metrics follow the ASVspoof 5 evaluation package (calculate_modules.py):

* the DET curve has one operating point per sorted score position plus the point where
  nothing is rejected; scores are sorted stably with bona fide before spoof, so inside a
  block of tied scores the package (and this module) visits intermediate points. Copying
  that rule makes our numbers match the official ones exactly, ties included;
* EER = mean(FRR, FAR) at the first point minimising |FRR - FAR|;
* minDCF = min over the DET points of Cmiss (1-Pspoof) FRR + Cfa Pspoof FAR, divided by
  the cost of the best decision made without looking at the data, min(Cmiss (1-Pspoof),
  Cfa Pspoof); so 1.0 means "no better than always accepting";
* actDCF = the same normalised cost at the Bayes threshold -log(beta) for LLR scores,
  beta = Cmiss (1-Pspoof) / (Cfa Pspoof); a bona fide score below it is a miss, a spoof
  score at or above it a false acceptance;
* Cllr = (mean log2(1 + e^-s) over bona fide + mean log2(1 + e^s) over spoof) / 2.

Every threshold this module returns is meant for the rule "score < threshold -> spoof".
"""
from __future__ import annotations

import math

import numpy as np

from antispoof.schema import LABELS

P_SPOOF = 0.05
C_MISS = 1.0
C_FA = 10.0


# ---- inputs -----------------------------------------------------------------------------

def finite_scores(x, name: str = "scores") -> np.ndarray:
    """1-D float64 copy; NaN or inf would silently corrupt the sort, so refuse them."""
    arr = np.asarray(x, dtype=np.float64).ravel()
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contain NaN or inf")
    return arr


def bonafide_mask(labels) -> np.ndarray:
    """Boolean "is bona fide" from string labels or 0/1 arrays (1 = bona fide).

    Accepting both lets utterance labels (strings) and segment labels (ints) share code.
    """
    arr = np.asarray(labels).ravel()
    if arr.dtype.kind in "biuf":
        if not np.all((arr == 0) | (arr == 1)):
            raise ValueError("numeric labels must be 0 (spoof) or 1 (bonafide)")
        return arr == 1
    text = arr.astype(str)
    unknown = ~np.isin(text, LABELS)
    if unknown.any():
        raise ValueError(f"unknown label {text[unknown][0]!r} (expected bonafide or spoof)")
    return text == "bonafide"


def _split(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    s = finite_scores(scores)
    bona = bonafide_mask(labels)
    if s.shape != bona.shape:
        raise ValueError(f"{s.size} scores but {bona.size} labels")
    return s[bona], s[~bona]


def _both_classes(bonafide, spoof) -> tuple[np.ndarray, np.ndarray]:
    bona, spf = finite_scores(bonafide, "bona fide scores"), finite_scores(spoof, "spoof scores")
    if bona.size == 0 or spf.size == 0:
        raise ValueError(f"need scores of both classes (got {bona.size} bona fide, {spf.size} spoof)")
    return bona, spf


# ---- DET-based metrics ------------------------------------------------------------------

def det_curve(bonafide_scores, spoof_scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FRR, FAR and thresholds at every operating point, exactly as the ASVspoof 5 package.

    Point k rejects the k lowest scores (k = 0..N) of the stable sort with bona fide first
    among ties. thresholds[k] is the lowest accepted score (one ulp above the maximum for
    k = N), so "score < threshold -> spoof" reproduces the point when no tie straddles it.
    """
    bona, spf = _both_classes(bonafide_scores, spoof_scores)
    all_scores = np.concatenate([bona, spf])
    is_bona = np.concatenate([np.ones(bona.size), np.zeros(spf.size)])
    order = np.argsort(all_scores, kind="stable")
    bona_rejected = np.cumsum(is_bona[order])
    spoof_rejected = np.arange(1, all_scores.size + 1) - bona_rejected
    frr = np.concatenate([[0.0], bona_rejected / bona.size])
    far = np.concatenate([[1.0], (spf.size - spoof_rejected) / spf.size])
    sorted_scores = all_scores[order]
    thresholds = np.concatenate([sorted_scores, [np.nextafter(sorted_scores[-1], np.inf)]])
    return frr, far, thresholds


def compute_eer(bonafide_scores, spoof_scores) -> tuple[float, float]:
    """Equal error rate (a fraction) and its threshold, from the package's DET points."""
    frr, far, thresholds = det_curve(bonafide_scores, spoof_scores)
    i = int(np.argmin(np.abs(frr - far)))
    return float((frr[i] + far[i]) / 2), float(thresholds[i])


def _default_cost(p_spoof: float, c_miss: float, c_fa: float) -> float:
    """Cost of the best data-blind decision (accept all or reject all): the DCF normaliser."""
    return min(c_miss * (1 - p_spoof), c_fa * p_spoof)


def min_dcf(bonafide_scores, spoof_scores, p_spoof: float = P_SPOOF,
            c_miss: float = C_MISS, c_fa: float = C_FA) -> tuple[float, float]:
    """Normalised minimum DCF over the DET points, and the threshold reaching it."""
    frr, far, thresholds = det_curve(bonafide_scores, spoof_scores)
    cost = c_miss * (1 - p_spoof) * frr + c_fa * p_spoof * far
    i = int(np.argmin(cost))
    return float(cost[i] / _default_cost(p_spoof, c_miss, c_fa)), float(thresholds[i])


def bayes_threshold(p_spoof: float = P_SPOOF, c_miss: float = C_MISS, c_fa: float = C_FA) -> float:
    """-log(beta): where a calibrated natural-log LLR minimises the expected cost."""
    return -math.log(c_miss * (1 - p_spoof) / (c_fa * p_spoof))


def act_dcf(bonafide_scores, spoof_scores, p_spoof: float = P_SPOOF,
            c_miss: float = C_MISS, c_fa: float = C_FA) -> tuple[float, float]:
    """Normalised DCF at the Bayes threshold: penalises badly calibrated (non-LLR) scores."""
    bona, spf = _both_classes(bonafide_scores, spoof_scores)
    threshold = bayes_threshold(p_spoof, c_miss, c_fa)
    p_miss = np.mean(bona < threshold)
    p_fa = np.mean(spf >= threshold)
    cost = c_miss * (1 - p_spoof) * p_miss + c_fa * p_spoof * p_fa
    return float(cost / _default_cost(p_spoof, c_miss, c_fa)), threshold


def cllr(bonafide_scores, spoof_scores) -> float:
    """Log-likelihood-ratio cost in bits, scores read as natural-log LLRs.

    logaddexp(0, x) = log(1 + e^x) without the overflow of the package's log1p(exp(x)).
    """
    bona, spf = _both_classes(bonafide_scores, spoof_scores)
    nats = np.mean(np.logaddexp(0.0, -bona)) + np.mean(np.logaddexp(0.0, spf))
    return float(nats / (2 * math.log(2)))


# ---- F1 ---------------------------------------------------------------------------------

def _scores_truth(scores, labels, positive: str) -> tuple[np.ndarray, np.ndarray]:
    """Scores and "is the positive class", refusing mismatched lengths (no broadcasting)."""
    if positive not in LABELS:
        raise ValueError(f"positive must be bonafide or spoof, not {positive!r}")
    s, bona = finite_scores(scores), bonafide_mask(labels)
    if s.shape != bona.shape:
        raise ValueError(f"{s.size} scores but {bona.size} labels")
    return s, (bona if positive == "bonafide" else ~bona)


def binary_scores(truth, predicted) -> dict:
    """F1, precision, recall and accuracy of boolean predictions of the positive class.

    An empty denominator gives 0 (sklearn's zero_division=0), never a NaN in a report.
    """
    truth, predicted = np.asarray(truth, bool), np.asarray(predicted, bool)
    tp = int(np.sum(truth & predicted))
    fp = int(np.sum(~truth & predicted))
    fn = int(np.sum(truth & ~predicted))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    accuracy = float(np.mean(truth == predicted)) if truth.size else 0.0
    return {"f1": f1, "precision": precision, "recall": recall, "accuracy": accuracy}


def f1_at_threshold(scores, labels, threshold: float, positive: str = "spoof") -> dict:
    """F1 / precision / recall / accuracy of the decision "score < threshold -> spoof"."""
    s, truth = _scores_truth(scores, labels, positive)
    spoof_pred = s < threshold
    return binary_scores(truth, spoof_pred if positive == "spoof" else ~spoof_pred)


def _threshold_above(value: float, distinct: np.ndarray) -> float:
    """A threshold t with value < t <= next distinct score: midway, so it transfers to new data."""
    i = int(np.searchsorted(distinct, value, side="right"))
    if i == distinct.size:
        return float(np.nextafter(value, np.inf))
    mid = (value + distinct[i]) / 2
    return float(mid if mid > value else distinct[i])


def best_f1_threshold(scores, labels, positive: str = "spoof", sample_weight=None) -> dict:
    """The F1-optimal threshold (rule "score < threshold -> spoof") and its F1/P/R.

    sklearn's precision_recall_curve evaluates every distinct score at once; for spoof as
    the positive class it runs on negated scores, whose ">= t" is our "<= score" cut.
    `sample_weight` weights the clips' counts (the ensemble's expected-prior reweighting).
    """
    from sklearn.metrics import precision_recall_curve  # here: importing sklearn costs ~1 s

    s, truth = _scores_truth(scores, labels, positive)
    if not truth.any():
        raise ValueError(f"no {positive} labels: F1 is undefined")
    sign = -1.0 if positive == "spoof" else 1.0
    precision, recall, cuts = precision_recall_curve(truth, sign * s, sample_weight=sample_weight)
    precision, recall = precision[:-1], recall[:-1]
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(denom), where=denom > 0)
    i = int(np.argmax(f1))
    if positive == "spoof":
        threshold = _threshold_above(-cuts[i], np.unique(s))
    else:
        threshold = float(cuts[i])
    return {"f1": float(f1[i]), "precision": float(precision[i]),
            "recall": float(recall[i]), "threshold": threshold}


# ---- utterance summary ------------------------------------------------------------------

def utterance_metrics(scores, labels, positive: str = "spoof") -> dict:
    """Every utterance-level number we report, from scores and labels, as plain floats.

    `positive` is the F1 positive class only; EER / DCF / Cllr always treat bona fide as
    the target, as ASVspoof does.
    """
    bona, spf = _split(scores, labels)
    eer, eer_thr = compute_eer(bona, spf)
    mindcf, mindcf_thr = min_dcf(bona, spf)
    actdcf, act_thr = act_dcf(bona, spf)
    at_eer = f1_at_threshold(scores, labels, eer_thr, positive)
    best = best_f1_threshold(scores, labels, positive)
    return {
        "n_bonafide": int(bona.size), "n_spoof": int(spf.size),
        "eer": eer, "eer_threshold": eer_thr,
        "min_dcf": mindcf, "min_dcf_threshold": mindcf_thr,
        "act_dcf": actdcf, "act_dcf_threshold": act_thr,
        "cllr": cllr(bona, spf),
        "f1_at_eer": at_eer["f1"], "precision_at_eer": at_eer["precision"],
        "recall_at_eer": at_eer["recall"],
        "best_f1": best["f1"], "best_f1_threshold": best["threshold"],
    }
