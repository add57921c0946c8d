"""Ensemble segment scores and the spoofed regions of the segment submission.

Models score segments at different resolutions (SELCNN-MTL 160 ms, Whisper 20 ms). Each
model's segment scores go through its utterance normaliser (fitted on OOF), are repeated
to the finest resolution and averaged with the soft vote's weights; lengths differing by a
frame or two are truncated to the shortest (the PartialSpoof convention).
Regions are the runs below a segment threshold fitted on OOF segments (train_segments.npz,
never the hidden labels), and only in clips the utterance decision calls spoof, so the
segment file and the label file agree: a clip has regions exactly when it is labelled spoof
(a spoof clip with no run below the threshold gets its lowest segment).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from antispoof.data.manifest import load_segments, read_manifest
from antispoof.ensemble.crossfit import select
from antispoof.ensemble.tables import Ensemble
from antispoof.ensemble.thresholds import fit_threshold
from antispoof.metrics.segments import pool_segment_labels, resolution_factor


def common_hop(ens: Ensemble, names) -> float:
    return min(ens.models[n].hop for n in names)


def fuse_segments(ens: Ensemble, part: str, rows, normalisers: dict, weights, names) -> tuple[list[np.ndarray], float]:
    """Weighted mean of the models' normalised segment scores at the finest resolution."""
    fine = common_hop(ens, names)
    weights = np.asarray(weights, dtype=float) / np.sum(weights)
    per_model = []
    for name in names:
        t = ens.models[name]
        arrays = normalisers[name].transform_arrays(select(getattr(t, part)["seg_scores"], rows))
        per_model.append([np.repeat(a, resolution_factor(t.hop, fine)) for a in arrays])
    fused = []
    for clip in zip(*per_model):
        n = min(a.size for a in clip)
        fused.append(sum(w * a[:n] for w, a in zip(weights, clip)))
    return fused, fine


def fit_segment_threshold(ens: Ensemble, fused_oof: list[np.ndarray], hop: float, rule: str = "eer") -> float:
    """Threshold on pooled OOF segments against their labels at the fused resolution."""
    train = ens.train if ens.train is not None else read_manifest(ens.data_dir / "train.csv", "train",
                                                                   check_files=False)
    labels = load_segments(ens.data_dir / "train_segments.npz", train)
    scores, truth = [], []
    for utt, s in zip(ens.oof["utt_id"], fused_oof):
        lab = pool_segment_labels(labels[utt], hop)
        n = min(lab.size, s.size)
        scores.append(s[:n])
        truth.append(lab[:n])
    return fit_threshold(np.concatenate(scores), np.concatenate(truth), rule)


def clip_regions(scores: np.ndarray, hop: float, threshold: float, duration: float,
                 merge_gap_s: float = 0.0, min_region_s: float = 0.0) -> list[tuple[float, float]]:
    """(start, end) seconds of the runs below the threshold; short gaps merged, short runs dropped.

    Always at least one region: the clip was called spoof, so its lowest segment is one.
    """
    below = np.r_[False, scores < threshold, False]
    edges = np.flatnonzero(np.diff(below.astype(int)))
    runs = [[a * hop, b * hop] for a, b in zip(edges[::2], edges[1::2])]
    merged: list[list[float]] = []
    for run in runs:
        if merged and run[0] - merged[-1][1] <= merge_gap_s + 1e-9:
            merged[-1][1] = run[1]
        else:
            merged.append(run)
    kept = [r for r in merged if r[1] - r[0] >= min_region_s - 1e-9]
    if not kept and scores.size:
        i = int(np.argmin(scores))
        kept = [[i * hop, (i + 1) * hop]]
    return [(round(float(a), 6), round(float(min(b, duration)), 6)) for a, b in kept if min(b, duration) > a]


def regions_table(ids, fused: list[np.ndarray], hop: float, threshold: float, durations, is_spoof,
                  merge_gap_s: float = 0.0, min_region_s: float = 0.0) -> pd.DataFrame:
    """utt_id, start, end of every region of every clip called spoof."""
    rows = []
    for utt, s, duration, spoof in zip(ids, fused, durations, is_spoof):
        if spoof:
            rows += [(utt, a, b) for a, b in clip_regions(s, hop, threshold, duration, merge_gap_s, min_region_s)]
    return pd.DataFrame(rows, columns=["utt_id", "start", "end"])
