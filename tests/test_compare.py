"""Paired bootstrap of test EER differences, on the tiny SpoofBench's real test split and labels."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from antispoof.commands.cli import main
from antispoof.commands.compare import (CompareError, FoldScores, ResampledEER, compare, hidden_test, paired_bootstrap,
                               parse_pair)
from antispoof.metrics import pool_segment_labels
from antispoof.metrics.conditions import condition_masks
from antispoof.metrics.detection import compute_eer
from antispoof.metrics.segments import pooled_segment_eer
from antispoof.inference.tables import table_metrics
from antispoof.runs import write_table
from antispoof.schema import ManifestError
from antispoof.submit.writer import Competition, write_label_submission, write_score_submission

HOP = 0.16


def _write_fold(root, dataset, experiment, fold, solution, segments, noise, seed):
    """A fold folder as `antispoof train` leaves it: test.parquet (no labels) and metrics.json.

    Scores are the truth plus Gaussian noise of the given size, so less noise = a better model.
    """
    rng = np.random.default_rng(seed)
    out = root / dataset / experiment / f"fold{fold}"
    out.mkdir(parents=True)
    rows = []
    for utt_id, label in solution["label"].items():
        truth = pool_segment_labels(segments[utt_id], HOP)[: max(1, len(segments[utt_id]) // 16)]
        seg = (truth + noise * rng.standard_normal(truth.size)).astype(np.float32)
        rows.append({"utt_id": utt_id, "score": float(label == "bonafide") + noise * rng.standard_normal(),
                     "seg_scores": seg, "seg_hop_s": HOP})
    table = pd.DataFrame(rows)
    write_table(table, out / "test.parquet")
    metrics = table_metrics(table.merge(solution["label"], left_on="utt_id", right_index=True), segments)
    (out / "metrics.json").write_text(json.dumps({"fold": fold, "test": metrics}))
    return metrics


@pytest.fixture(scope="module")
def runs(tiny, tmp_path_factory):
    """Two experiments on folds 0 and 1 (plus an unmatched fold 2 of the better one)."""
    root = tmp_path_factory.mktemp("compare")
    solution, segments = hidden_test(tiny)
    metrics = {}
    for experiment, noise in (("sharp", 0.3), ("blurred", 1.5)):
        for fold in (0, 1):
            metrics[experiment, fold] = _write_fold(root, tiny.name, experiment, fold, solution, segments,
                                                    noise, seed=10 * fold + len(experiment))
    _write_fold(root, tiny.name, "sharp", 2, solution, segments, 3.0, seed=99)
    return root, metrics


def _cell(text):
    """'+1.25 [-0.50, +3.00]' -> (1.25, -0.5, 3.0)."""
    delta, interval = text.split(" [")
    low, high = interval.rstrip("]").split(", ")
    return float(delta), float(low), float(high)


def test_point_estimate_is_the_difference_of_the_reports_fold_means(tiny, runs):
    root, metrics = runs
    row = compare(tiny, root, [("sharp", "blurred")], resamples=50).iloc[0]
    assert row["folds"] == "0 1", "only the folds both experiments finished"
    for level, key in (("utt", "eer"), ("seg", "segment_eer")):
        expected = 100 * np.mean([metrics["sharp", k][key] - metrics["blurred", k][key] for k in (0, 1)])
        delta, low, high = _cell(row[f"Δ {level} EER (A-B)"])
        assert delta == pytest.approx(expected, abs=0.006) and delta < 0
        assert low <= high < 0, "the sharper model is better in every resample's interval"
        assert float(row[f"P(A better, {level})"]) == 1.0


def test_by_condition_each_conditions_delta_is_its_eer_difference_with_its_own_interval(tiny, runs):
    root, _ = runs
    table = compare(tiny, root, [("sharp", "blurred")], resamples=50, by_condition=True)
    solution, _ = hidden_test(tiny)
    assert table["condition"].iloc[0] == "pooled" and len(table) > 2
    tables = {(x, k): pd.read_parquet(root / tiny.name / x / f"fold{k}" / "test.parquet").set_index("utt_id")
              for x in ("sharp", "blurred") for k in (0, 1)}
    for row in table.iloc[1:].to_dict("records"):
        mask = condition_masks(solution["condition"].to_numpy())[row["condition"]]
        ids, bona = solution.index[mask], (solution["label"] == "bonafide").to_numpy()[mask]

        def eer(x, k):
            s = tables[x, k].loc[ids, "score"].to_numpy()
            return compute_eer(s[bona], s[~bona])[0]

        expected = 100 * np.mean([eer("sharp", k) - eer("blurred", k) for k in (0, 1)])
        delta, low, high = _cell(row["Δ utt EER (A-B)"])
        assert delta == pytest.approx(expected, abs=0.006) and low <= delta <= high
        assert row["Δ seg EER (A-B)"] == "-", "conditions are compared at the utterance level"


def test_swapping_the_pair_negates_and_an_experiment_ties_with_itself(tiny, runs):
    root, _ = runs
    table = compare(tiny, root, [("sharp", "blurred"), ("blurred", "sharp"), ("sharp", "sharp")], resamples=50)
    forward, backward, itself = table.to_dict("records")
    for level in ("utt", "seg"):
        d, lo, hi = _cell(forward[f"Δ {level} EER (A-B)"])
        assert _cell(backward[f"Δ {level} EER (A-B)"]) == pytest.approx((-d, -hi, -lo), abs=0.011)
        assert _cell(itself[f"Δ {level} EER (A-B)"]) == (0.0, 0.0, 0.0)
        assert float(itself[f"P(A better, {level})"]) == 0.0, "a tie is never 'better'"
    assert itself["folds"] == "0 1 2"


def test_bootstrap_resamples_keep_both_classes_and_are_seeded():
    rng = np.random.default_rng(0)
    bonafide = np.array([True] * 3 + [False] * 40)  # a plain resample would often miss the 3
    folds = [FoldScores(rng.standard_normal(43), [(rng.standard_normal(4), rng.integers(0, 2, 4))
                                                  for _ in range(43)])]
    other = [FoldScores(rng.standard_normal(43), folds[0].seg)]
    first = paired_bootstrap(folds, other, bonafide, resamples=200, seed=3)
    assert first == paired_bootstrap(folds, other, bonafide, resamples=200, seed=3)
    assert first["seg"] == {"delta": 0.0, "low": 0.0, "high": 0.0, "p_better": 0.0}, "same segment scores"
    assert first["utt"]["low"] < first["utt"]["high"]


def test_resampled_eer_equals_the_eer_of_the_resampled_points():
    """Oracle: re-weighting presorted points gives exactly compute_eer / pooled_segment_eer of the
    resample's concatenated points, ties included (scores are rounded so many tie across classes)."""
    rng = np.random.default_rng(1)
    n = 60
    bonafide = rng.random(n) < 0.3
    utt = np.round(rng.standard_normal(n), 1) + bonafide
    seg = [(np.round(rng.standard_normal(k), 1), rng.choice([0, 1, -1], size=k, p=[0.5, 0.4, 0.1]))
           for k in rng.integers(1, 30, n)]
    utt_eer = ResampledEER(utt, bonafide, np.arange(n))
    scores = np.concatenate([s for s, _ in seg])
    labels = np.concatenate([lab for _, lab in seg])
    owner = np.repeat(np.arange(n), [len(s) for s, _ in seg])
    keep = labels >= 0
    seg_eer = ResampledEER(scores[keep], labels[keep] == 1, owner[keep])
    for _ in range(50):
        clips = rng.integers(0, n, n)
        counts = np.bincount(clips, minlength=n)
        drawn = bonafide[clips]
        assert utt_eer.eer(counts) == compute_eer(utt[clips][drawn], utt[clips][~drawn])[0]
        assert seg_eer.eer(counts) == pooled_segment_eer([seg[i] for i in clips])[0]
    assert utt_eer.eer(np.ones(n, dtype=int)) == compute_eer(utt[bonafide], utt[~bonafide])[0]


