"""One writer per output: a lock file beside each fold folder, embed cache, data set build and
prediction folder, so two runs of the same command cannot interleave their writes.

The lock is `.<name>.lock` beside the output (not inside it, so a data set swapped in whole or a
cache rebuilt with --force keeps it). It holds the host, PID, the PID's start time and the command.
A second process refuses in one line naming the holder. A lock left by a process that is gone
(killed with SIGKILL, a crashed machine) is taken over with a note: on the same host the PID is
checked, and its start time too, so a PID reused by another program is not mistaken for the
holder. A lock from another host cannot be checked from here and is refused, saying which file
to remove once that run is known to be over. Under DDP only the first rank takes it (the other
ranks are copies of the same command, started by it).
"""
from __future__ import annotations

import json
import os
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from antispoof.schema import ManifestError


class LockError(ManifestError):
    """Another run holds the output (the message names it)."""


def lock_path(output: str | os.PathLike) -> Path:
    output = Path(output)
    return output.parent / f".{output.name}.lock"


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), None where it cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _alive(holder: dict) -> bool:
    pid = int(holder.get("pid", -1))
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    started = _start_time(pid)
    return started is None or holder.get("start_time") in (None, started)


def _read(path: Path) -> dict | None:
    try:
        holder = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) else None


def _secondary_rank() -> bool:
    return any(int(os.environ.get(name, "0") or 0) > 0 for name in ("LOCAL_RANK", "RANK"))


def _describe(holder: dict) -> str:
    return (f"`{holder.get('command', '?')}` (pid {holder.get('pid', '?')} on {holder.get('host', '?')}, "
            f"since {holder.get('since', '?')})")


def _try_create(path: Path, me: dict) -> bool:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(me, fh)
    return True


def acquire(output: str | os.PathLike, what: str) -> Path | None:
    """Take the lock of `output` or raise LockError naming its holder; the lock's path (None on
    a secondary DDP rank)."""
    if _secondary_rank():
        return None
    path = lock_path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    me = {"host": socket.gethostname(), "pid": os.getpid(), "start_time": _start_time(os.getpid()),
          "since": time.strftime("%Y-%m-%d %H:%M:%S"), "command": " ".join(["antispoof", *sys.argv[1:]])[:300]}
    for _ in range(3):
        if _try_create(path, me):
            return path
        holder = _read(path)
        if holder is None:  # being written this instant, or torn by a crash: look again shortly
            time.sleep(0.2)
            holder = _read(path)
            if holder is None:
                holder = {}
        if holder and holder.get("host") != me["host"]:
            raise LockError(f"{output}: {what} is being written by {_describe(holder)}; if that run is over, "
                            f"remove {path}")
        if holder and _alive(holder):
            raise LockError(f"{output}: {what} is being written by {_describe(holder)}; wait for it or stop it")
        stale = path.with_name(f"{path.name}.stale-{os.getpid()}")
        try:
            os.replace(path, stale)  # one taker wins; the others find the new lock next round
            stale.unlink()
        except FileNotFoundError:
            continue
        print(f"note: taking over the lock of {output} from {_describe(holder) if holder else 'a torn lock file'}, "
              f"which is no longer running", file=sys.stderr)
    raise LockError(f"{output}: could not take the lock {path} (other runs keep taking it)")


def release(path: Path | None) -> None:
    """Remove our lock (only if it is still ours)."""
    if path is None:
        return
    holder = _read(path)
    if holder and holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
        path.unlink(missing_ok=True)


@contextmanager
def output_lock(output: str | os.PathLike, what: str) -> Iterator[None]:
    """`with output_lock(folder, "fold 0 of selcnn_segbw"):` the block is the only writer."""
    path = acquire(output, what)
    try:
        yield
    finally:
        release(path)
