"""Scale-out: `antispoof embed --shard I/N` and `antispoof predict --shard I/N`, run as two real
processes at once sharing one output folder, then merged, give exactly what one process gives."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd

from antispoof.features.state_cache import StateCache
from antispoof.inference.states import embed_dataset, merge_embed_parts
from conftest import REPO, run_command


def run_together(commands: list[list[str]]) -> None:
    """Start every command at once as its own process and wait for all of them."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "antispoof.commands.cli", *c], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in commands]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]


def test_two_embed_shards_merged_equal_one_process_bit_for_bit(micro, tmp_path):
    single, _ = embed_dataset(micro, "whisper-tiny.en", "0,2", tmp_path / "single", batch_seconds=15)
    shared = tmp_path / "shared"
    args = ["embed", "--data", str(micro), "--model", "whisper-tiny.en", "--layers", "0,2", "--out", str(shared),
            "--batch-seconds", "15"]
    run_together([[*args, "--shard", "0/2"], [*args, "--shard", "1/2"]])
    assert sorted(p.name for p in (shared / "parts").iterdir()) == ["0-of-2", "1-of-2"]
    merge_embed_parts(micro, shared)  # what `antispoof embed --merge` runs
    assert not (shared / "parts").exists()
    one, two = StateCache(single), StateCache(shared)
    assert sorted(one.index.index) == sorted(two.index.index)
    for key in one.index.index:
        np.testing.assert_array_equal(one.states(key), two.states(key))


def test_two_predict_shards_merged_equal_one_process(tiny, trained_mulbs, tmp_path):
    audio = sorted(str(tiny / p) for p in pd.read_csv(tiny / "test.csv").path[:9])
    args = ["predict", "--experiment", str(trained_mulbs), "--audio", *audio, "--chunk-files", "2"]
    whole = run_command([*args, "--out", str(tmp_path / "one")], REPO)  # the same environment as the shards
    assert whole.returncode == 0, whole.stderr[-2000:]
    shared = ["--out", str(tmp_path / "shared")]
    early = run_command([*args, *shared, "--merge", "2"], REPO)
    assert early.returncode == 2 and early.stderr.count("\n") == 1
    assert "shard 0/2 has 3 chunk(s) to go: run it with --shard 0/2" in early.stderr
    run_together([[*args, *shared, "--shard", "0/2"], [*args, *shared, "--shard", "1/2"]])
    merged = run_command([*args, *shared, "--merge", "2"], REPO)
    assert merged.returncode == 0, merged.stderr[-2000:]
    for name in ("scores.csv", "regions.csv", "failed.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "shared" / name), pd.read_csv(tmp_path / "one" / name))
    assert not (tmp_path / "shared" / ".partial").exists()
