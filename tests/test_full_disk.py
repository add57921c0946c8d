"""A full disk loses nothing: a write that fails with ENOSPC half-way (simulated at the writer each
output uses) is one line naming the file, leaves the previous version of that file whole and no
temporary file behind, for the embed cache, checkpoints, submissions and predictions."""
from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from antispoof.commands.cli import main as cli
from antispoof.commands.predict import predict
from antispoof.inference.states import embed_dataset
from antispoof.submit.writer import write_score_submission
from antispoof.utils import OutputWriteError


def disk_full(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def half_then_full(real, target: str):
    """A writer that writes half of what `real` would into a temporary file of `target`, then fails."""
    def write(self_or_obj, path, *args, **kwargs):
        name = Path(getattr(path, "name", path)).name
        if not name.startswith(f".{target}."):
            return real(self_or_obj, path, *args, **kwargs)
        real(self_or_obj, path, *args, **kwargs)
        Path(path).write_bytes(Path(path).read_bytes()[: Path(path).stat().st_size // 2])
        disk_full()
    return write


def no_temporary_files(folder: Path) -> bool:
    return not [p for p in Path(folder).rglob(".*") if p.is_file() and not p.name.endswith(".lock")]


def test_a_submission_that_cannot_be_written_keeps_the_previous_one(tiny, tmp_path, monkeypatch):
    ids = pd.read_csv(tiny / "test.csv")["utt_id"]
    path = tmp_path / "subs" / "vote_eer.csv"
    write_score_submission(path, ids, np.linspace(-1, 1, len(ids)), tiny)
    before = path.read_bytes()
    monkeypatch.setattr(pd.DataFrame, "to_csv", half_then_full(pd.DataFrame.to_csv, path.name))
    with pytest.raises(OutputWriteError) as caught:
        write_score_submission(path, ids, np.zeros(len(ids)), tiny)
    assert str(caught.value) == f"{path}: could not be written (no space left on device); the previous version is kept"
    assert path.read_bytes() == before and no_temporary_files(tmp_path)


def test_predictions_that_cannot_be_written_keep_the_previous_ones(tiny, trained_mulbs, tmp_path, monkeypatch):
    audio = [str(tiny / p) for p in pd.read_csv(tiny / "test.csv").path[:3]]
    predict(audio, experiment=str(trained_mulbs), out=tmp_path / "pred", progress=False)
    before = (tmp_path / "pred" / "scores.csv").read_bytes()
    monkeypatch.setattr(pd.DataFrame, "to_csv", half_then_full(pd.DataFrame.to_csv, "scores.csv"))
    with pytest.raises(OutputWriteError, match=r"pred/scores\.csv: could not be written \(no space left on device\); "
                                               "the previous version is kept"):
        predict(audio, experiment=str(trained_mulbs), out=tmp_path / "pred", threshold=0.0, progress=False)
    assert (tmp_path / "pred" / "scores.csv").read_bytes() == before
    assert not [p for p in (tmp_path / "pred").glob(".scores.csv.*")]
    monkeypatch.undo()  # space again: the rerun finishes from the chunks it had written
    done = predict(audio, experiment=str(trained_mulbs), out=tmp_path / "pred", threshold=0.0, progress=False)
    assert len(done["scores"]) == 3 and not (tmp_path / "pred" / ".partial").exists()


def test_an_embed_shard_that_cannot_be_written_keeps_the_finished_ones(micro, tmp_path, monkeypatch):
    real, calls = np.save, []

    def save(file, array, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            file.write(b"\x93NUMPY partial")
            disk_full()
        return real(file, array, *args, **kwargs)

    monkeypatch.setattr(np, "save", save)
    root = tmp_path / "cache"
    with pytest.raises(OutputWriteError, match=r"cache/shard_00001\.npy: could not be written \(no space left on "
                                               r"device\); nothing was written"):
        embed_dataset(micro, "whisper-tiny.en", "0", root, batch_seconds=15)
    assert sorted(p.name for p in root.glob("shard_*")) == ["shard_00000.csv", "shard_00000.npy"]
    assert no_temporary_files(tmp_path)
    monkeypatch.undo()
    embed_dataset(micro, "whisper-tiny.en", "0", root, batch_seconds=15)  # resumes after shard 0
    index = pd.concat([pd.read_csv(p) for p in sorted(root.glob("shard_*.csv"))])
    assert index["utt_id"].is_unique and len(index) == len(pd.read_csv(micro / "train.csv")) + len(
        pd.read_csv(micro / "test.csv"))


def test_a_checkpoint_that_cannot_be_written_keeps_the_previous_one(tiny, tmp_path, monkeypatch, capsys):
    import lightning.fabric.plugins.io.torch_io as torch_io

    args = ["train", "--model", "selcnn_mulbs", "--data", str(tiny), "--fold", "0", f"output_root={tmp_path}",
            "data.folds=3", "data.num_workers=0", "data.batch_size=8", "data.crop_s=2.0", "trainer.progress_every=0"]
    assert cli([*args, "trainer.max_epochs=1"]) == 0
    checkpoints = tmp_path / tiny.name / "selcnn_mulbs" / "fold0" / "checkpoints"
    (checkpoints.parent / "metrics.json").unlink()  # as if the run had stopped after its first epoch
    before = (checkpoints / "last.ckpt").read_bytes()
    capsys.readouterr()

    def half_written(checkpoint, path):
        Path(path).write_bytes(b"PK\x03\x04 a torn zip")
        disk_full()

    monkeypatch.setattr(torch_io, "_atomic_save", half_written)
    assert cli([*args, "trainer.max_epochs=2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"antispoof train: error: {checkpoints}/")
    assert "could not be written (no space left on device); the previous version is kept" in err
    assert (checkpoints / "last.ckpt").read_bytes() == before
    assert torch.load(checkpoints / "last.ckpt", map_location="cpu", weights_only=True)["epoch"] == 0
    assert no_temporary_files(checkpoints.parent)
