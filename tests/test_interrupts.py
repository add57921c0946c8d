"""Interrupts lose nothing: each long command, sent SIGTERM by a real signal while it writes a file
(utils.FAULT_VARIABLE picks the moment: after the temporary file is written, before the rename),
ends with one line and exit status 143, leaves no partial file where a finished one was expected,
and the same command run again resumes from the finished work."""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import torch

from conftest import REPO, TINY, run_command
from test_ensemble import make_project

SIGTERM_EXIT = 128 + 15
FAST = ["data.folds=3", "data.num_workers=0", "data.batch_size=8", "data.crop_s=2.0", "trainer.progress_every=0",
        "trainer.patience=10", "trainer.limit_train_batches=2", "trainer.limit_val_batches=2"]
SMALL_BUILD = [*TINY, "max_utterances=8", "max_test_utterances=6", "probe.enabled=false", "corpora=[ktuberling]",
               "test_speakers=[ktuberling-fr]"]  # one corpus: a build in seconds
TEMPORARY = re.compile(r"^\..+\.[a-z0-9_]{8}(\.\w+)?$")  # utils.atomic_path's mkstemp names


def assert_interrupted(done, command: str) -> None:
    assert done.returncode == SIGTERM_EXIT, (done.returncode, done.stderr[-3000:])
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    said = [line for line in done.stderr.splitlines() if "interrupted" in line.lower()]
    assert said == [f"{command}: interrupted by SIGTERM; finished work is kept (outputs are written whole or not at "
                    "all), run the same command again to resume"], done.stderr[-3000:]


def leftovers(folder: Path) -> list[str]:
    """Temporary files of an interrupted write, and lock files of a run that is over."""
    return sorted(str(p) for p in Path(folder).rglob(".*") if TEMPORARY.match(p.name) or p.name.endswith(".lock"))


def test_train_interrupted_while_writing_a_checkpoint_resumes_from_the_last_whole_one(tiny, tmp_path):
    args = ["train", "--model", "selcnn_mulbs", "--data", str(tiny), "--fold", "0", f"output_root={tmp_path}",
            "trainer.max_epochs=3", *FAST]
    done = run_command(args, REPO, signal_at="last.ckpt:2")  # while writing the second epoch's last.ckpt
    assert_interrupted(done, "antispoof train")
    fold = tmp_path / tiny.name / "selcnn_mulbs" / "fold0"
    assert not leftovers(tmp_path) and not (fold / "metrics.json").exists()
    last = torch.load(fold / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["epoch"] == 0, "the last whole checkpoint is the first epoch's"

    again = run_command(args, REPO)
    assert again.returncode == 0, again.stderr[-3000:]
    log = pd.read_csv(fold / "logs" / "run1" / "metrics.csv").dropna(subset=["val_loss"])
    assert log["epoch"].tolist() == [1, 2], "the rerun trained only the epochs left"
    assert (fold / "metrics.json").is_file() and not leftovers(tmp_path)


def test_data_build_interrupted_while_recording_a_family_resumes_after_the_finished_ones(tmp_path):
    out = tmp_path / "spoofbench-small"
    args = ["data", "--preset", "mini", *SMALL_BUILD, f"out_dir={out}"]
    done = run_command(args, REPO, signal_at="0?????.json:3")  # the third family a worker records
    assert_interrupted(done, "antispoof data")
    assert not (out / "train.csv").exists()
    assert not [p for p in leftovers(tmp_path) if ".work" not in p and "/audio/" not in p], \
        "a killed render worker may leave a temporary file in the build's own folders, nowhere else"

    again = run_command(args, REPO)  # (test_benchmark checks that a resumed build equals a whole one)
    assert again.returncode == 0, again.stderr[-3000:]
    assert re.search(r"resuming: [1-9]\d* of \d+ families already rendered", again.stdout), again.stdout[-2000:]
    assert len(pd.read_csv(out / "train.csv")) > 0 and not leftovers(tmp_path)


def test_embed_interrupted_while_writing_a_shard_keeps_the_finished_ones_and_resumes(micro, tmp_path):
    args = ["embed", "--data", str(micro), "--model", "whisper-tiny.en", "--layers", "0,2", "--out",
            str(tmp_path / "cache"), "--batch-seconds", "15"]
    done = run_command(args, REPO, signal_at="shard_00001.npy")
    assert_interrupted(done, "antispoof embed")
    assert sorted(p.name for p in (tmp_path / "cache").glob("shard_*")) == ["shard_00000.csv", "shard_00000.npy"]
    assert not leftovers(tmp_path)

    again = run_command(args, REPO)
    assert again.returncode == 0, again.stderr[-3000:]
    index = pd.concat([pd.read_csv(p) for p in sorted((tmp_path / "cache").glob("shard_*.csv"))])
    expected = len(pd.read_csv(micro / "train.csv")) + len(pd.read_csv(micro / "test.csv"))
    assert index["utt_id"].is_unique and len(index) == expected


def test_predict_interrupted_between_chunks_resumes_after_the_finished_ones(tiny, trained_mulbs, tmp_path):
    audio = sorted(str(tiny / p) for p in pd.read_csv(tiny / "test.csv").path[:7])
    args = ["predict", "--experiment", str(trained_mulbs), "--audio", *audio, "--chunk-files", "3"]
    done = run_command([*args, "--out", str(tmp_path / "pred")], REPO, signal_at="chunk_00001.scores.csv")
    assert_interrupted(done, "antispoof predict")
    partial = tmp_path / "pred" / ".partial"
    assert sorted(p.name for p in partial.glob("chunk_*")) == [
        "chunk_00000.failed.csv", "chunk_00000.regions.csv", "chunk_00000.scores.csv",
        "chunk_00001.failed.csv", "chunk_00001.regions.csv"]  # the scores file, written last, commits a chunk
    assert not (tmp_path / "pred" / "scores.csv").exists() and not leftovers(tmp_path)

    again = run_command([*args, "--out", str(tmp_path / "pred")], REPO)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming: 3 of 7 files already scored" in again.stdout
    whole = run_command([*args, "--out", str(tmp_path / "whole")], REPO)
    assert whole.returncode == 0, whole.stderr[-3000:]
    resumed, expected = pd.read_csv(tmp_path / "pred" / "scores.csv"), pd.read_csv(tmp_path / "whole" / "scores.csv")
    pd.testing.assert_frame_equal(resumed, expected)
    assert not partial.exists() and not leftovers(tmp_path)


def test_vote_interrupted_while_writing_a_submission_writes_it_whole_on_the_rerun(tmp_path):
    make_project(tmp_path)
    args = ["--config", str(REPO / "configs" / "ensemble" / "default.yaml"), "--dataset", str(tmp_path / "data" / "synth"),
            f"output_root={tmp_path / 'folds'}", f"submission.dir={tmp_path / 'subs'}", "progress=false",
            "vote.trials=30", "report.figures=false"]
    done = run_command(args, tmp_path, signal_at="vote_synth_eer.csv", script="ensemble/vote.py")
    assert_interrupted(done, "ensemble/vote.py")
    assert not (tmp_path / "subs" / "vote_synth_eer.csv").exists() and not leftovers(tmp_path)
    again = run_command(args, tmp_path, script="ensemble/vote.py")
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(pd.read_csv(tmp_path / "subs" / "vote_synth_eer.csv")) > 0 and not leftovers(tmp_path)
