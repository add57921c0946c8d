"""The native importers, each on a tiny corpus in its exact published layout with real audio:
file names, folders, column order, header or not, the corpus's own label words."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from antispoof.commands.cli import main as cli
from antispoof.config import ConfigError
from antispoof.data import manifest as mf
from antispoof.importers import (import_asvspoof2021, import_asvspoof5, import_finvolution, import_inthewild,
                                 import_partialspoof)
from antispoof.schema import ManifestError, pool_labels
from antispoof.submit.scorer import score_submission
from antispoof.submit.writer import write_label_submission, write_score_submission

SR = 16000


def clip(path: Path, seconds: float, seed: int = 0) -> Path:
    """A short noisy tone, FLAC or WAV by the file's extension."""
    t = np.arange(int(round(seconds * SR))) / SR
    wave = 0.2 * np.sin(2 * np.pi * (120 + 15 * seed) * t) + 0.01 * np.random.default_rng(seed).standard_normal(t.size)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), wave.astype(np.float32), SR, subtype="PCM_16")
    return path


def one_line(err) -> str:
    assert "\n" not in str(err.value)
    return str(err.value)


# ---- FinVolution 2024 ---------------------------------------------------------------------------------

FIN_TRAIN = [("a0f3.wav", "1", 0.4), ("b71c.wav", "0", 0.5), ("c9d2.wav", "0", 0.3), ("d004.wav", "1", 0.6)]
FIN_TEST = ["x1.wav", "x0.wav", "x2.wav"]


@pytest.fixture
def finvolution(tmp_path) -> Path:
    root = tmp_path / "finvolution"
    for i, (name, _, seconds) in enumerate(FIN_TRAIN):
        clip(root / "train" / name, seconds, i)
    for i, name in enumerate(FIN_TEST):
        clip(root / "test" / name, 0.3 + 0.05 * i, 10 + i)
    (root / "train_label.txt").write_text("".join(f"{name},{label}\n" for name, label, _ in FIN_TRAIN))
    return root


def test_finvolution_import_keeps_the_first_line_and_maps_0_to_spoof(finvolution, tmp_path):
    out = import_finvolution(finvolution, tmp_path / "fin")
    train = mf.load_split(out, "train")
    assert list(train["utt_id"]) == ["a0f3", "b71c", "c9d2", "d004"]  # the first line is data, not a header
    assert list(train["label"]) == ["bonafide", "spoof", "spoof", "bonafide"]
    np.testing.assert_allclose(train["duration"], [r[2] for r in FIN_TRAIN], atol=1e-4)
    assert all(Path(p).is_absolute() and p.endswith(".wav") for p in train["path"])
    test = mf.load_split(out, "test")
    assert list(test["utt_id"]) == ["x0", "x1", "x2"] and not (out / "solution.csv").exists()
    assert json.loads((out / "competition.json").read_text()) == {
        "id_column": "speech_name", "label_column": "label", "positive": "spoof", "positive_value": 0,
        "negative_value": 1, "header": False, "id_extension": ".wav"}
    assert "no header" in (out / "README.md").read_text()


def test_finvolution_round_trip_writes_the_competition_format_byte_for_byte(finvolution, tmp_path):
    out = import_finvolution(finvolution, tmp_path / "fin")
    ids = ["x2", "x0", "x1"]  # any order: the writer follows test.csv
    scores = np.array([-1.5, 2.0, 0.3])  # higher = more bona fide
    labels = write_label_submission(tmp_path / "submit.csv", ids, scores < 0, out)
    # what the competition's baseline writes: no header, `name.wav,label`, 0 = fake, 1 = real
    assert labels.read_bytes() == b"x0.wav,1\nx1.wav,1\nx2.wav,0\n"
    scored = write_score_submission(tmp_path / "scores.csv", ids, scores, out)
    assert scored.read_text().splitlines() == ["x0.wav,2.0", "x1.wav,0.3", "x2.wav,-1.5"]

    # with hidden labels at hand, the local scorer reads that format back (extension stripped)
    pd.DataFrame({"utt_id": ["x0", "x1", "x2"], "label": ["bonafide", "spoof", "spoof"]}).to_csv(
        out / "solution.csv", index=False)
    got = score_submission(labels, out)
    assert (got["precision"], got["recall"]) == (1.0, 0.5)  # spoof positive: x2 found, x1 missed
    assert score_submission(scored, out)["eer"] == 0.0  # the bona fide clip outscores both spoofs
    bare = tmp_path / "bare.csv"
    bare.write_text("x0.wav,1\nx1,1\nx2.wav,0\n")
    with pytest.raises(ManifestError, match=r"bare\.csv row 2: speech_name 'x1' does not end in '\.wav'") as err:
        score_submission(bare, out)
    one_line(err)


