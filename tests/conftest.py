"""Shared fixtures: one tiny SpoofBench, built once per test session from the real sources."""
from __future__ import annotations

import pytest

from antispoof.config import load_config
from antispoof.spoofbench.benchmark import build_benchmark

TINY = ["max_utterances=20", "max_test_utterances=12", "probe.folds=3", "name=spoofbench-tiny",
        "per_source.tts=1.0", "per_source.vocoder=0.5", "per_source.partial=0.6", "concat.share=0.5",
        # shorter utterances than mini's keep the training tests fast
        "utterance.target_s=[2.0,4.0]", "utterance.max_s=5.0", "max_duration_s=6.0", "concat.max_total_s=8.0"]


@pytest.fixture(scope="session")
def tiny_cfg(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "spoofbench-tiny"
    return load_config("configs/data/spoofbench_mini.yaml", [*TINY, f"out_dir={out}"])


@pytest.fixture(scope="session")
def tiny(tiny_cfg):
    """Path of the built tiny benchmark (about 80 clips, both splits, every kind of clip)."""
    return build_benchmark(tiny_cfg, workers=2)
