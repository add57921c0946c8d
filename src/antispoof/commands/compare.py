"""Paired comparison of two experiments on the hidden test clips: is A's EER really lower than B's?

Either side may also be a score submission file (an ensemble's `<name>_eer.csv`, an ASVspoof 5
TSV): then the utterance level is compared on its scores alone, and the segment level is left out.

Every experiment scores the same test clips, so most of the clip-sampling noise is shared. Scoring
both experiments on the same bootstrap resamples of those clips gives a confidence interval of
the *difference*, much narrower than the two EERs' own intervals (on SpoofBench-mini, about
3 points each). The point estimate is the mean over folds of each fold's test EER, exactly the
`antispoof report` column, taken over the folds both experiments have finished; the interval
covers test-clip sampling only, not the spread between training runs. `by_condition` adds a row
per test condition (its spoofs against the bona fide clips, as the results tables score them), at
the utterance level, each with its own paired interval.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from antispoof.data.manifest import load_solution
from antispoof.metrics.conditions import condition_masks
from antispoof.metrics.segments import segment_points
from antispoof.runs import PREDICTIONS, dataset_dir, experiment_dir, finished_folds, read_predictions
from antispoof.schema import ManifestError
from antispoof.submit.scorer import submission_scores


class CompareError(ValueError):
    """A comparison that cannot be made (no common folds, unlabeled test split, ...)."""


@dataclass
class FoldScores:
    """One fold's test predictions in solution order: utterance scores and per-clip segment points
    (None for a submission file, which holds utterance scores only)."""
    utt: np.ndarray
    seg: list[tuple[np.ndarray, np.ndarray]] | None


def load_fold(fold_dir: Path, solution: pd.DataFrame, segments: dict[str, np.ndarray]) -> FoldScores:
    """Join a fold's test.parquet to the solution; every solution clip must be scored."""
    path = fold_dir / PREDICTIONS["test"]
    table = read_predictions(fold_dir, "test").set_index("utt_id")
    missing = solution.index.difference(table.index)
    if len(missing):
        raise CompareError(f"{path}: {len(missing)} test clip(s) not scored, e.g. '{missing[0]}'")
    table = table.loc[solution.index]
    hop = float(table["seg_hop_s"].iloc[0])
    seg = segment_points(list(table["seg_scores"]), [segments[u] for u in solution.index], hop)
    return FoldScores(table["score"].to_numpy(float), seg)


class ResampledEER:
    """The EER of a fixed set of scored points under bootstrap resamples of the clips that own them.

    A resample repeats some clips and drops others. Its EER is `compute_eer` of the resample's
    points, but sorting those points for every one of a thousand resamples (hundreds of thousands
    of 20 ms segments on SpoofBench-full) is what made a comparison take minutes. The points are
    sorted once here, with bona fide first among tied scores as `det_curve`'s stable sort puts them;
    a resample only repeats each point by its clip's count, which leaves the order of labels
    exactly as sorting the resample would, so the EER is the same number in O(points).
    """

    def __init__(self, scores: np.ndarray, bonafide: np.ndarray, owner: np.ndarray):
        scores, bonafide = np.asarray(scores, float), np.asarray(bonafide, bool)
        order = np.lexsort((~bonafide, scores))
        self.bonafide, self.owner = bonafide[order], np.asarray(owner)[order]

    def eer(self, counts: np.ndarray) -> float:
        """EER (a fraction) when clip i is drawn counts[i] times."""
        labels = np.repeat(self.bonafide, counts[self.owner])
        bona_rejected = np.cumsum(labels)
        n_bona = bona_rejected[-1]
        n_spoof = labels.size - n_bona
        if n_bona == 0 or n_spoof == 0:
            raise CompareError(f"a resample has {n_bona} bona fide and {n_spoof} spoof points; an EER needs both")
        spoof_rejected = np.arange(1, labels.size + 1) - bona_rejected
        frr = np.concatenate([[0.0], bona_rejected / n_bona])
        far = np.concatenate([[1.0], (n_spoof - spoof_rejected) / n_spoof])
        i = int(np.argmin(np.abs(frr - far)))
        return float((frr[i] + far[i]) / 2)


def _resampled(fold: FoldScores, bonafide: np.ndarray) -> tuple[ResampledEER, ResampledEER | None]:
    """A fold's utterance-level and segment-level EER under clip resampling (segment labels other
    than 0 / 1 are left out, as `pooled_segment_eer` leaves them out)."""
    utt = ResampledEER(fold.utt, bonafide, np.arange(len(bonafide)))
    if fold.seg is None:
        return utt, None
    scores = np.concatenate([s for s, _ in fold.seg])
    labels = np.concatenate([np.asarray(lab) for _, lab in fold.seg])
    owner = np.repeat(np.arange(len(fold.seg)), [len(s) for s, _ in fold.seg])
    keep = (labels == 0) | (labels == 1)
    return utt, ResampledEER(scores[keep], labels[keep] == 1, owner[keep])


def _eers(folds: list[tuple[ResampledEER, ResampledEER]], counts: np.ndarray) -> tuple[float, float]:
    """Mean over folds of (utterance EER, segment EER) when clip i is drawn counts[i] times."""
    segs = [seg for _, seg in folds]
    return (float(np.mean([utt.eer(counts) for utt, _ in folds])),
            float(np.mean([seg.eer(counts) for seg in segs])) if None not in segs else np.nan)


