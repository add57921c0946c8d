"""Folds: grouped, stratified, deterministic, and refusing impossible requests."""
from __future__ import annotations

import json
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


# ---- leave-one-attack-out folds ------------------------------------------------------------

def write_attack_train(folder: Path, n_speakers: int = 24, seed: int = 0) -> Path:
    """Speakers each with bona fide clips and spoofs of six attacks (two neural), some of them
    concatenations that join two attacks."""
    rng = np.random.default_rng(seed)
    attacks = {"voc_a": "classical", "voc_b": "classical", "tts_c": "classical", "tts_d": "classical",
               "nn_e": "neural", "nn_f": "neural"}
    names = list(attacks)
    rows = []
    for s in range(n_speakers):
        for c in range(8):
            if c < 2:
                attack = "bonafide"
            elif c == 7:
                attack = "+".join(sorted(rng.choice(names, 2, replace=False)))
            else:
                attack = names[rng.integers(len(names))]
            generation = ("bonafide" if attack == "bonafide"
                          else "+".join(sorted({attacks[a] for a in attack.split("+")})))
            rows.append({"utt_id": f"u{s:03d}_{c}", "path": f"audio/u{s:03d}_{c}.wav", "duration": 2.0,
                         "label": "bonafide" if attack == "bonafide" else "spoof", "attack": attack,
                         "generation": generation, "speaker": f"spk{s:03d}", "group": f"spk{s:03d}"})
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(folder / "train.csv", index=False)
    return folder


def test_attack_folds_never_train_on_their_held_out_attacks(tmp_path):
    from antispoof.data.folds import make_attack_folds, training_mask

    out = make_attack_folds(write_attack_train(tmp_path / "ds"), k=3, seed=0, out=tmp_path / "f" / "folds.csv")
    folds = pd.read_csv(out, dtype={"exclude": str})
    held = {int(f): names for f, names in json.loads(out.with_suffix(".json").read_text())["held_out"].items()}
    train = pd.read_csv(tmp_path / "ds" / "train.csv").set_index("utt_id").loc[folds.utt_id]
    assert sorted(a for names in held.values() for a in names) == ["nn_e", "nn_f", "tts_c", "tts_d", "voc_a", "voc_b"]
    assert all(held.values()), "every fold holds out at least one attack"
    assert not ({"nn_e", "nn_f"} <= set(held[0]) or {"nn_e", "nn_f"} <= set(held[1]) or {"nn_e", "nn_f"} <= set(held[2]))
    assert folds.groupby("group").fold.nunique().max() == 1, "speakers stay grouped"
    for f, names in held.items():
        part = train[training_mask(folds, f)]
        touched = part.attack.str.split("+").map(lambda a: bool(set(a) & set(names)))
        assert not touched.any(), f"fold {f} trains on a held-out attack"
        assert (folds.fold != f).sum() > len(part) > 0.5 * (folds.fold != f).sum()
        valid = train[(folds.fold == f).to_numpy()]
        unseen = valid.attack.str.split("+").map(lambda a: bool(set(a) & set(names))).to_numpy()
        assert unseen.any() and (folds.held_out[folds.fold == f].to_numpy() == unseen).all()
        assert (valid.label == "bonafide").any() and (valid.label[~unseen] == "spoof").any()


def test_attack_folds_cli_and_refusals(tmp_path, capsys, monkeypatch):
    data = write_attack_train(tmp_path / "ds")
    monkeypatch.chdir(tmp_path)
    cli_main(["folds", "--data", str(data), "--by", "attack", "--k", "3"])
    out = capsys.readouterr().out
    assert "fold 0 holds out:" in out and "output_root=folds_loao" in out
    assert (tmp_path / "folds_loao" / "ds" / "folds.csv").is_file()
    with pytest.raises(ManifestError, match="need at least 7 attacks"):
        from antispoof.data.folds import make_attack_folds

        make_attack_folds(data, k=7)


def test_default_folds_ignore_exclusions():
    from antispoof.data.folds import training_mask

    folds = pd.DataFrame({"fold": [0, 1, 1, 2]})
    assert training_mask(folds, 1).tolist() == [True, False, False, True]
    folds["exclude"] = ["1", "", "0", "0;1"]
    assert training_mask(folds, 1).tolist() == [False, False, False, False]
    assert training_mask(folds, 0).tolist() == [False, True, False, False]


def test_fold_data_trains_without_the_held_out_attacks(tiny, tmp_path):
    """The training part FoldData hands to a model really lacks the fold's held-out attacks, and
    its validation part (the OOF clips) still has every clip of the fold."""
    from antispoof.data.folds import make_attack_folds
    from antispoof.train.data import FoldData
    from antispoof.train.fold import experiment_config

    out = make_attack_folds(tiny, k=3, seed=0, out=tmp_path / tiny.name / "folds.csv")
    held = json.loads(out.with_suffix(".json").read_text())["held_out"]
    cfg = experiment_config("selcnn_mulbs", str(tiny), [f"output_root={tmp_path}", "data.folds=3"])
    folds = pd.read_csv(out)
    for fold, names in held.items():
        data = FoldData(cfg, int(fold))
        attacks = set(data.train.attack.str.split("+").explode())
        assert not attacks & set(names), (fold, names)
        in_fold = set(folds.utt_id[folds.fold == int(fold)])
        assert set(data.valid.utt_id) <= in_fold and len(data.valid) >= len(in_fold) - len(data.skipped)
        assert not set(data.train.utt_id) & in_fold


def test_a_fold_can_choose_its_checkpoint_on_the_attacks_it_never_saw(tiny, tmp_path):
    """trainer.select=held_out: val_eer_held_out (bona fide against the held-out attacks' OOF
    clips) is logged every epoch and picks best.ckpt; grouped folds refuse it in one line."""
    from antispoof.config import ConfigError
    from antispoof.data.folds import make_attack_folds
    from antispoof.train.data import FoldData
    from antispoof.train.fold import experiment_config, train_fold

    out = make_attack_folds(tiny, k=3, seed=0, out=tmp_path / tiny.name / "folds.csv")
    folds = pd.read_csv(out).set_index("utt_id")
    fast = ["trainer.max_epochs=2", "trainer.limit_train_batches=3", "data.folds=3", "data.num_workers=0",
            "data.batch_size=8", "data.crop_s=2.0", "trainer.progress_every=0", "trainer.select=held_out"]
    cfg = experiment_config("selcnn_mulbs", str(tiny), [*fast, f"output_root={tmp_path}"])
    data = FoldData(cfg, 0)
    expected = set(folds.index[(folds.fold == 0) & (folds.held_out == 1)]) & set(data.valid.utt_id)
    assert data.held_out == expected and data.held_out
    fold_out = train_fold(cfg, 0)
    logged = pd.concat(pd.read_csv(p) for p in (fold_out / "logs").rglob("metrics.csv"))
    per_epoch = logged.dropna(subset=["val_eer_held_out"])
    assert len(per_epoch) == 2 and per_epoch["val_eer_held_out"].between(0, 1).all()
    assert (fold_out / "checkpoints" / "best.ckpt").is_file()

    grouped = tmp_path / "grouped"
    cfg = experiment_config("selcnn_mulbs", str(tiny), [*fast, f"output_root={grouped}"])
    with pytest.raises(ConfigError, match="trainer.select=held_out needs leave-one-attack-out folds"):
        train_fold(cfg, 0)
