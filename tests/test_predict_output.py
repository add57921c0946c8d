"""predict's output folder: text cells taken from file names are safe to open in a spreadsheet
(formula injection escaped, names recoverable), numbers stay numbers."""
from __future__ import annotations

import csv
import shutil

import pandas as pd
import pytest

from antispoof.commands.predict import predict
from antispoof.commands.predict_output import escape_cell, unescape_cell

NAMES = ["=HYPERLINK(\"x\")", "+1", "-2", "@SUM(A1)", "'quoted", "plain", "a=b"]


@pytest.mark.parametrize("name", [*NAMES, "\tTAB", "\rCR", "''two", ""])
def test_escaping_is_exact_and_only_where_needed(name):
    cell = escape_cell(name)
    assert unescape_cell(cell) == name
    assert not cell.startswith(("=", "+", "-", "@", "\t", "\r"))
    assert (cell == name) == (not name.startswith(("=", "+", "-", "@", "\t", "\r", "'")))


def test_scores_regions_and_failed_files_escape_names_but_not_numbers(tiny, trained_mulbs, tmp_path):
    folder = tmp_path / "audio"
    folder.mkdir()
    source = tiny / pd.read_csv(tiny / "test.csv").path[0]
    for name in NAMES:
        shutil.copy(source, folder / f"{name}.flac")
    (folder / "=bad.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" * 20)
    result = predict(str(folder), experiment=str(trained_mulbs), out=tmp_path / "pred", threshold=1e9,
                     progress=False)
    with open(result["files"]["scores"], newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(unescape_cell(r["utt_id"]) for r in rows) == sorted([*NAMES, "=bad"])
    for row in rows:
        assert not row["utt_id"].startswith(("=", "+", "-", "@")) and not row["path"].startswith(("=", "+", "-", "@"))
        if row["status"] == "ok":
            float(row["score"]), float(row["llr"])  # plain numbers, a negative one included
    with open(result["files"]["regions"], newline="", encoding="utf-8") as fh:
        files = {r["file"] for r in csv.DictReader(fh)}
    assert {"'=HYPERLINK(\"x\")", "'-2", "plain"} <= files, "every clip is labelled spoof at 1e9"
    with open(result["files"]["failed"], newline="", encoding="utf-8") as fh:
        failed = list(csv.DictReader(fh))
    assert [r["utt_id"] for r in failed] == ["'=bad"]
