"""Importers, run on tiny corpora written in each native layout with real audio."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from antispoof.data import manifest as mf
from antispoof.importers import import_asvspoof2019_la, import_competition_csv, import_partialspoof
from antispoof.schema import ManifestError

SR = 16000


def write_clip(path: Path, seconds: float, seed: int = 0) -> Path:
    """A harmonic tone plus noise: real, decodable audio of a known length."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * SR))) / SR
    f0 = 110 + 20 * seed
    wave = sum(0.2 / h * np.sin(2 * np.pi * h * f0 * t) for h in range(1, 5)) + 0.01 * rng.standard_normal(t.size)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), wave.astype(np.float32), SR, subtype="PCM_16")
    return path


# ---- PartialSpoof ------------------------------------------------------------------

PS_ROWS = {  # subset -> (speaker, utt_id, attack, label, seconds)
    "train": [("LA_0079", "CON_T_0000000", "A16", "spoof", 0.5),
              ("LA_0079", "CON_T_0000029", "-", "bonafide", 0.3),
              ("LA_0080", "CON_T_0000001", "A19", "spoof", 0.42)],
    "dev": [("LA_0069", "CON_D_0000000", "-", "bonafide", 0.35),
            ("LA_0069", "CON_D_0000001", "A08", "spoof", 0.6)],
    "eval": [("LA_0001", "CON_E_0000000", "-", "bonafide", 0.31),
             ("LA_0002", "CON_E_0000001", "A13", "spoof", 1.0)],
}


def ps_segments(label: str, seconds: float, as_int: bool = False) -> np.ndarray:
    """Native PartialSpoof labels: '1'/'0' strings at 10 ms, spoof clips spoofed in the middle."""
    n = mf.n_segments(seconds)
    seg = np.ones(n, dtype=int)
    if label == "spoof":
        seg[n // 3: 2 * n // 3] = 0
    return seg if as_int else np.array([str(v) for v in seg], dtype="<U21")


def protocol_path(db: Path, subset: str) -> Path:
    return db / "protocols" / "PartialSpoof_LA_cm_protocols" / f"PartialSpoof.LA.cm.{subset}.trl.txt"


@pytest.fixture
def partialspoof(tmp_path) -> Path:
    db = tmp_path / "PartialSpoof" / "database"
    for seed, (subset, rows) in enumerate(PS_ROWS.items()):
        lines, seglab = [], {}
        for i, (spk, uid, attack, label, seconds) in enumerate(rows):
            lines.append(f"{spk} {uid} - {attack} {label}")
            write_clip(db / subset / "con_wav" / f"{uid}.wav", seconds, seed + i)
            seglab[uid] = ps_segments(label, seconds, as_int=(subset == "dev"))
        protocol_path(db, subset).parent.mkdir(parents=True, exist_ok=True)
        protocol_path(db, subset).write_text("\n".join(lines) + "\n")
        (db / "segment_labels").mkdir(exist_ok=True)
        np.save(db / "segment_labels" / f"{subset}_seglab_0.01.npy", seglab, allow_pickle=True)
    return db


def test_partialspoof_import(partialspoof, tmp_path):
    out = import_partialspoof(partialspoof, tmp_path / "ps")
    assert out == tmp_path / "ps"
    train = mf.load_split(out, "train")
    assert list(train["utt_id"]) == [r[1] for r in PS_ROWS["train"] + PS_ROWS["dev"]]
    assert list(train["subset"]) == ["train"] * 3 + ["dev"] * 2
    assert list(train["label"]) == [r[3] for r in PS_ROWS["train"] + PS_ROWS["dev"]]
    assert list(train["attack"]) == [r[2] for r in PS_ROWS["train"] + PS_ROWS["dev"]]
    assert list(train["group"]) == list(train["speaker"])
    assert set(train["language"]) == {"en"} and set(train["source"]) == {"partialspoof"}
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in train["path"])
    np.testing.assert_allclose(train["duration"], [r[4] for r in PS_ROWS["train"] + PS_ROWS["dev"]], atol=1e-4)

    segments = mf.load_segments(out / "train_segments.npz", train)
    for spk, uid, attack, label, seconds in PS_ROWS["train"] + PS_ROWS["dev"]:
        assert segments[uid].dtype == np.int8
        np.testing.assert_array_equal(segments[uid], ps_segments(label, seconds, as_int=True))

    test = mf.load_split(out, "test")
    assert list(pd.read_csv(out / "test.csv").columns) == ["utt_id", "path", "duration"]
    assert list(test["utt_id"]) == ["CON_E_0000000", "CON_E_0000001"]
    assert list(test["label"]) == ["bonafide", "spoof"] and set(test["subset"]) == {"eval"}
    sol_seg = mf.load_segments(out / "solution_segments.npz", test)
    assert sol_seg["CON_E_0000001"].min() == 0 and sol_seg["CON_E_0000000"].min() == 1

    sub = pd.read_csv(out / "sample_submission.csv", dtype={"utt_id": str})
    assert list(sub.columns) == ["utt_id", "label"] and (sub["label"] == 0).all()
    assert list(sub["utt_id"]) == list(test["utt_id"])
    card = (out / "README.md").read_text()
    assert "train: 5 utterances" in card and "bonafide 2, spoof 3" in card
    assert not list(out.glob(".*"))  # no temporary files left behind


