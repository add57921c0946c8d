"""Small helpers every layer uses: atomic writes and deterministic per-item seeds."""
from __future__ import annotations

import errno
import fnmatch
import hashlib
import json
import os
import random
import signal
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

from antispoof.schema import ManifestError


UMASK = os.umask(0)
os.umask(UMASK)


# Fault injection for the reliability tests (tests/test_reliability.py): with
# ANTISPOOF_SIGNAL_WHILE_WRITING="<glob>[:<n>]", the n-th (default first) write of a file whose name
# matches sends SIGTERM to the process group after the temporary file is written and before it is
# renamed, as a scheduler stopping a job mid-write would. Unset, it costs one dictionary look-up.
FAULT_VARIABLE = "ANTISPOOF_SIGNAL_WHILE_WRITING"
_fault_count = [0]
FULL_DISK = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


class OutputWriteError(ManifestError):
    """An output could not be written (full disk, quota): the message names the file; the previous
    version, if any, is still whole."""


def _maybe_signal(path: Path) -> None:
    spec = os.environ.get(FAULT_VARIABLE)
    if not spec:
        return
    pattern, _, nth = spec.partition(":")
    if fnmatch.fnmatch(path.name, pattern):
        _fault_count[0] += 1
        if _fault_count[0] == int(nth or 1):
            os.killpg(os.getpgrp(), signal.SIGTERM)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it over `path` only if the block succeeds.

    A crash, an interrupt or a full disk half-way through a write therefore never leaves a
    truncated file that a resumed run would mistake for finished work; a full disk is one line
    naming the file (OutputWriteError).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix or ".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        _maybe_signal(path)
        os.chmod(tmp, 0o666 & ~UMASK)  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    except OSError as err:
        if err.errno in FULL_DISK:
            kept = "the previous version is kept" if path.exists() else "nothing was written"
            raise OutputWriteError(f"{path}: could not be written ({os.strerror(err.errno).lower()}); "
                                   f"{kept}") from None
        raise
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | os.PathLike, obj) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def write_csv_atomic(df, path: str | os.PathLike, **kwargs) -> None:
    """Write a pandas DataFrame as CSV atomically (no index unless asked)."""
    kwargs.setdefault("index", False)
    with atomic_path(path) as tmp:
        df.to_csv(tmp, **kwargs)


def stable_seed(*parts) -> int:
    """A 32-bit seed from any values, identical across processes and Python runs.

    Python's hash() is salted per process, so it cannot seed work that is spread over
    a process pool and must give the same result on every run.
    """
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "little")


def rng_for(*parts) -> np.random.Generator:
    return np.random.default_rng(stable_seed(*parts))


@contextmanager
def seeded_global_rngs(seed: int | None) -> Iterator[None]:
    """Seed Python's and NumPy's global generators for a block, then put them back as they were.

    Some libraries draw only from the globals (audiomentations' transforms, transformers' SpecAugment
    masks). Inside the block their draws follow our seed; outside it, nobody else's use of the
    globals is disturbed, so the same seed gives the same draws whichever process or device runs
    the block. None leaves the globals alone.
    """
    if seed is None:
        yield
        return
    python_state, numpy_state = random.getstate(), np.random.get_state()
    random.seed(seed)
    np.random.seed(seed)
    try:
        yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