def test_errors_name_the_file_and_the_problem(tiny, runs, tmp_path, capsys):
    root, _ = runs
    with pytest.raises(CompareError, match="no finished fold in common"):
        compare(tiny, root, [("sharp", "missing")], resamples=10)
    with pytest.raises(CompareError, match="write a pair as A:B"):
        parse_pair("sharp-blurred")
    broken = tmp_path / tiny.name / "half" / "fold0"  # fold 0 of "half" lost a test clip
    broken.mkdir(parents=True)
    table = pd.read_parquet(root / tiny.name / "sharp" / "fold0" / "test.parquet")
    write_table(table.iloc[1:], broken / "test.parquet")
    (broken / "metrics.json").write_text(json.dumps({"fold": 0}))
    (tmp_path / tiny.name / "sharp").symlink_to(root / tiny.name / "sharp")
    assert main(["compare", "half:sharp", "--data", str(tiny), "--output-root", str(tmp_path),
                 "--resamples", "10"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("antispoof compare: error: ") and "test.parquet: 1 test clip(s) not scored" in err
    assert len(err.splitlines()) == 1


def test_a_side_may_be_a_score_submission_file(tiny, runs, tmp_path):
    root, metrics = runs
    competition = Competition.load(tiny)
    files = {}
    for experiment in ("sharp", "blurred"):
        table = pd.read_parquet(root / tiny.name / experiment / "fold0" / "test.parquet")
        files[experiment] = str(write_score_submission(tmp_path / f"{experiment}_eer.csv", table["utt_id"],
                                                       table["score"], competition))
    write_label_submission(tmp_path / "labels_f1.csv", table["utt_id"], table["score"] < 0.5, competition)
    both, mixed = compare(tiny, root, [(files["sharp"], files["blurred"]), (files["sharp"], "blurred")],
                          resamples=50).to_dict("records")
    for row, blurred in ((both, [0]), (mixed, [0, 1])):
        expected = 100 * (metrics["sharp", 0]["eer"] - np.mean([metrics["blurred", k]["eer"] for k in blurred]))
        delta, low, high = _cell(row["Δ utt EER (A-B)"])
        assert delta == pytest.approx(expected, abs=0.006) and low <= delta <= high
        assert row["Δ seg EER (A-B)"] == row["P(A better, seg)"] == "-", "a score file has no segment scores"
    assert (both["folds"], mixed["folds"]) == ("-", "0 1")
    with pytest.raises(ManifestError, match="labels_f1.csv: no 'score' column"):
        compare(tiny, root, [(str(tmp_path / "labels_f1.csv"), "sharp")], resamples=10)


def test_cli_prints_the_table(tiny, runs, capsys):
    root, _ = runs
    assert main(["compare", "sharp:blurred", "--data", str(tiny), "--output-root", str(root),
                 "--resamples", "20"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("| A ") and "| sharp " in out and "P(A better, seg)" in out
