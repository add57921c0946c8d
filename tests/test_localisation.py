"""Localisation in time: range-based EER and region / event precision, recall, F1 on hand-made clips,
and the region figures `antispoof score` gives a regions file."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from antispoof import metrics as M
from antispoof.commands.cli import main as cli
from antispoof.metrics import localisation as L


def clip(*runs):
    """10 ms labels from (label, seconds) runs, e.g. clip((1, 0.1), (0, 0.1)): 0.1 s bona fide, then spoof."""
    return np.concatenate([np.full(int(round(s / 0.01)), lab, dtype=np.int8) for lab, s in runs])


LABELS = clip((1, 0.1), (0, 0.1), (1, 0.2))  # 0.4 s, spoofed 0.10-0.20


# ---- ranges -----------------------------------------------------------------------------------

def test_label_runs_and_merging():
    runs, values = L.label_runs(LABELS)
    assert runs.tolist() == [[0.0, 0.1], [0.1, 0.2], [0.2, 0.4]] and values.tolist() == [1, 0, 1]
    assert L.spoof_ranges(LABELS).tolist() == [[0.1, 0.2]]
    assert L.merge_ranges([[0.5, 0.7], [0.0, 0.2], [0.1, 0.3], [0.3, 0.4], [0.9, 0.9]]).tolist() == [
        [0.0, 0.4], [0.5, 0.7]], "overlapping and touching ranges join, empty ones go"
    assert L.overlap_s([[0.0, 0.15], [0.3, 0.5]], [[0.1, 0.35]]) == pytest.approx(0.1)


# ---- range-based EER ----------------------------------------------------------------------------

def test_range_eer_hand_example_weighs_seconds_not_windows():
    # 40 ms score frames; frame 2 (0.08-0.12) is half bona fide, half spoof
    scores = np.array([.9, .9, .5, .1, .2, .6, .9, .9, .9, .9])
    # pieces: bona fide 0.9 x 0.08 s, 0.5 x 0.02 s, 0.6 x 0.04 s, 0.9 x 0.16 s (0.30 s in all);
    # spoof 0.5 x 0.02 s, 0.1 x 0.04 s, 0.2 x 0.04 s (0.10 s). Thresholds (score < t -> spoof):
    #   t = 0.5: FRR 0, FAR 0.02 / 0.1 = 0.2;  t = 0.6: FRR 0.02 / 0.3, FAR 0  -> |gap| 1/15 is the least
    eer, threshold = M.range_eer([scores], [LABELS], 0.04)
    assert eer == pytest.approx((1 / 15) / 2) and threshold == 0.6
    # point-based: the straddling window counts as spoof, so the same scores look perfect
    assert M.segment_eer([scores], [LABELS], 0.04) == (0.0, 0.6)


def test_range_eer_perfect_scores_are_zero_and_reversed_ones_one():
    scores = np.where(LABELS == 1, 1.0, -1.0)
    assert M.range_eer([scores], [LABELS], 0.01) == (0.0, 1.0)
    assert M.range_eer([-scores], [LABELS], 0.01)[0] == 1.0


def test_range_eer_at_10ms_is_the_point_eer_with_distinct_scores():
    rng = np.random.default_rng(0)
    labels = [clip((1, d), (0, 0.3), (1, 0.2)) for d in (0.1, 0.5, 0.33)]
    scores = [rng.normal(size=l.size) + l for l in labels]
    assert M.range_eer(scores, labels, 0.01) == pytest.approx(M.segment_eer(scores, labels, 0.01))


def test_range_eer_cuts_the_last_frame_at_the_clip_end_and_accepts_mappings():
    labels = clip((1, 0.16), (0, 0.14))  # 0.30 s: the second 160 ms frame covers 0.16-0.30 only
    pieces = L.range_pieces([0.8, 0.1], labels, 0.16)
    assert pieces[1] == pytest.approx([0.16, 0.14]) and pieces[2].tolist() == [True, False]
    short = L.range_pieces([0.8], labels, 0.16)  # one frame short: the last frame stretches to the end
    assert short[1] == pytest.approx([0.16, 0.14]) and short[0].tolist() == [0.8, 0.8]
    assert M.range_eer({"a": [0.8, 0.1]}, {"a": labels}, 0.16)[0] == 0.0
    with pytest.raises(ValueError, match="scored utterance"):
        M.range_eer({"a": [0.8]}, {"b": labels}, 0.16)
    with pytest.raises(ValueError, match="labels cover only 2"):
        M.range_eer([np.zeros(9)], [labels], 0.16)
    with pytest.raises(ValueError, match="both bona fide and spoofed time"):
        M.range_eer([np.zeros(3)], [clip((1, 0.3))], 0.16)


def test_range_eer_ignores_unknown_frames():
    labels = np.r_[LABELS, np.full(10, -1, dtype=np.int8)]
    scores = np.r_[np.where(LABELS == 1, 1.0, -1.0), np.full(10, -5.0)]
    assert M.range_eer([scores], [labels], 0.01)[0] == 0.0


# ---- predicted regions --------------------------------------------------------------------------

def scores_of(regions, labels=LABELS):
    return M.region_scores({"a": np.array(regions, dtype=float).reshape(-1, 2)}, {"a": labels})


def test_perfect_regions_score_one():
    got = scores_of([[0.1, 0.2]])
    for key in ("region_precision", "region_recall", "region_f1", "event_precision", "event_recall", "event_f1"):
        assert got[key] == pytest.approx(1.0), key
    assert got["range_frr"] == 0 and got["range_far"] == pytest.approx(0)


def test_disjoint_regions_score_zero():
    got = scores_of([[0.25, 0.35]])
    assert got["region_precision"] == got["region_recall"] == got["region_f1"] == 0
    assert got["event_f1"] == 0 and got["n_predicted_events"] == 1 and got["n_true_events"] == 1
    assert got["range_frr"] == pytest.approx(0.1 / 0.3) and got["range_far"] == 1


def test_half_overlap_has_half_precision_and_recall_but_no_event_match():
    got = scores_of([[0.15, 0.25]])  # 0.05 s right, 0.05 s wrong; IoU 0.05 / 0.15 = 1/3
    assert got["region_precision"] == pytest.approx(0.5) and got["region_recall"] == pytest.approx(0.5)
    assert got["region_f1"] == pytest.approx(0.5) and got["event_f1"] == 0
    shifted = scores_of([[0.125, 0.225]])  # IoU 0.075 / 0.125 = 0.6: the same region, roughly placed
    assert shifted["region_f1"] == pytest.approx(0.75) and shifted["event_f1"] == 1


def test_no_regions_and_no_spoof_give_zeros_not_nans():
    got = scores_of([])
    assert got["region_precision"] == 0 and got["region_recall"] == 0 and got["range_far"] == 1
    bona = M.region_scores({}, {"b": clip((1, 0.5))})
    assert bona["region_f1"] == 0 and bona["range_frr"] == 0 and bona["n_true_events"] == 0


def test_events_match_one_to_one_and_long_regions_do_not_count_as_several():
    labels = clip((1, 0.1), (0, 0.4), (1, 0.1))  # one spoofed run, 0.10-0.50
    got = scores_of([[0.1, 0.3], [0.32, 0.5]], labels)  # IoUs 0.5 and 0.45: one match
    assert (got["n_matched_events"], got["event_precision"], got["event_recall"]) == (1, 0.5, 1.0)
    assert got["region_precision"] == 1 and got["region_recall"] == pytest.approx(0.38 / 0.4)
    three = clip((1, 0.1), (0, 0.1), (1, 0.1), (0, 0.1), (1, 0.1), (0, 0.1), (1, 0.1))
    blanket = scores_of([[0.1, 0.6]], three)
    assert blanket["region_recall"] == pytest.approx(1) and blanket["region_precision"] == pytest.approx(0.6)
    assert blanket["event_recall"] == 0, "one region over three short spoofs finds none of them"


def test_regions_are_merged_and_clipped_to_the_clip():
    got = scores_of([[0.1, 0.18], [0.15, 0.2], [0.38, 9.0]])
    assert got["predicted_spoof_s"] == pytest.approx(0.12), "overlaps count once; time past 0.4 s is no clip"
    assert got["n_predicted_events"] == 2 and got["event_precision"] == 0.5
    with pytest.raises(ValueError, match="have no labels"):
        M.region_scores({"zz": np.zeros((1, 2))}, {"a": LABELS})


# ---- `antispoof score` on a regions file ---------------------------------------------------------

@pytest.fixture
def data_dir(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    ids = [f"{i:03d}" for i in range(4)]
    pd.DataFrame({"utt_id": ids, "label": ["bonafide", "bonafide", "spoof", "spoof"]}).to_csv(
        d / "solution.csv", index=False)
    pd.DataFrame({"utt_id": ids, "path": "a.flac", "duration": 0.4}).to_csv(d / "test.csv", index=False)
    np.savez(d / "solution_segments.npz", **{"000": clip((1, 0.4)), "001": clip((1, 0.4)),
                                             "002": LABELS, "003": clip((0, 0.4))})
    return d


def test_score_reports_time_and_event_figures_beside_the_frame_ones(tmp_path, data_dir, capsys):
    path = tmp_path / "r.csv"
    # 002: 0.125-0.225 (IoU 0.6); 003: all of it; 001: a false 0.1 s
    path.write_text("utt_id,start,end\n002,0.125,0.225\n003,0,0.4\n001,0.2,0.3\n")
    assert cli(["score", str(path), "--data", str(data_dir)]) == 0
    got = json.loads(capsys.readouterr().out)
    tp, fp, spoof = 0.075 + 0.4, 0.025 + 0.1, 0.5
    assert got["region_precision"] == pytest.approx(tp / (tp + fp))
    assert got["region_recall"] == pytest.approx(tp / spoof)
    assert got["range_frr"] == pytest.approx(fp / 1.1) and got["range_far"] == pytest.approx(1 - tp / spoof)
    assert (got["n_true_events"], got["n_predicted_events"], got["n_matched_events"]) == (2, 3, 2)
    assert got["event_precision"] == pytest.approx(2 / 3) and got["event_recall"] == 1.0
    assert "segment_f1" in got and "utterance_f1" in got, "the point-based figures stay"
    # frames by centre: 002 gets frames 12-21 (centres 0.125-0.215) where 10-19 are spoofed: 8 right, 2 wrong
    assert got["segment_precision"] == pytest.approx((8 + 40) / (10 + 40 + 10))
