"""Segment (localisation) metrics: point-based segment EER at any resolution, and utterance
scores and EER from min-pooled segment scores (the PartialSpoof conventions).

Labels are 10 ms arrays (1 = bona fide, 0 = spoof); scores come at the model's own resolution
(SELCNN-MTL 160 ms, Whisper 20 ms) and are brought to the measurement resolution first: finer
scores min-pooled, coarser ones repeated. Lengths differing by a frame or two are truncated.
"""
from __future__ import annotations

import math
from typing import Mapping

import numpy as np

from antispoof.metrics.detection import bonafide_mask, compute_eer, finite_scores
from antispoof.schema import SEGMENT_HOP_S, pool_labels


def resolution_factor(coarse_s: float, fine_s: float) -> int:
    """How many fine frames make one coarse frame; resolutions must nest exactly."""
    ratio = coarse_s / fine_s
    k = int(round(ratio))
    if k < 1 or abs(ratio - k) > 1e-6:
        raise ValueError(f"resolution {coarse_s} s is not a whole multiple of {fine_s} s")
    return k


def _min_pool(x: np.ndarray, k: int) -> np.ndarray:
    """Minimum of scores over consecutive windows of k frames; a partial last window still counts."""
    x = np.asarray(x)
    if k == 1 or x.size == 0:
        return x.copy()
    return np.minimum.reduceat(x, np.arange(0, x.size, k))


def pool_segment_labels(labels_10ms, resolution_s: float) -> np.ndarray:
    """10 ms labels (1 = bona fide) at a coarser resolution: any spoof frame makes the window spoof
    (schema.pool_labels, the pooling the models' segment targets use too)."""
    labels = np.asarray(labels_10ms, dtype=np.int8).ravel()
    return pool_labels(labels, resolution_factor(resolution_s, SEGMENT_HOP_S))


def rescale_segment_scores(scores, score_resolution_s: float, resolution_s: float) -> np.ndarray:
    """Scores at the measurement resolution, as PartialSpoof's SegmentEER does.

    Finer scores are min-pooled (the most spoof-like frame speaks for the window); coarser
    scores are repeated, so one prediction covers each finer window inside it.
    """
    s = finite_scores(scores, "segment scores")
    if score_resolution_s <= resolution_s:
        return _min_pool(s, resolution_factor(resolution_s, score_resolution_s))
    return np.repeat(s, resolution_factor(score_resolution_s, resolution_s))


def _pairs(score_arrays, label_arrays) -> list[tuple[str, object, object]]:
    """(name, scores, labels) per utterance from two aligned sequences or two mappings."""
    if isinstance(score_arrays, Mapping):
        if not isinstance(label_arrays, Mapping):
            raise TypeError("scores given by utt_id need labels given by utt_id")
        missing = [k for k in score_arrays if k not in label_arrays]
        if missing:
            raise ValueError(f"{len(missing)} scored utterance(s) have no labels, e.g. {missing[0]!r}")
        return [(str(k), v, label_arrays[k]) for k, v in score_arrays.items()]
    score_arrays, label_arrays = list(score_arrays), list(label_arrays)
    if len(score_arrays) != len(label_arrays):
        raise ValueError(f"{len(score_arrays)} score arrays but {len(label_arrays)} label arrays")
    return [(f"#{i}", s, l) for i, (s, l) in enumerate(zip(score_arrays, label_arrays))]


def _aligned(name, scores, labels_10ms, resolution_s, score_resolution_s):
    """One utterance's scores and labels at the measurement resolution, truncated to match.

    A frame or two of length mismatch is normal (framing); scores much longer than the
    clip mean a wrong score_resolution_s, which would otherwise yield a silent wrong EER.
    """
    labels = np.asarray(labels_10ms).ravel()
    raw = np.asarray(scores).ravel()
    implied = math.ceil(round(labels.size * SEGMENT_HOP_S / score_resolution_s, 6))
    if raw.size > implied + 2:
        raise ValueError(f"utterance {name}: {raw.size} score frames at {score_resolution_s} s "
                         f"but its labels cover only {implied}")
    s = rescale_segment_scores(raw, score_resolution_s, resolution_s)
    lab = pool_segment_labels(labels, resolution_s)
    n = min(s.size, lab.size)
    return s[:n], lab[:n]


def segment_points(score_arrays, label_arrays_10ms, resolution_s: float,
                   score_resolution_s: float | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each utterance's (scores, labels) at the measurement resolution, in input order.

    score_arrays / label_arrays_10ms: aligned sequences, or mappings keyed by utt_id.
    """
    score_res = resolution_s if score_resolution_s is None else score_resolution_s
    return [_aligned(name, s, l, resolution_s, score_res)
            for name, s, l in _pairs(score_arrays, label_arrays_10ms)]


def pooled_segment_eer(points: list[tuple[np.ndarray, np.ndarray]]) -> tuple[float, float]:
    """Point-based EER (and threshold) over all segments of the given utterances' points."""
    s = np.concatenate([p[0] for p in points])
    l = np.concatenate([p[1] for p in points])
    return compute_eer(s[l == 1], s[l == 0])


def segment_eer(score_arrays, label_arrays_10ms, resolution_s: float,
                score_resolution_s: float | None = None) -> tuple[float, float]:
    """Point-based segment EER (and threshold) pooled over all segments of all utterances.

    score_arrays / label_arrays_10ms: aligned sequences, or mappings keyed by utt_id.
    """
    return pooled_segment_eer(segment_points(score_arrays, label_arrays_10ms, resolution_s, score_resolution_s))


def utterance_scores_from_segments(score_arrays):
    """Utterance score = min over its segments (beat mean/max in the SELCNN-MTL paper).

    A mapping gives a dict by utt_id, a sequence an array in the same order.
    """
    def lowest(s, name):
        s = finite_scores(s, f"segment scores of {name}")
        if s.size == 0:
            raise ValueError(f"utterance {name} has no segment scores")
        return float(s.min())

    if isinstance(score_arrays, Mapping):
        return {k: lowest(v, k) for k, v in score_arrays.items()}
    return np.array([lowest(s, f"#{i}") for i, s in enumerate(score_arrays)])


def _utterance_label(labels) -> bool:
    """Is the utterance bona fide: a label string, or 10 ms labels with no spoof frame."""
    if isinstance(labels, str):
        return bool(bonafide_mask([labels])[0])
    return bool(bonafide_mask(labels).all())


def utterance_eer_from_segments(score_arrays, labels) -> tuple[float, float]:
    """Utterance EER from min-pooled segment scores; labels: strings or 10 ms label arrays."""
    pairs = _pairs(score_arrays, labels)
    utt = utterance_scores_from_segments([s for _, s, _ in pairs])
    bona = np.array([_utterance_label(l) for _, _, l in pairs])
    return compute_eer(utt[bona], utt[~bona])