@pytest.mark.parametrize("text, problem", [
    ("speech_name,label\na0f3.wav,1\n", r"row 1: label 'label' of 'speech_name' is not 0 \(spoof\) or 1 "
                                        r"\(bona fide\) \(the file has no header\)"),
    ("a0f3.wav,1\nb71c.wav,fake\n", r"row 2: label 'fake' of 'b71c.wav' is not 0"),
    ("a0f3.wav,1\na0f3.wav,0\n", r"row 2: duplicate name 'a0f3.wav'"),
    ("a0f3.wav,1\nzzzz.wav,0\n", r"row 2: audio file not found: .*train/zzzz\.wav"),
    ("a0f3.wav,1\nb71c.wav,0,x\n", r"malformed CSV"),
])
def test_finvolution_errors_name_the_file_and_row(finvolution, tmp_path, text, problem):
    (finvolution / "train_label.txt").write_text(text)
    with pytest.raises(ManifestError, match=r"train_label\.txt.*" + problem) as err:
        import_finvolution(finvolution, tmp_path / "fin")
    one_line(err)
    assert not (tmp_path / "fin" / "train.csv").exists()


# ---- ASVspoof 5 ----------------------------------------------------------------------------------------

ASV5 = {  # protocol file, audio folder, lines (the published field order and words)
    "train": ("ASVspoof5.train.tsv", "flac_T", ["T_4850 T_0000000000 F - - - AC3 A05 spoof -",
                                                "T_3734 T_0000000011 F - - - - bonafide bonafide -",
                                                "T_3734 T_0000000022 F - - - AC1 A01 spoof -"]),
    "dev": ("ASVspoof5.dev.track_1.tsv", "flac_D", ["D_0461 D_0000000190 M - - - - bonafide bonafide -",
                                                    "D_4461 D_0000000169 F - - - AC1 A14 spoof -"]),
    "eval": ("ASVspoof5.eval.track_1.tsv", "flac_E_eval", ["E_0001 E_0000000001 F C05 2 97 - bonafide bonafide -",
                                                           "E_0002 E_0000000002 M C08 1 12 AC2 A20 spoof -"]),
}
ASV5_IDS = {subset: [line.split()[1] for line in lines] for subset, (_, _, lines) in ASV5.items()}


@pytest.fixture
def asvspoof5(tmp_path) -> Path:
    root = tmp_path / "ASVspoof5"
    (root / "ASVspoof5_protocols").mkdir(parents=True)
    for seed, (protocol, audio, lines) in enumerate(ASV5.values()):
        for i, line in enumerate(lines):
            clip(root / audio / f"{line.split()[1]}.flac", 0.3 + 0.1 * i, seed + i)
        (root / "ASVspoof5_protocols" / protocol).write_text("\n".join(lines) + "\n")
    return root


def test_asvspoof5_import(asvspoof5, tmp_path, capsys):  # all three partitions: eval is the test split
    out = import_asvspoof5(asvspoof5.parent, tmp_path / "asv5")  # the folder above works too
    assert capsys.readouterr().out == ""
    train = mf.load_split(out, "train")
    assert list(train["utt_id"]) == [line.split()[1] for s in ("train", "dev") for line in ASV5[s][2]]
    assert list(train["label"]) == ["spoof", "bonafide", "spoof", "bonafide", "spoof"]
    assert list(train["attack"]) == ["A05", "bonafide", "A01", "bonafide", "A14"]
    assert list(train["subset"]) == ["train"] * 3 + ["dev"] * 2
    assert list(train["group"]) == ["T_4850", "T_3734", "T_3734", "D_0461", "D_4461"]
    assert list(train["attack_tag"])[:2] == ["AC3", "-"] and set(train["source"]) == {"asvspoof5"}
    test = mf.load_split(out, "test")
    assert list(pd.read_csv(out / "test.csv").columns) == ["utt_id", "path", "duration"]
    assert list(test["label"]) == ["bonafide", "spoof"] and list(test["codec"]) == ["C05", "C08"]
    assert set(mf.load_segments(out / "solution_segments.npz", test)) == {"E_0000000001", "E_0000000002"}
    card = (out / "README.md").read_text()
    assert list(test["subset"]) == ["eval"] * 2 and "train + dev; the test split (test.csv, solution.csv) is the eval" in card