def test_partialspoof_accepts_parent_of_database(partialspoof, tmp_path):
    out = import_partialspoof(partialspoof.parent, tmp_path / "ps")
    assert len(mf.load_split(out, "train")) == 5


def test_partialspoof_missing_protocol(partialspoof, tmp_path):
    protocol_path(partialspoof, "dev").unlink()
    with pytest.raises(ManifestError, match=r"PartialSpoof\.LA\.cm\.dev\.trl\.txt: protocol file not found"):
        import_partialspoof(partialspoof, tmp_path / "ps")
    assert not (tmp_path / "ps" / "train.csv").exists()


@pytest.mark.parametrize("line, problem", [
    ("LA_0079 CON_T_0000099 - spoof", r"line 2: expected 5 fields"),
    ("LA_0079 CON_T_0000099 - A16 fake", r"line 2: unknown label 'fake'"),
    ("LA_0079 CON_T_0000000 - A16 spoof", r"line 2: duplicate utt_id 'CON_T_0000000' \(first at .*train\.trl\.txt line 1\)"),
])
def test_partialspoof_bad_protocol_line(partialspoof, tmp_path, line, problem):
    path = protocol_path(partialspoof, "train")
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], line] + lines[1:]) + "\n")
    with pytest.raises(ManifestError, match=r"PartialSpoof\.LA\.cm\.train\.trl\.txt " + problem) as err:
        import_partialspoof(partialspoof, tmp_path / "ps")
    assert "\n" not in str(err.value)


def test_partialspoof_duplicate_across_subsets(partialspoof, tmp_path):
    path = protocol_path(partialspoof, "eval")
    path.write_text(path.read_text() + "LA_0079 CON_T_0000029 - - bonafide\n")
    with pytest.raises(ManifestError, match=r"eval\.trl\.txt line 3: duplicate utt_id 'CON_T_0000029' \(first at .*train"):
        import_partialspoof(partialspoof, tmp_path / "ps")


def test_partialspoof_missing_audio(partialspoof, tmp_path):
    (partialspoof / "dev" / "con_wav" / "CON_D_0000001.wav").unlink()
    with pytest.raises(ManifestError, match=r"dev\.trl\.txt line 2: audio file not found: .*CON_D_0000001\.wav"):
        import_partialspoof(partialspoof, tmp_path / "ps")


def test_partialspoof_segment_label_problems(partialspoof, tmp_path):
    seglab_path = partialspoof / "segment_labels" / "eval_seglab_0.01.npy"
    seglab = np.load(seglab_path, allow_pickle=True).item()
    seglab["CON_E_0000000"] = ps_segments("spoof", 0.31)  # a bona fide utterance with spoofed frames
    np.save(seglab_path, seglab, allow_pickle=True)
    with pytest.raises(ManifestError, match=r"eval_seglab_0\.01\.npy: segment labels of 'CON_E_0000000' "
                                            r"contradict its label 'bonafide' \(.*eval\.trl\.txt line 1\)"):
        import_partialspoof(partialspoof, tmp_path / "ps")
    del seglab["CON_E_0000000"]
    np.save(seglab_path, seglab, allow_pickle=True)
    with pytest.raises(ManifestError, match=r"eval_seglab_0\.01\.npy: no segment labels for 'CON_E_0000000'"):
        import_partialspoof(partialspoof, tmp_path / "ps")
    seglab["CON_E_0000000"] = np.array(["1", "x"])
    np.save(seglab_path, seglab, allow_pickle=True)
    with pytest.raises(ManifestError, match=r"eval_seglab_0\.01\.npy: segment labels of 'CON_E_0000000' contain 'x'"):
        import_partialspoof(partialspoof, tmp_path / "ps")


# ---- ASVspoof 2019 LA ----------------------------------------------------------------

