"""Folds: grouped, stratified, deterministic, and refusing impossible requests."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from antispoof.commands.cli import main as cli_main
from antispoof.data.folds import fold_groups, make_folds
from antispoof.schema import ManifestError


def write_train(folder: Path, n_speakers: int = 30, seed: int = 0, columns=("group", "speaker", "attack")) -> Path:
    """A train.csv of speakers with several clips each; groups = speaker or one recording's family.

    Folds never open the audio, so paths may point nowhere.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_speakers):
        for c in range(rng.integers(2, 7)):
            spoof = bool((s + c) % 3)
            rows.append({
                "utt_id": f"u{s:03d}_{c}", "path": f"audio/u{s:03d}_{c}.wav", "duration": 1.0 + c / 10,
                "label": "spoof" if spoof else "bonafide",
                "attack": f"A0{1 + (s + c) % 4}" if spoof else "-",
                "speaker": f"spk{s:03d}",
                "group": f"spk{s:03d}" if s % 5 else f"rec{s // 10}",  # some groups span speakers
            })
    df = pd.DataFrame(rows)[["utt_id", "path", "duration", "label", *columns]]
    folder.mkdir(parents=True, exist_ok=True)
    df.to_csv(folder / "train.csv", index=False)
    return folder


def test_folds_are_a_grouped_stratified_partition(tmp_path):
    data = write_train(tmp_path / "bench")
    out = make_folds(data, k=5, seed=0, out=tmp_path / "f.csv")
    folds = pd.read_csv(out, dtype={"utt_id": str, "group": str})
    train = pd.read_csv(data / "train.csv")
    assert list(folds.columns) == ["utt_id", "fold", "label", "group"]
    assert list(folds["utt_id"]) == list(train["utt_id"])  # every utt once, in manifest order
    assert set(folds["fold"]) == set(range(5))
    assert (folds.groupby("group")["fold"].nunique() == 1).all()
    assert (folds.groupby("fold")["label"].nunique() == 2).all()
    spoof_share = folds.groupby("fold")["label"].apply(lambda s: (s == "spoof").mean())
    assert spoof_share.max() - spoof_share.min() < 0.35


def test_folds_deterministic_per_seed(tmp_path):
    data = write_train(tmp_path / "bench")
    a = pd.read_csv(make_folds(data, k=4, seed=3, out=tmp_path / "a.csv"))
    b = pd.read_csv(make_folds(data, k=4, seed=3, out=tmp_path / "b.csv"))
    c = pd.read_csv(make_folds(data, k=4, seed=4, out=tmp_path / "c.csv"))
    pd.testing.assert_frame_equal(a, b)
    assert not a["fold"].equals(c["fold"])


def test_default_output_under_working_directory(tmp_path, monkeypatch):
    data = write_train(tmp_path / "data" / "mybench")
    monkeypatch.chdir(tmp_path)
    out = make_folds(str(data) + "/", k=3)
    assert out == Path("folds") / "mybench" / "folds.csv"
    assert (tmp_path / "folds" / "mybench" / "folds.csv").is_file()
    assert not list((tmp_path / "folds" / "mybench").glob(".*"))  # atomic write left no temp file


def test_cli_folds(tmp_path, capsys):
    data = write_train(tmp_path / "bench")
    out = ["--k", "3", "--out", str(tmp_path / "x.csv")]
    assert cli_main(["folds", "--data", str(data), *out]) == 2, "the command checks the audio first"
    assert "u000_0.wav: audio file not found" in capsys.readouterr().err
    assert cli_main(["folds", "--data", str(data), *out, "--no-audio-check"]) == 0  # a machine without the corpus
    assert "folds written" in capsys.readouterr().out
    assert cli_main(["folds", "--data", str(tmp_path / "none")]) == 2
    assert "train.csv: file not found" in capsys.readouterr().err


def test_group_fallbacks(tmp_path):
    speaker_only = pd.read_csv(write_train(tmp_path / "s", columns=("speaker",)) / "train.csv")
    assert list(fold_groups(speaker_only)) == list(speaker_only["speaker"])
    bare = pd.read_csv(write_train(tmp_path / "b", columns=()) / "train.csv")
    assert list(fold_groups(bare)) == list(bare["utt_id"])
    partial = pd.DataFrame({"utt_id": ["a", "b", "c"], "group": ["g", None, None], "speaker": [None, "s", None]})
    assert list(fold_groups(partial)) == ["g", "s", "c"]
    folds = pd.read_csv(make_folds(tmp_path / "b", k=5, out=tmp_path / "b.csv"))
    assert (folds.groupby("fold")["label"].nunique() == 2).all()


def test_few_groups_of_one_class_still_fills_every_fold(tmp_path):
    """Two bona fide speakers, five folds: folds stay non-empty, groups intact."""
    rows = [{"utt_id": f"b{i}", "path": "x.wav", "duration": 1.0, "label": "bonafide", "speaker": f"B{i % 2}"}
            for i in range(6)]
    rows += [{"utt_id": f"s{i}", "path": "x.wav", "duration": 1.0, "label": "spoof", "speaker": f"S{i}"}
             for i in range(8)]
    (tmp_path / "d").mkdir()
    pd.DataFrame(rows).to_csv(tmp_path / "d" / "train.csv", index=False)
    folds = pd.read_csv(make_folds(tmp_path / "d", k=5, out=tmp_path / "f.csv"))
    assert sorted(folds["fold"].unique()) == list(range(5))
    assert (pd.DataFrame(rows).assign(fold=folds["fold"]).groupby("speaker")["fold"].nunique() == 1).all()


@pytest.mark.parametrize("k, message", [
    (1, r"train\.csv: k = 1 folds; need k >= 2"),
    (40, r"train\.csv: 40 folds need at least 40 groups, found \d+"),
])
def test_impossible_folds_refused(tmp_path, k, message):
    data = write_train(tmp_path / "bench", n_speakers=12)
    with pytest.raises(ManifestError, match=message):
        make_folds(data, k=k, out=tmp_path / "f.csv")
    assert not (tmp_path / "f.csv").exists()


def test_bad_manifest_is_reported(tmp_path):
    data = write_train(tmp_path / "bench")
    df = pd.read_csv(data / "train.csv")
    df.loc[4, "label"] = "fake"
    df.to_csv(data / "train.csv", index=False)
    with pytest.raises(ManifestError, match=r"bench/train\.csv row 5: unknown label 'fake'"):
        make_folds(data, out=tmp_path / "f.csv")
