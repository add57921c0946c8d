"""A quiet console: a real (tiny) training run prints our progress bars and lines, but neither
Lightning's advertising tips nor deprecation warnings raised inside third-party libraries, even
with every warning switched on (`-W default`). Our own warnings still show."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

from antispoof.console import ADVERT_PREFIX, quiet_third_party

REPO = Path(__file__).resolve().parents[1]
NOISE = ("💡", "litlogger", "litmodels", "DeprecationWarning", "FutureWarning", "deprecated")


def test_a_tiny_training_prints_progress_but_no_adverts_or_third_party_deprecations(tiny, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-W", "default", "-m", "antispoof.commands.cli", "train", "--model", "selcnn_mulbs",
               "--data", str(tiny), "--fold", "0", f"output_root={tmp_path}", "trainer.max_epochs=1",
               "trainer.accelerator=cpu", "data.folds=3", "data.batch_size=8", "data.crop_s=2.0",
               "data.num_workers=0", "trainer.limit_train_batches=2"]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert "Epoch 0" in output and "%|" in output, "the progress bar is kept"
    assert (tmp_path / tiny.name / "selcnn_mulbs" / "fold0" / "metrics.json").is_file()
    found = [line for line in output.splitlines() if any(word in line for word in NOISE)]
    assert not found, "third-party noise in the console:\n" + "\n".join(found[:10])


def test_filters_drop_adverts_and_library_deprecations_only(caplog):
    quiet_third_party()
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    with caplog.at_level(logging.INFO, logger="lightning.pytorch.utilities.rank_zero"):
        rank_zero.info(f"{ADVERT_PREFIX} For seamless cloud logging, try installing [litlogger]")
        rank_zero.info("GPU available: False, used: False")
    assert [r.getMessage() for r in caplog.records] == ["GPU available: False, used: False"]
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")  # every warning shows, as under `python -W default`
        quiet_third_party()  # ... except what the quiet console filters
        warnings.warn_explicit("old call", DeprecationWarning, "x.py", 1, module="lightning.pytorch.core")
        warnings.warn_explicit("old call", FutureWarning, "x.py", 1, module="transformers.models")
        warnings.warn_explicit("ours", DeprecationWarning, "x.py", 1, module="antispoof.train.fold")
        warnings.warn_explicit("ours too", UserWarning, "x.py", 1, module="lightning.pytorch.core")
    assert sorted(str(w.message) for w in seen) == ["ours", "ours too"]
