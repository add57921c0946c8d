"""Manifest readers and segment-label files: valid data loads, every bad input is one clear line."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from antispoof.data import manifest as mf
from antispoof.schema import ManifestError

SR = 16000


def write_clip(path: Path, seconds: float, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * SR))) / SR
    wave = 0.3 * np.sin(2 * np.pi * (150 + 30 * seed) * t) + 0.01 * rng.standard_normal(t.size)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), wave.astype(np.float32), SR, subtype="PCM_16")
    return path


@pytest.fixture
def dataset(tmp_path) -> Path:
    """A complete little data set: relative and absolute paths, hidden test labels, segments."""
    root = tmp_path / "ds"
    elsewhere = write_clip(tmp_path / "corpus" / "far.wav", 0.4, 9)
    for i, name in enumerate(["a", "b", "c", "t1", "t2"]):
        write_clip(root / "audio" / f"{name}.wav", 0.3 + 0.1 * i, i)
    pd.DataFrame({
        "utt_id": ["a", "b", "c", "d"],
        "path": ["audio/a.wav", "audio/b.wav", "audio/c.wav", str(elsewhere)],
        "duration": [0.3, 0.4, 0.5, 0.4],
        "label": ["bonafide", "spoof", "spoof", "bonafide"],
        "speaker": ["s1", "s1", "s2", "s3"],
    }).to_csv(root / "train.csv", index=False)
    pd.DataFrame({"utt_id": ["t1", "t2"], "path": ["audio/t1.wav", "audio/t2.wav"],
                  "duration": [0.6, 0.7]}).to_csv(root / "test.csv", index=False)
    pd.DataFrame({"utt_id": ["t2", "t1"], "label": ["spoof", "bonafide"],
                  "attack": ["A01", "-"]}).to_csv(root / "solution.csv", index=False)
    return root


def edit_csv(path: Path, **changes) -> None:
    """Set cells by (row index, column) = value, keeping everything as text."""
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    for (row, column), value in changes.get("cells", {}).items():
        df.loc[row, column] = value
    df.to_csv(path, index=False)


def assert_one_line(err) -> None:
    assert "\n" not in str(err.value)


# ---- read_manifest / load_split ------------------------------------------------------

def test_load_train_resolves_paths(dataset, tmp_path):
    train = mf.load_split(dataset, "train")
    assert list(train["utt_id"]) == ["a", "b", "c", "d"]
    assert train["duration"].dtype == float
    assert train.loc[0, "audio"] == str(dataset / "audio" / "a.wav")
    assert train.loc[3, "audio"] == str(tmp_path / "corpus" / "far.wav")
    assert all(Path(p).is_file() for p in train["audio"])


def test_load_test_joins_hidden_labels(dataset):
    test = mf.load_split(dataset, "test")
    assert list(test["utt_id"]) == ["t1", "t2"]
    assert list(test["label"]) == ["bonafide", "spoof"] and list(test["attack"]) == ["-", "A01"]
    (dataset / "solution.csv").unlink()
    assert "label" not in mf.load_split(dataset, "test").columns
    with pytest.raises(ValueError, match="split must be train or test"):
        mf.load_split(dataset, "dev")


def test_ids_stay_strings(tmp_path):
    write_clip(tmp_path / "x.wav", 0.3)
    (tmp_path / "train.csv").write_text("utt_id,path,duration,label\n007,x.wav,0.3,spoof\n")
    assert mf.read_manifest(tmp_path / "train.csv").loc[0, "utt_id"] == "007"


def test_missing_file(tmp_path):
    with pytest.raises(ManifestError, match=r"train\.csv: file not found") as err:
        mf.load_split(tmp_path, "train")
    assert str(tmp_path) in str(err.value)


def test_missing_column(dataset):
    df = pd.read_csv(dataset / "train.csv").drop(columns=["duration"])
    df.to_csv(dataset / "train.csv", index=False)
    with pytest.raises(ManifestError, match=r"train\.csv: missing column\(s\) duration; found utt_id, path") as err:
        mf.load_split(dataset, "train")
    assert_one_line(err)


def test_malformed_csv(dataset):
    with open(dataset / "train.csv", "a") as fh:
        fh.write("e,audio/a.wav,0.3,spoof,s1,surplus,fields\n")
    with pytest.raises(ManifestError, match=r"train\.csv: malformed CSV \(.*line 6") as err:
        mf.load_split(dataset, "train")
    assert_one_line(err)


@pytest.mark.parametrize("cells, message", [
    ({(2, "utt_id"): "a"}, r"train\.csv row 3: duplicate utt_id 'a'"),
    ({(1, "utt_id"): ""}, r"train\.csv row 2: empty utt_id"),
    ({(1, "label"): "fake"}, r"train\.csv row 2: unknown label 'fake' \(expected bonafide or spoof\)"),
    ({(3, "label"): ""}, r"train\.csv row 4: unknown label"),
    ({(0, "duration"): "0"}, r"train\.csv row 1: bad duration '0(\.0)?'"),
    ({(1, "duration"): "-1.5"}, r"train\.csv row 2: bad duration '-1\.5'"),
    ({(2, "duration"): "abc"}, r"train\.csv row 3: bad duration 'abc'"),
    ({(3, "duration"): "inf"}, r"train\.csv row 4: bad duration 'inf'"),
    ({(1, "path"): ""}, r"train\.csv row 2: empty path"),
    ({(2, "path"): "audio/zzz.wav"}, r"train\.csv row 3: audio file not found: .*ds/audio/zzz\.wav"),
])
def test_bad_train_rows(dataset, cells, message):
    edit_csv(dataset / "train.csv", cells=cells)
    with pytest.raises(ManifestError, match=message) as err:
        mf.load_split(dataset, "train")
    assert str(dataset / "train.csv") in str(err.value)
    assert_one_line(err)


def test_missing_audio_can_be_skipped(dataset):
    edit_csv(dataset / "train.csv", cells={(2, "path"): "audio/zzz.wav"})
    train = mf.load_split(dataset, "train", check_files=False)
    assert train.loc[2, "audio"].endswith("zzz.wav")


def test_bad_test_and_solution_rows(dataset):
    edit_csv(dataset / "test.csv", cells={(1, "duration"): "-2"})
    with pytest.raises(ManifestError, match=r"ds/test\.csv row 2: bad duration '-2(\.0)?'"):
        mf.load_split(dataset, "test")
    edit_csv(dataset / "test.csv", cells={(1, "duration"): "0.7"})
    edit_csv(dataset / "solution.csv", cells={(0, "label"): "SPOOF"})
    with pytest.raises(ManifestError, match=r"ds/solution\.csv row 1: unknown label 'SPOOF'"):
        mf.load_split(dataset, "test")


def test_solution_test_mismatch(dataset):
    edit_csv(dataset / "solution.csv", cells={(0, "utt_id"): "t9"})
    with pytest.raises(ManifestError, match=r"ds/solution\.csv: 2 utt_id\(s\) differ from test\.csv, e\.g\. 't2'") as err:
        mf.load_split(dataset, "test")
    assert_one_line(err)


# ---- segments --------------------------------------------------------------------------

@pytest.mark.parametrize("seconds, frames", [(1.0, 100), (0.3, 30), (0.7, 70), (1.001, 101), (0.004, 1), (0.0, 1)])
def test_n_segments(seconds, frames):
    assert mf.n_segments(seconds) == frames


def test_constant_segments():
    bona, spoof = mf.constant_segments("bonafide", 0.25), mf.constant_segments("spoof", 0.25)
    assert bona.dtype == spoof.dtype == np.int8
    assert len(bona) == 25 and set(bona) == {1} and set(spoof) == {0}


def test_segments_round_trip_and_fill(dataset):
    train = mf.load_split(dataset, "train")
    partial = np.ones(40, dtype=np.int64)
    partial[10:20] = 0
    mf.save_segments(dataset / "train_segments", {"b": partial})  # suffix added
    assert (dataset / "train_segments.npz").is_file()
    assert not list(dataset.glob(".train_segments*"))
    segments = mf.load_segments(dataset / "train_segments.npz", train)
    assert set(segments) == {"a", "b", "c", "d"}
    assert all(s.dtype == np.int8 for s in segments.values())
    np.testing.assert_array_equal(segments["b"], partial)
    np.testing.assert_array_equal(segments["c"], np.zeros(50, dtype=np.int8))  # constant from the manifest
    assert set(segments["a"]) == {1}
    assert mf.load_segments(dataset / "absent.npz", train)["d"].tolist() == [1] * 40
    assert mf.load_segments(dataset / "train_segments.npz") .keys() == {"b"}


@pytest.mark.parametrize("seg, message", [
    (np.array([1, 1, 0, 1]), r"segment labels of 'a' contradict its label 'bonafide'"),
    (np.array([1, 2, 1]), r"segment labels of 'a' are not 0/1"),
    (np.array([], dtype=np.int8), r"segment labels of 'a' are empty"),
])
def test_segments_inconsistent_with_manifest(dataset, seg, message):
    train = mf.load_split(dataset, "train")
    mf.save_segments(dataset / "train_segments.npz", {"a": seg})
    with pytest.raises(ManifestError, match=r"ds/train_segments\.npz: " + message) as err:
        mf.load_segments(dataset / "train_segments.npz", train)
    assert_one_line(err)


def test_spoof_segments_without_spoof_frames(dataset):
    train = mf.load_split(dataset, "train")
    mf.save_segments(dataset / "train_segments.npz", {"c": np.ones(50)})
    with pytest.raises(ManifestError, match=r"segment labels of 'c' contradict its label 'spoof'"):
        mf.load_segments(dataset / "train_segments.npz", train)


@pytest.mark.parametrize("content", [b"PK\x03\x04 not really a zip", b"plain text", None])
def test_unreadable_segment_file(dataset, content):
    path = dataset / "train_segments.npz"
    if content is None:  # an .npy array saved under the .npz name
        with open(path, "wb") as fh:
            np.save(fh, np.ones(3))
    else:
        path.write_bytes(content)
    with pytest.raises(ManifestError, match=r"ds/train_segments\.npz: unreadable segment labels") as err:
        mf.load_segments(path)
    assert_one_line(err)


def test_atomic_writes_get_ordinary_permissions(tmp_path):
    import os
    import stat

    from antispoof.utils import write_text_atomic

    target = tmp_path / "card.md"
    write_text_atomic(target, "hello")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
    assert target.read_text() == "hello" and not list(tmp_path.glob(".card*"))
