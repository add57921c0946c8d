"""Bad input and faults: every row of issue 19's table is one line naming the file and the problem.

Each test feeds one kind of bad input to the command a user would run (through `antispoof`'s own
entry point, so the one-line contract is what is checked) on a copy of the tiny benchmark.
"""
from __future__ import annotations

import shutil
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from antispoof.commands.cli import main
from antispoof.config import ConfigError, load_config
from antispoof.data.audio import AudioError
from antispoof.data.clip_check import ClipLimits, check_clip, check_clips
from antispoof.importers import import_competition_csv
from antispoof.runs import fold_dir
from antispoof.schema import ManifestError
from antispoof.models.checkpoints import CheckpointError
from antispoof.train.fold import experiment_config, train_fold

SR = 16000
FAST = ["trainer.max_epochs=1", "data.folds=3", "data.num_workers=0", "data.batch_size=8", "data.crop_s=2.0",
        "trainer.progress_every=0"]


def tone(seconds: float = 1.0, sr: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def run(capsys, *argv) -> tuple[int, str]:
    """`antispoof ARGV`: its exit code and its stderr, which must be a single line on failure."""
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip()
    if code:
        assert len(err.splitlines()) == 1, err
    return code, err


@pytest.fixture
def dataset(tiny, tmp_path):
    """A private copy of the tiny benchmark (its audio paths are relative), free to break."""
    return Path(shutil.copytree(tiny, tmp_path / "ds"))


def _clip(dataset: Path, split: str, row: int = 0) -> tuple[str, Path]:
    table = pd.read_csv(dataset / f"{split}.csv")
    return table.utt_id[row], dataset / table.path[row]


BAD_AUDIO = {  # what a clip is replaced with -> words the one-line message must hold
    "corrupt": (lambda p: p.write_bytes(b"RIFF\0\0not audio at all" * 40), "not a readable audio file"),
    "empty": (lambda p: p.write_bytes(b""), "empty file (0 bytes)"),
    "nan": (lambda p: sf.write(p, np.where(np.arange(SR) == 8000, np.nan, tone()), SR, subtype="FLOAT",
                               format="WAV"), "NaN or infinite samples (first at 0.50 s)"),
    "one sample": (lambda p: sf.write(p, tone()[:1], SR, format="FLAC"), "under the 0.1 s minimum"),
    "silent": (lambda p: sf.write(p, np.zeros(SR, np.float32), SR, format="FLAC"), "all silent (digital silence"),
}


# ---- the audio check --------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", BAD_AUDIO)
def test_unusable_clips_are_one_line_naming_the_file(tmp_path, kind):
    path = tmp_path / "clip.wav"
    BAD_AUDIO[kind][0](path)
    with pytest.raises(AudioError) as err:
        check_clip(path)
    assert str(err.value).startswith(f"{path}: ") and BAD_AUDIO[kind][1] in str(err.value)


def test_a_usable_clip_gives_its_duration_and_the_check_is_cached(tmp_path):
    sf.write(tmp_path / "a.flac", tone(1.5), SR)
    sf.write(tmp_path / "b.wav", np.stack([tone(2.0, 8000)] * 2, axis=1), 8000)  # stereo, 8 kHz
    cache = tmp_path / "clip_check.csv"
    first = check_clips([tmp_path / "a.flac", tmp_path / "b.wav"], cache=cache)
    assert first.duration.tolist() == [1.5, 2.0] and (first.problem == "").all()
    sf.write(tmp_path / "a.flac", np.zeros(SR, np.float32), SR)  # changed on disk: checked again
    again = check_clips([tmp_path / "a.flac", tmp_path / "b.wav"], cache=cache)
    assert "all silent" in again.problem[0] and again.problem[1] == ""


def test_a_long_recording_is_checked_in_bounded_memory(tmp_path):
    path, sr = tmp_path / "long.wav", 8000
    with sf.SoundFile(path, "w", sr, 1, subtype="PCM_16") as fh:  # 40 minutes: 77 MB as float32
        for _ in range(40):
            fh.write(tone(60.0, sr))
    tracemalloc.start()
    assert check_clip(path, ClipLimits(max_seconds=3600)) == 2400.0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 16 * 2**20, f"{peak / 2**20:.0f} MiB for one clip"
    with pytest.raises(AudioError, match="longer than the 600 s maximum"):
        check_clip(path)


@pytest.mark.parametrize("kind", ["corrupt", "empty", "nan"])
def test_probe_and_check_name_the_bad_clip(dataset, capsys, kind):
    utt_id, path = _clip(dataset, "train", 3)
    BAD_AUDIO[kind][0](path)
    code, err = run(capsys, "probe", "--data", dataset)
    assert code == 2 and str(path) in err and BAD_AUDIO[kind][1] in err
    with pytest.raises(SystemExit):
        main(["check", "--data", str(dataset)])
    out = capsys.readouterr().out
    assert f"train {utt_id}: {path}" in out and "1 clips usable" not in out


def test_train_refuses_a_bad_clip_or_skips_and_lists_it(dataset, tmp_path, capsys):
    utt_id, path = _clip(dataset, "train", 2)
    BAD_AUDIO["corrupt"][0](path)
    common = ["--model", "selcnn_mulbs", "--data", dataset, "--fold", "0", *FAST, f"output_root={tmp_path / 'runs'}"]
    code, err = run(capsys, "train", *common)
    assert code == 2 and str(path) in err and "bad_train_clips=skip" in err
    cfg = experiment_config("selcnn_mulbs", str(dataset), [*FAST, f"output_root={tmp_path / 'runs'}",
                                                           "data.check.bad_train_clips=skip"])
    out = train_fold(cfg, 0)
    assert pd.read_csv(out / "skipped_clips.csv").utt_id.tolist() == [utt_id]
    assert utt_id not in set(pd.read_parquet(out / "oof.parquet").utt_id)


def test_a_bad_test_clip_is_never_skipped(dataset, tmp_path, capsys):
    _, path = _clip(dataset, "test", 1)
    BAD_AUDIO["nan"][0](path)
    code, err = run(capsys, "train", "--model", "selcnn_mulbs", "--data", dataset, *FAST,
                    f"output_root={tmp_path}", "data.check.bad_train_clips=skip")
    assert code == 2 and str(path) in err and "a test clip is never skipped" in err


def test_import_csv_names_the_row_and_the_real_cause(tmp_path, capsys):
    audio = tmp_path / "audio"
    audio.mkdir()
    for i in range(4):
        sf.write(audio / f"a{i}.wav", tone(), SR)
    BAD_AUDIO["corrupt"][0](audio / "a2.wav")
    pd.DataFrame({"speech_name": [f"a{i}.wav" for i in range(4)], "label": [0, 1, 0, 1]}).to_csv(
        tmp_path / "train.csv", index=False)
    code, err = run(capsys, "import", "csv", "--csv", tmp_path / "train.csv", "--audio-dir", audio,
                    "--out", tmp_path / "ds")
    assert code == 2 and "train.csv row 3" in err and "a2.wav: not a readable audio file" in err
    assert "does not exist" not in err and not (tmp_path / "ds").exists()
    BAD_AUDIO["nan"][0](audio / "a2.wav")
    code, err = run(capsys, "import", "csv", "--csv", tmp_path / "train.csv", "--audio-dir", audio,
                    "--out", tmp_path / "ds")
    assert code == 2 and "row 3" in err and "NaN or infinite samples" in err


# ---- paths, overrides, rows ------------------------------------------------------------------------

def test_a_manifest_path_may_not_leave_the_data_set(dataset, capsys):
    table = pd.read_csv(dataset / "train.csv")
    table.loc[4, "path"] = "../../../../../../../../etc/passwd"
    table.to_csv(dataset / "train.csv", index=False)
    for command in (["probe", "--data", dataset], ["folds", "--data", dataset]):
        code, err = run(capsys, *command)
        assert code == 2 and "train.csv row 5" in err and "leads outside the data set folder" in err


def test_a_symlinked_data_set_and_symlinked_audio_inside_it_are_fine(dataset, tmp_path):
    link = tmp_path / "linked"
    link.symlink_to(dataset)
    from antispoof.data.manifest import load_split

    assert load_split(link, "train")["audio"].map(lambda p: Path(p).is_file()).all()


@pytest.mark.parametrize("override, key", [("trainer.max_epochs=abc", "trainer.max_epochs must be an integer"),
                                           ("data.batch_size=abc", "data.batch_size must be an integer"),
                                           ("trainer.max_epochs=1.5", "trainer.max_epochs must be an integer"),
                                           ("trainer.deterministic=[1]", None),
                                           ("data.crop_s=abc", "data.crop_s"),
                                           ("optim.lr=fast", "optim.lr must be a number")])
def test_overrides_are_checked_against_the_default_type_before_any_work(tmp_path, capsys, override, key):
    code, err = run(capsys, "train", "--model", "selcnn_mulbs", "--data", tmp_path / "nowhere",
                    f"output_root={tmp_path}", override)
    assert code == 2 and not any(tmp_path.iterdir()), "nothing ran, nothing was written"
    if key:
        assert key in err


def test_typed_overrides_still_take_what_the_key_means():
    cfg = load_config("model/whisper_base", ["data.crop_s=7.5", "trainer.devices=2", "optim.lr=1",
                                              "augment=finvolution", "data.crop_s=null"])
    assert cfg.trainer.devices == 2 and cfg.optim.lr == 1 and cfg.data.crop_s is None
    with pytest.raises(ConfigError, match="vote.trials must be an integer"):
        load_config("ensemble/default", ["vote.trials=abc"])
    with pytest.raises(ConfigError, match="max_sources must be an integer|unknown config key"):
        load_config("data/spoofbench_mini", ["max_sources=abc"])
    with pytest.raises(ConfigError, match=r"cannot read the override 'submission.name=\{kind\}_x'.*quote"):
        load_config("ensemble/default", ["submission.name={kind}_x"])
    assert load_config("ensemble/default", ['submission.name="{kind}_x"']).submission.name == "{kind}_x"


def test_a_row_with_too_few_fields_is_named(dataset, capsys):
    lines = (dataset / "train.csv").read_text().splitlines()
    lines[6] = ",".join(lines[6].split(",")[:2])
    (dataset / "train.csv").write_text("\n".join(lines) + "\n")
    code, err = run(capsys, "folds", "--data", dataset, "--no-audio-check")
    assert code == 2 and "train.csv row 6: 2 field(s), the header has" in err and "nan" not in err


# ---- checkpoints --------------------------------------------------------------------------------

class Boom:
    """A pickle that would write a file if it were ever unpickled with code execution."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (Path.touch, (Path(self.target),))


def _fold(dataset, tmp_path, model="selcnn_mulbs"):
    cfg = experiment_config(model, str(dataset), [*FAST, f"output_root={tmp_path}"])
    return cfg, fold_dir(cfg, 0)


@pytest.mark.parametrize("content", ["truncated", "foreign", "pickled code"])
def test_a_bad_last_checkpoint_is_one_line_with_the_fix(dataset, tmp_path, capsys, content):
    cfg, out = _fold(dataset, tmp_path)
    last = out / "checkpoints" / "last.ckpt"
    last.parent.mkdir(parents=True)
    if content == "truncated":
        torch.save({"state_dict": {"model.w": torch.zeros(1000)}, "epoch": 0}, last)
        last.write_bytes(last.read_bytes()[:600])
    elif content == "foreign":
        torch.save({"state_dict": {"model.encoder.weight": torch.zeros(3, 3)}}, last)
    else:
        torch.save({"state_dict": {}, "evil": Boom(tmp_path / "pwned")}, last)
    code, err = run(capsys, "train", "--model", "selcnn_mulbs", "--data", dataset, *FAST, f"output_root={tmp_path}")
    assert code == 2 and str(last) in err and "--force" in err
    assert not (tmp_path / "pwned").exists(), "weights_only: no pickled code runs"
    assert ("made by another model" in err) == (content == "foreign")
    with pytest.raises(CheckpointError):
        train_fold(cfg, 0)


def test_a_truncated_warm_up_checkpoint_names_the_model_to_retrain(dataset, tmp_path, capsys):
    base = fold_dir(experiment_config("selcnn_segment", str(dataset), [*FAST, f"output_root={tmp_path}"]), 0)
    (base / "checkpoints").mkdir(parents=True)
    (base / "metrics.json").write_text("{}")
    (base / "checkpoints" / "best.ckpt").write_bytes(b"PK\x03\x04 cut off")
    code, err = run(capsys, "train", "--model", "selcnn_segbw", "--data", dataset, *FAST, f"output_root={tmp_path}")
    assert code == 2 and "selcnn_segment/fold0/checkpoints/best.ckpt" in err
    assert "antispoof train --model selcnn_segment --fold 0 --force" in err


# ---- nothing overwritten -------------------------------------------------------------------------

def _competition(tmp_path, name: str, n: int, with_test: bool):
    audio = tmp_path / f"{name}_audio"
    audio.mkdir()
    for i in range(n):
        sf.write(audio / f"{name}{i}.wav", tone(1.0 + i / 10), SR)
    pd.DataFrame({"speech_name": [f"{name}{i}.wav" for i in range(n)], "label": [i % 2 for i in range(n)]}).to_csv(
        tmp_path / f"{name}.csv", index=False)
    test = None
    if with_test:
        test = tmp_path / f"{name}_test"
        test.mkdir()
        sf.write(test / "t0.wav", tone(), SR)
    return tmp_path / f"{name}.csv", audio, test


def test_import_into_an_existing_data_set_needs_force_and_then_replaces_it_whole(tmp_path, capsys):
    out = tmp_path / "ds"
    csv, audio, test = _competition(tmp_path, "old", 4, with_test=True)
    import_competition_csv(csv, audio, out, test_dir=test)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    csv2, audio2, _ = _competition(tmp_path, "new", 6, with_test=False)
    code, err = run(capsys, "import", "csv", "--csv", csv2, "--audio-dir", audio2, "--out", out)
    assert code == 2 and "a data set is already there" in err and "--force" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before, "a refused import changes nothing"
    assert main(["import", "csv", "--csv", str(csv2), "--audio-dir", str(audio2), "--out", str(out), "--force"]) == 0
    assert len(pd.read_csv(out / "train.csv")) == 6
    assert not (out / "test.csv").exists(), "no file of the old data set is left beside the new one"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == [], "staging removed"


def test_a_failed_forced_import_leaves_the_old_data_set(tmp_path):
    out = tmp_path / "ds"
    csv, audio, _ = _competition(tmp_path, "old", 4, with_test=False)
    import_competition_csv(csv, audio, out)
    BAD_AUDIO["corrupt"][0](audio / "old1.wav")
    with pytest.raises(ManifestError, match="not a readable audio file"):
        import_competition_csv(csv, audio, out, force=True)
    assert len(pd.read_csv(out / "train.csv")) == 4


def test_data_refuses_to_build_over_another_data_set(dataset, tiny_cfg):
    from omegaconf import OmegaConf

    from antispoof.spoofbench.benchmark import _build_dir

    same = OmegaConf.merge(tiny_cfg, {"out_dir": str(dataset)})
    assert _build_dir(dataset, same, force=False) == dataset, "the same build resumes in place"
    other = OmegaConf.merge(same, {"seed": 7})
    with pytest.raises(ManifestError, match="a data set is already there; `antispoof data --force`"):
        _build_dir(dataset, other, force=False)
    staging = _build_dir(dataset, other, force=True)
    assert staging.name == f".{dataset.name}.staging" and (dataset / "train.csv").exists()


# ---- prediction tables ----------------------------------------------------------------------------

@pytest.mark.parametrize("fault", ["nan", "duplicate"])
def test_vote_names_a_broken_prediction_table(tmp_path, monkeypatch, capsys, fault):
    from test_ensemble import make_project

    from antispoof.commands.ensemble import main as vote_main
    from antispoof.runs import write_table

    monkeypatch.chdir(tmp_path)
    make_project(tmp_path)
    path = tmp_path / "folds/synth/beta/fold1" / ("oof.parquet" if fault == "nan" else "test.parquet")
    table = pd.read_parquet(path)
    table = table.assign(score=table.score.where(table.index != 3)) if fault == "nan" else \
        pd.concat([table, table.iloc[[5]]], ignore_index=True)
    write_table(table, path)
    default = Path(__file__).resolve().parents[1] / "configs" / "ensemble" / "default.yaml"
    code = vote_main("vote", ["--config", str(default), "--dataset", str(tmp_path / "data/synth"),
                           f"output_root={tmp_path / 'folds'}", f"submission.dir={tmp_path / 'subs'}",
                           "progress=false", "vote.trials=20"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and str(path) in err
    assert ("row 4" in err and "not a finite number" in err) if fault == "nan" else "duplicate utt_id" in err