def test_asvspoof5_errors(asvspoof5, tmp_path):
    dev = asvspoof5 / "ASVspoof5_protocols" / "ASVspoof5.dev.track_1.tsv"
    dev.write_text(dev.read_text() + "D_4461 D_0000000999 F - - AC1 A14 spoof -\n")
    with pytest.raises(ManifestError, match=r"dev\.track_1\.tsv line 3: expected 10 fields 'speaker file gender "
                                            r"codec codec_q codec_seed attack_tag attack_label key tmp', got 9") as err:
        import_asvspoof5(asvspoof5, tmp_path / "asv5")
    one_line(err)
    dev.write_text("D_4461 T_0000000011 F - - - AC1 A14 spoof -\n")
    with pytest.raises(ManifestError, match=r"line 1: duplicate utt_id 'T_0000000011' \(first at .*train\.tsv line 2"):
        import_asvspoof5(asvspoof5, tmp_path / "asv5")
    dev.unlink()  # flac_D is still there: half a partition is an incomplete copy, not a smaller corpus
    with pytest.raises(ManifestError, match=r"ASVspoof 5 dev protocol not found; looked for .*dev\.track_1\.tsv"):
        import_asvspoof5(asvspoof5, tmp_path / "asv5")


def keep_partitions(root: Path, *kept: str) -> Path:
    """The fixture's corpus with only `kept` partitions (the others' protocol and audio removed)."""
    for subset, (protocol, audio, _) in ASV5.items():
        if subset not in kept:
            (root / "ASVspoof5_protocols" / protocol).unlink()
            shutil.rmtree(root / audio)
    return root


