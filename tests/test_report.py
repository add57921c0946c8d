"""Results tables aggregate exactly the fold metrics on disk."""
from __future__ import annotations

import json

from antispoof.results import collect, report


def _fold(root, experiment, fold, eer, seg_eer):
    path = root / "spoofbench-x" / experiment / f"fold{fold}" / "metrics.json"
    path.parent.mkdir(parents=True)
    metrics = {"fold": fold, "epochs": 4, "seconds_per_epoch": 10.0, "n_parameters": 123,
               "oof": {"eer": eer, "segment_eer": seg_eer}, "test": {"eer": eer + 0.1, "f1_at_eer": 0.5}}
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