ASV_ROWS = {
    "train": [("LA_0079", "LA_T_1138215", "-", "bonafide", 0.4), ("LA_0079", "LA_T_1271820", "A01", "spoof", 0.55),
              ("LA_0080", "LA_T_0000001", "A02", "spoof", 0.3)],
    "dev": [("LA_0069", "LA_D_1047731", "-", "bonafide", 0.45), ("LA_0070", "LA_D_1105538", "A03", "spoof", 0.62)],
    "eval": [("LA_0039", "LA_E_2834763", "A11", "spoof", 0.7), ("LA_0014", "LA_E_8877452", "-", "bonafide", 0.33)],
}
ASV_NAMES = {"train": "train.trn", "dev": "dev.trl", "eval": "eval.trl"}


@pytest.fixture
def asvspoof(tmp_path) -> Path:
    la = tmp_path / "LA"
    (la / "ASVspoof2019_LA_cm_protocols").mkdir(parents=True)
    for seed, (subset, rows) in enumerate(ASV_ROWS.items()):
        lines = []
        for i, (spk, uid, attack, label, seconds) in enumerate(rows):
            lines.append(f"{spk} {uid} - {attack} {label}")
            write_clip(la / f"ASVspoof2019_LA_{subset}" / "flac" / f"{uid}.flac", seconds, seed + i)
        (la / "ASVspoof2019_LA_cm_protocols" / f"ASVspoof2019.LA.cm.{ASV_NAMES[subset]}.txt").write_text(
            "\n".join(lines) + "\n")
    return la


def test_asvspoof2019_import(asvspoof, tmp_path):
    out = import_asvspoof2019_la(asvspoof.parent, tmp_path / "asv19")  # parent of LA/ works too
    train = mf.load_split(out, "train")
    rows = ASV_ROWS["train"] + ASV_ROWS["dev"]
    assert list(train["utt_id"]) == [r[1] for r in rows]
    assert list(train["label"]) == [r[3] for r in rows]
    assert list(train["subset"]) == ["train"] * 3 + ["dev"] * 2
    assert all(p.endswith(".flac") and Path(p).is_absolute() for p in train["path"])
    np.testing.assert_allclose(train["duration"], [r[4] for r in rows], atol=1e-4)
    segments = mf.load_segments(out / "train_segments.npz", train)
    for r in train.itertuples():
        assert len(segments[r.utt_id]) == mf.n_segments(r.duration)
        assert set(segments[r.utt_id]) == {1 if r.label == "bonafide" else 0}
    test = mf.load_split(out, "test")
    assert list(test["label"]) == ["spoof", "bonafide"] and list(test["attack"]) == ["A11", "-"]
    assert set(mf.load_segments(out / "solution_segments.npz", test)) == set(test["utt_id"])


def test_asvspoof2019_errors(asvspoof, tmp_path):
    protocol = asvspoof / "ASVspoof2019_LA_cm_protocols" / "ASVspoof2019.LA.cm.eval.trl.txt"
    protocol.write_text(protocol.read_text() + "LA_0014 LA_E_0000009 - A07 spoof extra\n")
    with pytest.raises(ManifestError, match=r"ASVspoof2019\.LA\.cm\.eval\.trl\.txt line 3: expected 5 fields"):
        import_asvspoof2019_la(asvspoof, tmp_path / "asv19")
    protocol.unlink()
    with pytest.raises(ManifestError, match=r"ASVspoof2019\.LA\.cm\.eval\.trl\.txt: protocol file not found"):
        import_asvspoof2019_la(asvspoof, tmp_path / "asv19")


# ---- competition CSV ------------------------------------------------------------------

@pytest.fixture
def competition(tmp_path):
    audio, test_dir = tmp_path / "train_audio", tmp_path / "test_audio"
    rows = [("a001", "0", 0.4), ("a002", "1", 0.5), ("a003", "1", 0.3), ("a004", "0", 0.8)]
    for i, (name, _, seconds) in enumerate(rows):
        write_clip(audio / f"{name}.wav", seconds, i)
    for i, name in enumerate(["t002", "t001"]):
        write_clip(test_dir / f"{name}.wav", 0.35 + 0.1 * i, 10 + i)
    (test_dir / "notes.txt").write_text("not audio")
    csv = tmp_path / "train.csv"
    csv.write_text("speech_name,label\n" + "".join(f"{n},{lab}\n" for n, lab, _ in rows))
    return csv, audio, test_dir