def test_asvspoof5_train_alone_has_no_test_split(asvspoof5, tmp_path, capsys):
    out = tmp_path / "asv5"
    assert cli(["import", "asvspoof5", "--root", str(keep_partitions(asvspoof5, "train")), "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1:] == [f"imported: {out}"] and "training partition is present" in lines[0] and "no test split" in lines[0]
    train = mf.load_split(out, "train")
    assert list(train["utt_id"]) == ASV5_IDS["train"] and set(train["subset"]) == {"train"}
    assert sorted(mf.load_segments(out / "train_segments.npz")) == sorted(ASV5_IDS["train"])
    assert {p.name for p in out.iterdir()} == {"train.csv", "train_segments.npz", "README.md"}  # no test split
    card = (out / "README.md").read_text()
    assert "there is no test split" in card and "## test" not in card


def test_asvspoof5_train_and_dev_make_dev_the_test_split(asvspoof5, tmp_path, capsys):
    out = import_asvspoof5(keep_partitions(asvspoof5, "train", "dev").parent, tmp_path / "asv5")
    assert capsys.readouterr().out == ""
    train = mf.load_split(out, "train")
    assert list(train["utt_id"]) == ASV5_IDS["train"] and list(train["subset"]) == ["train"] * 3
    assert list(pd.read_csv(out / "test.csv").columns) == ["utt_id", "path", "duration"]
    test = mf.load_split(out, "test")
    assert list(test["utt_id"]) == ASV5_IDS["dev"] and list(test["label"]) == ["bonafide", "spoof"]
    assert list(test["subset"]) == ["dev", "dev"] and list(test["attack"]) == ["bonafide", "A14"]
    assert set(mf.load_segments(out / "solution_segments.npz", test)) == set(ASV5_IDS["dev"])
    assert "the test split (test.csv, solution.csv) is the dev partition" in (out / "README.md").read_text()


def test_asvspoof5_missing_places_are_all_listed(asvspoof5, tmp_path):
    protocols = asvspoof5 / "ASVspoof5_protocols"
    (protocols / "ASVspoof5.train.tsv").unlink()
    with pytest.raises(ManifestError) as err:
        import_asvspoof5(asvspoof5.parent, tmp_path / "asv5")  # from the folder above, too
    assert one_line(err) == (f"{asvspoof5}: ASVspoof 5 train protocol not found; looked for "
                             f"{asvspoof5 / 'ASVspoof5.train.tsv'}, {protocols / 'ASVspoof5.train.tsv'}")
    (asvspoof5 / "ASVspoof5.train.tsv").write_text("\n".join(ASV5["train"][2]) + "\n")  # the other place works
    shutil.rmtree(asvspoof5 / "flac_E_eval")  # eval protocol without its audio
    with pytest.raises(ManifestError) as err:
        import_asvspoof5(asvspoof5, tmp_path / "asv5")
    assert one_line(err) == (f"{asvspoof5}: ASVspoof 5 eval audio folder not found; looked for "
                             f"{asvspoof5 / 'flac_E_eval'}, {asvspoof5 / 'flac_E'}")


# ---- ASVspoof 2021 LA / DF -------------------------------------------------------------------------------

ASV21 = {
    "LA": ["LA_0009 LA_E_9332881 alaw ita_tx A07 spoof notrim eval",
           "LA_0020 LA_E_7294490 g722 loc_tx bonafide bonafide notrim eval",
           "LA_0031 LA_E_1000003 nocodec nocodec A19 spoof notrim progress"],
    "DF": ["LA_0023 DF_E_2000011 nocodec asvspoof A14 spoof notrim progress traditional_vocoder - - - -",
           "LA_0043 DF_E_2000026 mp3m4a asvspoof bonafide bonafide notrim eval - - - - -",
           "VCC2TF1 DF_E_2000057 ogg vcc2020 Task1-team20 spoof notrim eval neural_vocoder_autoregressive - - - -"],
}


def asvspoof2021(root: Path, track: str) -> Path:
    """keys/<track>/CM/trial_metadata.txt and the flac folder; DF's spread over two archive parts."""
    name = f"ASVspoof2021_{track}_eval"
    for i, line in enumerate(ASV21[track]):
        folder = root / name if track == "LA" else root / f"{name}_part0{i % 2}" / name
        clip(folder / "flac" / f"{line.split()[1]}.flac", 0.25 + 0.1 * i, i)
    keys = root / "keys" / track / "CM" / "trial_metadata.txt"
    keys.parent.mkdir(parents=True)
    keys.write_text("\n".join(ASV21[track]) + "\n")
    return root


@pytest.mark.parametrize("track", ["LA", "DF"])
def test_asvspoof2021_import_is_a_test_split(tmp_path, track):
    root = asvspoof2021(tmp_path / "asv21", track)
    out = import_asvspoof2021(root, tmp_path / "out", track=track.lower())
    assert len(mf.load_split(out, "train")) == 0 and mf.load_segments(out / "train_segments.npz") == {}
    test = mf.load_split(out, "test")
    assert list(test["utt_id"]) == [line.split()[1] for line in ASV21[track]]
    assert list(test["label"]) == ["spoof", "bonafide", "spoof"]
    assert list(test["subset"]) == [line.split()[7] for line in ASV21[track]]
    assert list(test["codec"]) == [line.split()[2] for line in ASV21[track]]
    if track == "DF":
        assert list(test["corpus"]) == ["asvspoof", "asvspoof", "vcc2020"] and "vocoder" in test.columns
    else:
        assert list(test["transmission"]) == ["ita_tx", "loc_tx", "nocodec"]
    assert "No training split" in (out / "README.md").read_text()


def test_asvspoof2021_trains_on_another_import(tmp_path, asvspoof5):
    train_set = import_asvspoof5(asvspoof5, tmp_path / "asv5")
    out = import_asvspoof2021(asvspoof2021(tmp_path / "asv21", "LA"), tmp_path / "out", "LA", train_from=train_set)
    train = mf.load_split(out, "train")
    assert len(train) == 5 and set(train["source"]) == {"asvspoof5"}
    assert all(Path(p).is_absolute() for p in train["path"])
    assert set(mf.load_segments(out / "train_segments.npz")) == set(train["utt_id"])
    assert len(mf.load_split(out, "test")) == 3


def test_asvspoof2021_errors(tmp_path):
    root = asvspoof2021(tmp_path / "asv21", "LA")
    with pytest.raises(ConfigError, match="track must be LA or DF"):
        import_asvspoof2021(root, tmp_path / "out", track=None)
    (root / "keys" / "DF" / "CM").mkdir(parents=True)
    (root / "keys" / "DF" / "CM" / "trial_metadata.txt").write_text(ASV21["LA"][0] + "\n")  # LA keys as DF
    with pytest.raises(ManifestError, match=r"DF/CM/trial_metadata\.txt line 1: expected 13 fields"):
        import_asvspoof2021(root, tmp_path / "out", "DF")
    (root / "ASVspoof2021_LA_eval" / "flac" / "LA_E_1000003.flac").unlink()
    with pytest.raises(ManifestError, match=r"LA/CM/trial_metadata\.txt line 3: audio file not found: "
                                            r".*ASVspoof2021_LA_eval/flac/LA_E_1000003\.flac") as err:
        import_asvspoof2021(root, tmp_path / "out", "LA")
    one_line(err)


# ---- In-the-Wild -----------------------------------------------------------------------------------------

ITW = [("0.wav", "Alec Guinness", "spoof"), ("1.wav", "Alec Guinness", "bona-fide"), ("2.wav", "Barack Obama", "spoof"),
       ("3.wav", "Barack Obama", "bona-fide")]


@pytest.fixture
def inthewild(tmp_path) -> Path:
    release = tmp_path / "release_in_the_wild"
    for i, (name, _, _) in enumerate(ITW):
        clip(release / name, 0.3 + 0.05 * i, i)
    (release / "meta.csv").write_text("file,speaker,label\n" + "".join(f"{f},{s},{lab}\n" for f, s, lab in ITW))
    return release


def test_inthewild_import(inthewild, tmp_path, capsys):
    assert cli(["import", "inthewild", "--root", str(inthewild.parent), "--out", str(tmp_path / "itw")]) == 0
    assert "imported:" in capsys.readouterr().out
    test = mf.load_split(tmp_path / "itw", "test")
    assert list(test["utt_id"]) == ["0", "1", "2", "3"]
    assert list(test["label"]) == ["spoof", "bonafide", "spoof", "bonafide"]
    assert list(test["group"]) == [s for _, s, _ in ITW] and set(test["language"]) == {"en"}


@pytest.mark.parametrize("line, problem", [
    ("4.wav,Barack Obama,bonafide", r"row 5: unknown label 'bonafide' \(expected bona-fide or spoof\)"),
    ("1.wav,Barack Obama,spoof", r"row 5: duplicate utt_id '1'"),
    ("9.wav,Barack Obama,spoof", r"row 5: audio file not found: .*release_in_the_wild/9\.wav"),
])
def test_inthewild_errors(inthewild, tmp_path, line, problem):
    meta = inthewild / "meta.csv"
    meta.write_text(meta.read_text() + line + "\n")
    with pytest.raises(ManifestError, match=r"meta\.csv " + problem) as err:
        import_inthewild(inthewild, tmp_path / "itw")
    one_line(err)


def test_cli_native_imports(finvolution, inthewild, tmp_path, capsys):
    assert cli(["import", "finvolution", "--root", str(finvolution), "--out", str(tmp_path / "fin")]) == 0
    assert cli(["import", "inthewild", "--root", str(inthewild), "--train-from", str(tmp_path / "fin"),
                "--out", str(tmp_path / "itw")]) == 0
    assert len(mf.load_split(tmp_path / "itw", "train")) == 4
    capsys.readouterr()
    assert cli(["import", "finvolution", "--root", str(finvolution), "--train-from", str(tmp_path / "fin"),
                "--out", str(tmp_path / "x")]) == 2
    assert "finvolution has its own training split" in capsys.readouterr().err
    assert cli(["import", "asvspoof2021", "--root", str(tmp_path), "--out", str(tmp_path / "y")]) == 2
    assert "track must be LA or DF" in capsys.readouterr().err


# ---- PartialSpoof with only coarse label files -----------------------------------------------------------

PS = {"train": [("LA_0079", "CON_T_0000000", "A16", "spoof", 0.53), ("LA_0079", "CON_T_0000029", "-", "bonafide", 0.3)],
      "dev": [("LA_0069", "CON_D_0000000", "-", "bonafide", 0.35), ("LA_0069", "CON_D_0000001", "A08", "spoof", 0.61)],
      "eval": [("LA_0001", "CON_E_0000001", "A13", "spoof", 0.9), ("LA_0002", "CON_E_0000000", "-", "bonafide", 0.31)]}
PS_FILES = {"train": ("0.02", "0.04", "0.64"), "dev": ("0.04", "0.16"), "eval": ("0.64",)}  # no 0.01 anywhere


def truth_10ms(label: str, seconds: float) -> np.ndarray:
    seg = np.ones(mf.n_segments(seconds), dtype=np.int8)
    if label == "spoof":
        seg[7:19] = 0
    return seg


@pytest.fixture
def coarse_partialspoof(tmp_path) -> Path:
    db = tmp_path / "database"
    for seed, (subset, rows) in enumerate(PS.items()):
        for i, (_, uid, _, _, seconds) in enumerate(rows):
            clip(db / subset / "con_wav" / f"{uid}.wav", seconds, seed + i)
        protocol = db / "protocols" / "PartialSpoof_LA_cm_protocols" / f"PartialSpoof.LA.cm.{subset}.trl.txt"
        protocol.parent.mkdir(parents=True, exist_ok=True)
        protocol.write_text("".join(f"{spk} {uid} - {attack} {label}\n" for spk, uid, attack, label, _ in rows))
        (db / "segment_labels").mkdir(exist_ok=True)
        for shift in PS_FILES[subset]:  # '0'/'1' strings, ceil(duration / shift) windows, as published
            factor = round(float(shift) / 0.01)
            seglab = {uid: pool_labels(truth_10ms(label, s), factor, int(np.ceil(round(s / float(shift), 6))))
                      .astype(str) for _, uid, _, label, s in rows}
            np.save(db / "segment_labels" / f"{subset}_seglab_{shift}.npy", seglab, allow_pickle=True)
    return db


def test_partialspoof_derives_10ms_from_the_finest_file_present(coarse_partialspoof, tmp_path):
    out = import_partialspoof(coarse_partialspoof, tmp_path / "ps")
    train, test = mf.load_split(out, "train"), mf.load_split(out, "test")
    segments = {**mf.load_segments(out / "train_segments.npz", train),
                **mf.load_segments(out / "solution_segments.npz", test)}
    for subset, rows in PS.items():
        finest = PS_FILES[subset][0]
        seglab = np.load(coarse_partialspoof / "segment_labels" / f"{subset}_seglab_{finest}.npy",
                         allow_pickle=True).item()
        for _, uid, _, label, seconds in rows:
            assert segments[uid].size == mf.n_segments(seconds)  # cut at the clip's end
            coarse = seglab[uid].astype(int)
            np.testing.assert_array_equal(pool_labels(segments[uid], round(float(finest) / 0.01), coarse.size), coarse)
            assert (segments[uid] <= truth_10ms(label, seconds)).all()  # coarser, never missing a spoofed frame
    card = (out / "README.md").read_text()
    assert "DERIVED (train from the 0.02 s file, dev from the 0.04 s file, eval from the 0.64 s file" in card


def test_partialspoof_without_any_label_file(coarse_partialspoof, tmp_path):
    (coarse_partialspoof / "segment_labels" / "dev_seglab_0.04.npy").unlink()
    (coarse_partialspoof / "segment_labels" / "dev_seglab_0.16.npy").unlink()
    with pytest.raises(ManifestError, match=r"dev_seglab_0\.01\.npy: segment label file not found, nor a coarser one"):
        import_partialspoof(coarse_partialspoof, tmp_path / "ps")


def test_competition_json_id_extension_is_checked(finvolution, tmp_path):
    out = import_finvolution(finvolution, tmp_path / "fin")
    settings = json.loads((out / "competition.json").read_text())
    (out / "competition.json").write_text(json.dumps({**settings, "id_extension": "wav"}))
    with pytest.raises(ManifestError, match=r"competition\.json: id_extension must be '' or like '\.wav', not 'wav'"):
        write_label_submission(tmp_path / "s.csv", ["x0", "x1", "x2"], [True, False, True], out)
    assert not (tmp_path / "s.csv").exists()