def paired_bootstrap(a: list[FoldScores], b: list[FoldScores], bonafide: np.ndarray,
                     resamples: int = 1000, seed: int = 0) -> dict:
    """EER(A) - EER(B) in points at both levels, with 95 % percentile intervals and the share of
    resamples in which A is better (lower); the segment level is None when a side has no segment
    scores. Resamples keep each class's clip count (stratified), so every resample has both
    classes, as an EER needs."""
    bonafide = np.asarray(bonafide, bool)
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(bonafide), np.flatnonzero(~bonafide)]
    if any(f.seg is None for f in (*a, *b)):  # a submission file: the utterance level only, on both sides
        a, b = ([FoldScores(f.utt, None) for f in side] for side in (a, b))
    ra, rb = [_resampled(f, bonafide) for f in a], [_resampled(f, bonafide) for f in b]
    everything = np.ones(len(bonafide), dtype=np.int64)
    point = np.subtract(_eers(ra, everything), _eers(rb, everything))
    draws = np.empty((resamples, 2))
    for r in range(resamples):
        clips = np.concatenate([rng.choice(g, size=len(g)) for g in groups])
        counts = np.bincount(clips, minlength=len(bonafide))
        draws[r] = np.subtract(_eers(ra, counts), _eers(rb, counts))
    result = {}
    for level, column in (("utt", 0), ("seg", 1)):
        if np.isnan(point[column]):
            result[level] = None
            continue
        low, high = np.percentile(draws[:, column], [2.5, 97.5])
        result[level] = {"delta": 100 * point[column], "low": 100 * low, "high": 100 * high,
                         "p_better": float(np.mean(draws[:, column] < 0))}
    return result


def hidden_test(data_dir: str | Path) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """The test split with its hidden labels (indexed by utt_id) and 10 ms segment labels."""
    try:
        test, segments = load_solution(data_dir, "for a comparison")
    except ManifestError as err:
        raise CompareError(str(err)) from None
    return test.set_index("utt_id"), segments


def compare(data_dir: str | Path, output_root: str | Path, pairs: list[tuple[str, str]],
            resamples: int = 1000, seed: int = 0, by_condition: bool = False) -> pd.DataFrame:
    """One row per (A, B) pair, each on the folds both have finished (and with `by_condition`, one
    more per test condition)."""
    solution, segments = hidden_test(data_dir)
    bonafide = (solution["label"] == "bonafide").to_numpy()
    dataset = Path(data_dir).name
    loaded: dict[tuple[str, int], FoldScores] = {}

    files = {name for pair in pairs for name in pair if is_submission(name)}
    finished = {name: finished_folds(experiment_dir(output_root, dataset, name))
                for pair in pairs for name in pair if name not in files}

    def scores(experiment: str, folds: list[int]) -> list[FoldScores]:
        """Each fold read once, however many pairs name the experiment (the claims script: five)."""
        if experiment in files:  # one table of (fold-averaged, fused, ...) scores
            if (experiment, -1) not in loaded:
                utt = submission_scores(experiment, data_dir).loc[solution.index].to_numpy(float)
                loaded[experiment, -1] = FoldScores(utt, None)
            return [loaded[experiment, -1]]
        for k in folds:
            if (experiment, k) not in loaded:
                loaded[experiment, k] = load_fold(finished[experiment][k], solution, segments)
        return [loaded[experiment, k] for k in folds]

    rows = []
    for a, b in pairs:
        sides = [set(finished[x]) for x in (a, b) if x not in files]
        folds = sorted(set.intersection(*sides)) if sides else []
        if sides and not folds:
            raise CompareError(f"{dataset_dir(output_root, dataset)}: {a} and {b} have no finished fold in common")
        sa, sb = scores(a, folds), scores(b, folds)
        head = {"A": a, "B": b, "folds": " ".join(map(str, folds)) or "-"}
        rows.append(_row(head, "pooled", paired_bootstrap(sa, sb, bonafide, resamples, seed)))
        if by_condition and "condition" in solution.columns:
            for name, mask in condition_masks(solution["condition"].to_numpy()).items():
                only = [[FoldScores(f.utt[mask], None) for f in side] for side in (sa, sb)]
                rows.append(_row(head, name, paired_bootstrap(*only, bonafide[mask], resamples, seed)))
    return pd.DataFrame(rows).fillna("-")


def _row(head: dict, condition: str, r: dict) -> dict:
    row = {**head, "condition": condition}
    for level in ("utt", "seg"):
        x = r[level]
        if x is None:
            row[f"Δ {level} EER (A-B)"] = row[f"P(A better, {level})"] = "-"
            continue
        row[f"Δ {level} EER (A-B)"] = f"{x['delta']:+.2f} [{x['low']:+.2f}, {x['high']:+.2f}]"
        row[f"P(A better, {level})"] = f"{x['p_better']:.2f}"
    return row


def is_submission(name: str) -> bool:
    """A side named by a score file (.csv / .tsv) rather than an experiment."""
    return Path(name).suffix.lower() in (".csv", ".tsv")


def parse_pair(text: str) -> tuple[str, str]:
    """'selcnn_segbw:selcnn_segment' -> ('selcnn_segbw', 'selcnn_segment')."""
    a, sep, b = text.partition(":")
    if not sep or not a or not b:
        raise CompareError(f"'{text}': write a pair as A:B, e.g. selcnn_segbw:selcnn_segment")
    return a, b