def test_competition_csv_import(competition, tmp_path):
    csv, audio, test_dir = competition
    out = import_competition_csv(csv, audio, tmp_path / "fin", test_dir=test_dir)
    train = mf.load_split(out, "train")
    assert list(train["utt_id"]) == ["a001", "a002", "a003", "a004"]
    assert list(train["label"]) == ["bonafide", "spoof", "spoof", "bonafide"]
    assert list(train["group"]) == list(train["utt_id"])
    np.testing.assert_allclose(train["duration"], [0.4, 0.5, 0.3, 0.8], atol=1e-4)
    assert all(Path(p).is_absolute() for p in train["path"])
    segments = mf.load_segments(out / "train_segments.npz", train)
    assert segments["a002"].max() == 0 and segments["a001"].min() == 1
    test = mf.load_split(out, "test")
    assert list(test["utt_id"]) == ["t001", "t002"] and "label" not in test.columns
    assert not (out / "solution.csv").exists()
    assert json.loads((out / "competition.json").read_text()) == {
        "id_column": "speech_name", "label_column": "label", "positive": "spoof",
        "positive_value": 1, "negative_value": 0}
    sub = pd.read_csv(out / "sample_submission.csv")
    assert list(sub.columns) == ["utt_id", "label"] and (sub["label"] == 0).all()


def test_competition_csv_custom_columns(tmp_path):
    audio = tmp_path / "wavs"
    for i, name in enumerate(["x.wav", "y.wav", "z.wav"]):
        write_clip(audio / name, 0.3, i)
    csv = tmp_path / "labels.csv"
    csv.write_text("file,is_real,speaker\nx.wav,real,s1\ny.wav,fake,s1\nz.wav,fake,\n")
    out = import_competition_csv(csv, audio, tmp_path / "c", id_column="file", label_column="is_real",
                                 spoof_value="fake")
    train = mf.load_split(out, "train")
    assert list(train["utt_id"]) == ["x.wav", "y.wav", "z.wav"]  # ids kept verbatim, extension included
    assert list(train["label"]) == ["bonafide", "spoof", "spoof"]
    assert list(train["group"]) == ["s1", "s1", "z.wav"]
    meta = json.loads((out / "competition.json").read_text())
    assert meta["positive_value"] == "fake" and meta["negative_value"] == "real"


def test_competition_csv_spoof_value_zero(competition, tmp_path):
    csv, audio, _ = competition
    out = import_competition_csv(csv, audio, tmp_path / "fin", spoof_value=0)
    assert list(mf.load_split(out, "train")["label"]) == ["spoof", "bonafide", "bonafide", "spoof"]
    assert not (out / "test.csv").exists()


@pytest.mark.parametrize("extra, problem", [
    ("a005,2\n", r"train\.csv row 5: unknown label '2' in column 'label'"),
    ("a001,1\n", r"train\.csv row 5: duplicate id 'a001'"),
    ("a009,1\n", r"train\.csv row 5: audio file not found: .*train_audio/a009"),
])
def test_competition_csv_errors(competition, tmp_path, extra, problem):
    csv, audio, test_dir = competition
    csv.write_text(csv.read_text() + extra)
    with pytest.raises(ManifestError, match=problem):
        import_competition_csv(csv, audio, tmp_path / "fin", test_dir=test_dir)


def test_competition_csv_missing_column_and_file(competition, tmp_path):
    csv, audio, _ = competition
    with pytest.raises(ManifestError, match=r"train\.csv: missing column\(s\) name; found speech_name, label"):
        import_competition_csv(csv, audio, tmp_path / "fin", id_column="name")
    with pytest.raises(ManifestError, match=r"nope\.csv: file not found"):
        import_competition_csv(tmp_path / "nope.csv", audio, tmp_path / "fin")
    with pytest.raises(ManifestError, match=r"missing_dir: audio folder not found"):
        import_competition_csv(csv, tmp_path / "missing_dir", tmp_path / "fin")


def test_cli_import(asvspoof, competition, tmp_path, capsys):
    from antispoof.commands.cli import main

    assert main(["import", "asvspoof2019", "--root", str(asvspoof), "--out", str(tmp_path / "a")]) == 0
    assert "imported:" in capsys.readouterr().out
    csv, audio, test_dir = competition
    assert main(["import", "csv", "--csv", str(csv), "--audio-dir", str(audio), "--test-dir", str(test_dir),
                 "--out", str(tmp_path / "c")]) == 0
    assert len(mf.load_split(tmp_path / "c", "test")) == 2
    assert main(["import", "partialspoof", "--root", str(tmp_path / "nowhere"), "--out", str(tmp_path / "p")]) == 2
    assert "PartialSpoof.LA.cm.train.trl.txt: protocol file not found" in capsys.readouterr().err
