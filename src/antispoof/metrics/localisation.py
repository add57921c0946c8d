"""Localisation metrics measured in time: range-based EER of segment scores, and precision /
recall / F1 of predicted spoofed regions. Point-based figures (counted frames) are in segments.py.

A point-based segment EER counts frames at a chosen resolution and labels a window spoof when
any of its 10 ms frames is, so its value moves with the resolution. Measuring in seconds
instead removes that choice (Zhang et al., "Range-based equal error rate for spoof
localization", Interspeech 2023; the PartialSpoof and WeDefense `rangeeer` tools):

* Range-based EER. Score frame k of a clip covers [k hop, (k+1) hop); the last frame is
  stretched or cut to end at the clip's end (10 ms labels x 0.01 s), frames starting after it
  are dropped. The reference is the clip's labelled time ranges (runs of equal 10 ms labels;
  unknown frames, label < 0, count for neither class). Every score frame is cut at the reference
  boundaries, so each piece has one score, one class and a duration. A threshold t labels the
  time of pieces scoring below t spoof (the rule "score < t -> spoof" everywhere here); then
  FRR(t) = bona fide seconds labelled spoof / bona fide seconds and FAR(t) = spoof seconds
  labelled bona fide / spoof seconds, pooled over clips. The range EER is (FRR + FAR) / 2 at the
  threshold, among every distinct piece score and one above the highest, minimising
  |FRR - FAR|: the point-based EER with pieces weighted by their seconds (thresholds between
  distinct scores only, so tied scores never split).

* Region scores, for a set of predicted spoofed regions (a regions file), spoof = positive:
  time-based: precision = predicted spoof seconds that are truly spoofed / predicted spoof
  seconds (within the labelled clip), recall = truly spoofed seconds covered / truly spoofed
  seconds, F1 = 2PR / (P + R); pooled over clips (micro), 0 for an empty denominator as in
  detection.binary_scores. range_frr / range_far are the two errors the range EER balances, at
  the file's decisions (range_far = 1 - recall).
  event-based: reference events are maximal runs of spoofed 10 ms frames, predicted events the
  file's regions with overlapping or touching ones merged; a predicted and a reference event
  match when their intersection over union is >= 0.5, one-to-one (scipy's assignment, maximum
  number of matches); precision = matches / predicted events, recall = matches / reference
  events. IoU >= 0.5 makes a match mean "the same region, roughly where it is", which the
  time-based figures cannot say (one long region over three short spoofs has recall 1 in time).
"""
from __future__ import annotations

import math

import numpy as np

from antispoof.metrics.detection import finite_scores
from antispoof.metrics.segments import _pairs
from antispoof.schema import SEGMENT_HOP_S

IOU = 0.5
_DIGITS = 9  # boundaries rounded to the nanosecond, so k * 0.16 and j * 0.01 meet without slivers


# ---- time ranges ------------------------------------------------------------------------------

def label_runs(labels_10ms, hop_s: float = SEGMENT_HOP_S) -> tuple[np.ndarray, np.ndarray]:
    """(n, 2) start/end seconds and the label of every run of equal 10 ms labels."""
    labels = np.asarray(labels_10ms).astype(np.int64).ravel()
    if labels.size == 0:
        return np.zeros((0, 2)), np.zeros(0, dtype=np.int64)
    cuts = np.flatnonzero(np.diff(labels)) + 1
    starts, ends = np.r_[0, cuts], np.r_[cuts, labels.size]
    return np.round(np.column_stack([starts, ends]) * hop_s, _DIGITS), labels[starts]


def spoof_ranges(labels_10ms) -> np.ndarray:
    runs, values = label_runs(labels_10ms)
    return runs[values == 0]


def bonafide_ranges(labels_10ms) -> np.ndarray:
    runs, values = label_runs(labels_10ms)
    return runs[values == 1]


