"""Shared fixtures: one tiny SpoofBench, built once per test session from the real sources."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from antispoof.config import load_config
from antispoof.utils import FAULT_VARIABLE
from antispoof.spoofbench.benchmark import build_benchmark

if os.environ.get("PYTEST_XDIST_WORKER"):  # `make test` runs two workers on two cores: one thread each
    import torch

    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")

TINY = ["max_utterances=20", "max_test_utterances=12", "probe.folds=3", "name=spoofbench-tiny",
        "per_source.tts=1.0", "per_source.vocoder=0.5", "per_source.partial=0.6", "concat.share=0.5",
        # shorter utterances than mini's keep the training tests fast
        "utterance.target_s=[2.0,4.0]", "utterance.max_s=5.0", "max_duration_s=6.0", "concat.max_total_s=8.0"]


@pytest.fixture(scope="session")
def tiny_cfg(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "spoofbench-tiny"
    return load_config("configs/data/spoofbench_mini.yaml", [*TINY, f"out_dir={out}",
                                                             f"render_cache={out.parent / 'render-cache'}"])


@pytest.fixture(scope="session")
def tiny(tiny_cfg):
    """Path of the built tiny benchmark (about 80 clips, both splits, every kind of clip)."""
    return build_benchmark(tiny_cfg, workers=2)


@pytest.fixture(scope="session")
def micro(tiny, tmp_path_factory):
    """A 16-clip data set over tiny's audio (absolute paths): what the embed tests encode, so each
    run of the encoder costs a few seconds."""
    import shutil

    import numpy as np
    import pandas as pd

    out = tmp_path_factory.mktemp("micro") / "spoofbench-micro"
    out.mkdir()
    ids = {}
    for split, n in (("train", 10), ("test", 6)):
        table = pd.read_csv(tiny / f"{split}.csv", dtype={"utt_id": str})
        table = table.iloc[np.linspace(0, len(table) - 1, n).astype(int)].copy()
        table["path"] = [str(tiny / p) for p in table["path"]]
        table.to_csv(out / f"{split}.csv", index=False)
        ids[split] = list(table["utt_id"])
    solution = pd.read_csv(tiny / "solution.csv", dtype={"utt_id": str})
    solution[solution["utt_id"].isin(ids["test"])].to_csv(out / "solution.csv", index=False)
    for name, keep in (("train_segments.npz", ids["train"]), ("solution_segments.npz", ids["test"])):
        with np.load(tiny / name) as labels:
            np.savez_compressed(out / name, **{k: labels[k] for k in keep})
    for name in ("competition.json",):
        if (tiny / name).is_file():
            shutil.copy(tiny / name, out / name)
    return out


@pytest.fixture(scope="session")
def trained_mulbs(tiny, tmp_path_factory):
    """Fold 0 of selcnn_mulbs on tiny, one epoch: an experiment to predict with."""
    from antispoof.train.fold import experiment_config, train_fold

    root = tmp_path_factory.mktemp("mulbs_runs")
    cfg = experiment_config("selcnn_mulbs", str(tiny), [f"output_root={root}", "trainer.max_epochs=1",
                                                        "data.folds=3", "data.num_workers=0", "data.batch_size=8",
                                                        "data.crop_s=2.0", "trainer.progress_every=0"])
    train_fold(cfg, 0)
    return root / tiny.name / "selcnn_mulbs"


REPO = Path(__file__).resolve().parents[1]


def run_command(args: list[str], cwd, signal_at: str | None = None, script: str | None = None,
                timeout: float = 600) -> subprocess.CompletedProcess:
    """`antispoof <args>` (or `python <script> <args>`) as a real child process in its own session,
    optionally told to send SIGTERM to itself while it writes a file matching `signal_at`
    (utils.FAULT_VARIABLE: `<glob>[:<n-th write>]`)."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    env.pop(FAULT_VARIABLE, None)
    if signal_at:
        env[FAULT_VARIABLE] = signal_at
    command = [sys.executable, str(REPO / script)] if script else [sys.executable, "-m", "antispoof.commands.cli"]
    return subprocess.run([*command, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                          start_new_session=True)
