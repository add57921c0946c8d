"""One writer per output (antispoof.locks): a second run of the same fold, embed cache, data set
build or prediction folder refuses in one line naming the first; a lock left by a process that is
gone is taken over with a note; one from another host is refused with the file to remove."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from antispoof import locks
from antispoof.commands.predict import predict
from antispoof.config import load_config
from antispoof.inference.states import embed_dataset
from antispoof.locks import LockError, lock_path, output_lock
from antispoof.spoofbench.benchmark import build_benchmark
from conftest import REPO, TINY, run_command

HOLD = ("import sys\nfrom antispoof.locks import output_lock\nwith output_lock(sys.argv[1], 'a test'):\n"
        "    print('held', flush=True)\n    sys.stdin.read()\n")


@pytest.fixture
def holder(tmp_path):
    """A real second process holding the lock of an output until the test ends."""
    procs = []

    def hold(output):
        env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
        proc = subprocess.Popen([sys.executable, "-c", HOLD, str(output)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True, env=env)
        assert proc.stdout.readline().strip() == "held"
        procs.append(proc)
        return proc

    yield hold
    for proc in procs:
        proc.communicate("", timeout=30)


def test_a_second_train_of_the_same_fold_refuses_while_the_first_runs(tiny, tmp_path):
    args = ["train", "--model", "selcnn_mulbs", "--data", str(tiny), "--fold", "0", f"output_root={tmp_path}",
            "trainer.max_epochs=1", "data.folds=3", "data.num_workers=0", "data.batch_size=8", "data.crop_s=2.0",
            "trainer.progress_every=0", "trainer.limit_train_batches=2"]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen([sys.executable, "-m", "antispoof.commands.cli", *args], cwd=REPO, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    fold = tmp_path / tiny.name / "selcnn_mulbs" / "fold0"
    deadline = time.monotonic() + 120
    while not lock_path(fold).exists():
        assert first.poll() is None and time.monotonic() < deadline, "the first run never took its lock"
        time.sleep(0.02)
    os.kill(first.pid, signal.SIGSTOP)  # the first run holds its fold for as long as the second one tries
    try:
        second = run_command(args, REPO)
    finally:
        os.kill(first.pid, signal.SIGCONT)
        first.terminate()  # the first run's end is the interrupt tests' subject: stop it here
    first.communicate(timeout=600)
    assert second.returncode == 2 and second.stderr.count("\n") == 1, second.stderr
    assert second.stderr.startswith(f"antispoof train: error: {fold}: fold 0 of selcnn_mulbs is being written by "
                                    f"`antispoof train --model selcnn_mulbs") and f"(pid {first.pid} on" in second.stderr
    assert not (fold / "logs").exists() or [p.name for p in (fold / "logs").iterdir()] == ["run0"], \
        "the second run wrote nothing"
    assert not lock_path(fold).exists(), "the first run let its lock go when it stopped"


def test_embed_cache_data_build_and_prediction_folder_refuse_a_second_writer(tiny, trained_mulbs, tmp_path, holder):
    cache, build, out = tmp_path / "cache", tmp_path / "spoofbench-tiny", tmp_path / "pred"
    for output in (cache, build, out):
        proc = holder(output)
        held_by = f"(pid {proc.pid} on {socket.gethostname()}"
        with pytest.raises(LockError, match="is being written by") as caught:
            if output == cache:
                embed_dataset(tiny, "whisper-tiny.en", "0", cache)
            elif output == build:
                build_benchmark(load_config("configs/data/spoofbench_mini.yaml", [*TINY, f"out_dir={build}"]))
            else:
                predict(str(tiny / "audio"), experiment=str(trained_mulbs), out=out, progress=False)
        assert held_by in str(caught.value) and "\n" not in str(caught.value)
    assert not any(p.exists() for p in (cache / "meta.json", build / "train.csv", out / "scores.csv"))


def test_a_lock_of_a_process_that_is_gone_is_taken_over_with_a_note(tmp_path, capsys):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(gone.stdout)
    lock_path(tmp_path / "out").write_text(json.dumps({"host": socket.gethostname(), "pid": pid, "since": "then",
                                                       "command": "antispoof embed --data mini"}))
    with output_lock(tmp_path / "out", "the cache"):
        mine = json.loads(lock_path(tmp_path / "out").read_text())
        assert mine["pid"] == os.getpid()
    assert f"taking over the lock of {tmp_path / 'out'} from `antispoof embed --data mini` (pid {pid}" in \
        capsys.readouterr().err
    assert not lock_path(tmp_path / "out").exists(), "released after the block"


def test_a_reused_pid_is_not_mistaken_for_the_holder(tmp_path, capsys):
    """Our own PID with another start time: the process that wrote the lock is gone."""
    lock_path(tmp_path / "out").write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                                                       "start_time": "1", "command": "old"}))
    path = locks.acquire(tmp_path / "out", "x")
    assert "taking over" in capsys.readouterr().err
    locks.release(path)


def test_a_lock_of_another_host_is_refused_with_the_file_to_remove(tmp_path):
    lock_path(tmp_path / "out").write_text(json.dumps({"host": "elsewhere", "pid": 1, "command": "antispoof train"}))
    with pytest.raises(LockError, match=r"pid 1 on elsewhere.*if that run is over, remove .*\.out\.lock"):
        locks.acquire(tmp_path / "out", "fold 0")


def test_ranks_started_by_the_first_one_do_not_lock(tmp_path, monkeypatch, holder):
    holder(tmp_path / "fold0")
    monkeypatch.setenv("LOCAL_RANK", "1")
    with output_lock(tmp_path / "fold0", "fold 0"):
        pass  # a DDP rank > 0 runs inside the run that holds the lock
