"""Results tables aggregate exactly the fold metrics on disk."""
from __future__ import annotations

import json

from antispoof.commands.report import collect, report


def _fold(root, experiment, fold, eer, seg_eer, by_condition=None):
    path = root / "spoofbench-x" / experiment / f"fold{fold}" / "metrics.json"
    path.parent.mkdir(parents=True)
    test = {"eer": eer + 0.1, "f1_at_eer": 0.5, **({"eer_by_condition": by_condition} if by_condition else {})}
    metrics = {"fold": fold, "epochs": 4, "seconds_per_epoch": 10.0, "n_parameters": 123,
               "oof": {"eer": eer, "segment_eer": seg_eer}, "test": test}
    path.write_text(json.dumps(metrics))


def test_report_means_and_spreads_over_folds(tmp_path):
    _fold(tmp_path, "selcnn_segbw", 0, 0.10, 0.20)
    _fold(tmp_path, "selcnn_segbw", 1, 0.20, 0.30)
    _fold(tmp_path, "lcnn_segment", 0, 0.30, 0.40)
    assert len(collect(tmp_path, "spoofbench-x")) == 3
    lines = report("spoofbench-x", tmp_path).splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = {cells[0]: dict(zip(header, cells)) for cells in
            ([c.strip() for c in line.strip("|").split("|")] for line in lines[2:])}
    segbw, lcnn = rows["selcnn_segbw"], rows["lcnn_segment"]
    assert segbw["folds"] == "2" and segbw["OOF utt EER %"] == "15.00 ± 7.07"
    assert segbw["OOF seg EER %"] == "25.00 ± 7.07" and segbw["test utt EER %"] == "25.00 ± 7.07"
    assert lcnn["folds"] == "1" and lcnn["OOF utt EER %"] == "30.00", "no spread from a single fold"
    assert lcnn["test seg EER %"] == "-"
    assert "no finished folds" in report("spoofbench-y", tmp_path)


def test_report_shows_test_eer_per_condition_where_folds_have_it(tmp_path):
    _fold(tmp_path, "whisper_base", 0, 0.1, 0.2, {"pooled": 0.2, "seen_attack": 0.05, "partial": 0.40})
    _fold(tmp_path, "whisper_base", 1, 0.1, 0.2, {"pooled": 0.2, "seen_attack": 0.15, "partial": 0.30})
    lines = report("spoofbench-x", tmp_path).splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    row = dict(zip(header, [c.strip() for c in lines[2].strip("|").split("|")]))
    assert row["test seen_attack %"] == "10.00 ± 7.07" and row["test partial %"] == "35.00 ± 7.07"
    assert "test unseen_attack %" not in header, "a condition no fold has gets no column"
