"""Scale-out checked without a GPU: `antispoof train` with 2 processes under DDP on the CPU (gloo).

This is what backs docs/training.md's multi-GPU line (`trainer.devices=N trainer.strategy=ddp`): the
ranks share the training batches, every validation and test clip is scored exactly once, the
metrics are computed on all of them, one process writes the fold folder, and a resumed run
continues from last.ckpt.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from antispoof.metrics.detection import compute_eer

REPO = Path(__file__).resolve().parents[1]


def _train(tiny, root: Path, epochs: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "antispoof.commands.cli", "train", "--model", "selcnn_mulbs", "--data", str(tiny),
               "--fold", "0", f"output_root={root}", f"trainer.max_epochs={epochs}", "trainer.accelerator=cpu",
               "trainer.devices=2", "trainer.strategy=ddp", "data.folds=3", "data.batch_size=4",
               "data.crop_s=2.0", "data.num_workers=0", "trainer.progress_every=0", "trainer.patience=5"]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.mark.skipif(sys.platform != "linux", reason="gloo DDP on the CPU is exercised on Linux")
def test_two_process_ddp_scores_every_clip_once_and_resumes(tiny, tmp_path):
    first = _train(tiny, tmp_path, epochs=1)
    assert "distributed_backend=gloo" in first.stderr + first.stdout and "All distributed processes registered" \
        in first.stderr + first.stdout
    folds = pd.read_csv(tmp_path / tiny.name / "folds.csv")
    fold = tmp_path / tiny.name / "selcnn_mulbs" / "fold0"
    valid_ids = set(folds.utt_id[folds.fold == 0])
    oof, test = pd.read_parquet(fold / "oof.parquet"), pd.read_parquet(fold / "test.parquet")
    assert oof.utt_id.is_unique and set(oof.utt_id) == valid_ids, "every validation clip exactly once"
    assert test.utt_id.is_unique and set(test.utt_id) == set(pd.read_csv(tiny / "test.csv").utt_id)
    metrics = json.loads((fold / "metrics.json").read_text())
    bona = (oof.label == "bonafide").to_numpy()
    assert metrics["oof"]["eer"] == pytest.approx(compute_eer(oof.score[bona], oof.score[~bona])[0])
    # one writer: a single log folder, and the validation loop saw every clip once across both ranks
    assert [p.name for p in (fold / "logs").iterdir()] == ["run0"]
    log = pd.read_csv(fold / "logs" / "run0" / "metrics.csv")
    assert log.val_clips.dropna().tolist() == [float(len(valid_ids))]
    assert metrics["epochs"] == 1 and np.isfinite(metrics["oof"]["eer"])

    (fold / "metrics.json").unlink()  # a run that stopped after its first epoch
    _train(tiny, tmp_path, epochs=2)
    metrics = json.loads((fold / "metrics.json").read_text())
    assert metrics["epochs"] == 2
    resumed = pd.read_csv(fold / "logs" / "run1" / "metrics.csv").dropna(subset=["val_loss"])
    assert sorted(resumed.epoch.unique()) == [1], "the resumed run trains only the second epoch"
    assert sorted(p.name for p in (fold / "logs").iterdir()) == ["run0", "run1"]