def merge_ranges(ranges) -> np.ndarray:
    """Sorted union of (start, end) ranges: overlapping or touching ones become one; empty ones go."""
    r = np.asarray(ranges, dtype=np.float64).reshape(-1, 2)
    r = r[r[:, 1] > r[:, 0]]
    r = r[np.argsort(r[:, 0], kind="stable")]
    merged: list[list[float]] = []
    for start, end in r:
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return np.array(merged, dtype=np.float64).reshape(-1, 2)


def _intersections(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|a_i ∩ b_j| in seconds for every pair (ranges within a, and within b, do not overlap)."""
    return np.clip(np.minimum(a[:, None, 1], b[None, :, 1]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)


def overlap_s(a, b) -> float:
    """Seconds two sets of disjoint ranges share."""
    a, b = np.asarray(a, float).reshape(-1, 2), np.asarray(b, float).reshape(-1, 2)
    return float(_intersections(a, b).sum()) if a.size and b.size else 0.0


def _total_s(r: np.ndarray) -> float:
    return float(np.sum(r[:, 1] - r[:, 0])) if r.size else 0.0


# ---- range-based EER --------------------------------------------------------------------------

def range_pieces(scores, labels_10ms, score_resolution_s: float, name: str = "#0"):
    """(scores, seconds, is bona fide) of one clip's score frames cut at its label boundaries."""
    labels = np.asarray(labels_10ms).astype(np.int64).ravel()
    s = finite_scores(scores, f"segment scores of {name}")
    duration = round(labels.size * SEGMENT_HOP_S, _DIGITS)
    implied = math.ceil(round(duration / score_resolution_s, 6))
    if s.size > implied + 2:
        raise ValueError(f"utterance {name}: {s.size} score frames at {score_resolution_s} s "
                         f"but its labels cover only {implied}")
    if s.size == 0 or labels.size == 0:
        return np.zeros(0), np.zeros(0), np.zeros(0, dtype=bool)
    frame_edges = np.arange(min(s.size, implied)) * score_resolution_s
    runs, _ = label_runs(labels)
    edges = np.unique(np.round(np.r_[frame_edges, runs.ravel(), duration], _DIGITS))
    edges = edges[edges <= duration]
    mids = (edges[:-1] + edges[1:]) / 2
    frame = np.minimum((mids / score_resolution_s).astype(np.int64), min(s.size, implied) - 1)
    label = labels[np.minimum((mids / SEGMENT_HOP_S).astype(np.int64), labels.size - 1)]
    known = label >= 0
    return s[frame][known], np.diff(edges)[known], label[known] == 1


def _weighted_det(scores: np.ndarray, seconds: np.ndarray, bona: np.ndarray):
    """FRR, FAR and thresholds of "score < t -> spoof" at every distinct score and above the highest."""
    distinct, inverse = np.unique(scores, return_inverse=True)
    bona_s = np.bincount(inverse, weights=seconds * bona, minlength=distinct.size)
    spoof_s = np.bincount(inverse, weights=seconds * ~bona, minlength=distinct.size)
    bona_rejected = np.r_[0.0, np.cumsum(bona_s)]  # threshold distinct[i] rejects scores below it
    spoof_rejected = np.r_[0.0, np.cumsum(spoof_s)]
    frr = bona_rejected / bona_rejected[-1]
    far = 1 - spoof_rejected / spoof_rejected[-1]
    thresholds = np.r_[distinct, np.nextafter(distinct[-1], np.inf)]
    return frr, far, thresholds


def range_eer(score_arrays, label_arrays_10ms, score_resolution_s: float) -> tuple[float, float]:
    """Range-based EER (a fraction, in time, pooled over clips) and its threshold.

    score_arrays / label_arrays_10ms: aligned sequences, or mappings keyed by utt_id.
    """
    pieces = [range_pieces(s, l, score_resolution_s, name) for name, s, l in _pairs(score_arrays, label_arrays_10ms)]
    scores = np.concatenate([p[0] for p in pieces]) if pieces else np.zeros(0)
    seconds = np.concatenate([p[1] for p in pieces]) if pieces else np.zeros(0)
    bona = np.concatenate([p[2] for p in pieces]) if pieces else np.zeros(0, dtype=bool)
    if not (seconds * bona).sum() or not (seconds * ~bona).sum():
        raise ValueError("range-based EER needs both bona fide and spoofed time")
    frr, far, thresholds = _weighted_det(scores, seconds, bona)
    i = int(np.argmin(np.abs(frr - far)))
    return float((frr[i] + far[i]) / 2), float(thresholds[i])


# ---- predicted regions ------------------------------------------------------------------------

def _ratio(num: float, den: float) -> float:
    return num / den if den > 0 else 0.0


def _event_matches(predicted: np.ndarray, truth: np.ndarray, iou: float) -> int:
    """Most one-to-one pairs (predicted event, reference event) with IoU >= iou."""
    if not predicted.size or not truth.size:
        return 0
    from scipy.optimize import linear_sum_assignment

    inter = _intersections(predicted, truth)
    union = (predicted[:, 1] - predicted[:, 0])[:, None] + (truth[:, 1] - truth[:, 0])[None, :] - inter
    ok = inter >= iou * union - 1e-12
    rows, cols = linear_sum_assignment(ok.astype(float), maximize=True)
    return int(ok[rows, cols].sum())


def clip_region_counts(regions, labels_10ms, iou: float = IOU) -> dict:
    """Seconds and event counts of one clip: predicted regions (start, end) against 10 ms labels."""
    duration = round(np.asarray(labels_10ms).size * SEGMENT_HOP_S, _DIGITS)
    predicted = np.clip(merge_ranges(regions), 0.0, duration)
    predicted = predicted[predicted[:, 1] > predicted[:, 0]]
    truth, bona = spoof_ranges(labels_10ms), bonafide_ranges(labels_10ms)
    return {"tp_s": overlap_s(predicted, truth), "fp_s": overlap_s(predicted, bona),
            "spoof_s": _total_s(truth), "bonafide_s": _total_s(bona),
            "n_predicted": len(predicted), "n_true": len(truth), "n_matched": _event_matches(predicted, truth, iou)}


def region_scores(regions_by_clip, labels_10ms_by_clip, iou: float = IOU) -> dict:
    """Time- and event-based precision / recall / F1 of predicted spoofed regions, pooled over clips.

    regions_by_clip: utt_id -> (n, 2) start/end seconds (absent or empty: no region);
    labels_10ms_by_clip: utt_id -> 10 ms labels of every clip scored (1 = bona fide, 0 = spoof).
    """
    unknown = sorted(set(regions_by_clip) - set(labels_10ms_by_clip))
    if unknown:
        raise ValueError(f"{len(unknown)} clip(s) with regions have no labels, e.g. {unknown[0]!r}")
    total = {}
    for utt, labels in labels_10ms_by_clip.items():
        counts = clip_region_counts(regions_by_clip.get(utt, np.zeros((0, 2))), labels, iou)
        total = {k: total.get(k, 0) + v for k, v in counts.items()}
    tp, fp, spoof = total.get("tp_s", 0.0), total.get("fp_s", 0.0), total.get("spoof_s", 0.0)
    matched, n_pred, n_true = total.get("n_matched", 0), total.get("n_predicted", 0), total.get("n_true", 0)
    return {"region_precision": _ratio(tp, tp + fp), "region_recall": _ratio(tp, spoof),
            "region_f1": _ratio(2 * tp, tp + fp + spoof),
            "range_frr": _ratio(fp, total.get("bonafide_s", 0.0)), "range_far": _ratio(spoof - tp, spoof),
            "predicted_spoof_s": tp + fp, "true_spoof_s": spoof,
            "event_precision": _ratio(matched, n_pred), "event_recall": _ratio(matched, n_true),
            "event_f1": _ratio(2 * matched, n_pred + n_true), "event_iou": iou,
            "n_predicted_events": int(n_pred), "n_true_events": int(n_true), "n_matched_events": int(matched)}
