"""Interrupts end a command in one line: SIGTERM (a scheduler, `kill`) is turned into the same
KeyboardInterrupt as Ctrl-C, and the entry points print one line and exit with 128 + the signal.

Every output is written atomically (utils.atomic_path) and every long command resumes from its
finished work (benchmark families, embed shards, last.ckpt), so an interrupt loses only the piece
in flight. `received()` tells code that catches a library's own reaction to the interrupt
(Lightning turns it into sys.exit(1)) that a signal was the cause.
"""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator

_received: list[int] = []


def _raise_interrupt(signum, _frame):
    _received.append(signum)
    raise KeyboardInterrupt(signal.Signals(signum).name)


@contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """Inside the block SIGTERM raises KeyboardInterrupt in the main thread, as SIGINT does; the
    previous handler is put back after it (a command run in-process leaves its caller as it was)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def received() -> int | None:
    """The last signal turned into an interrupt (SIGINT when Ctrl-C raised it), or None."""
    return _received[-1] if _received else None


def note_interrupt() -> int:
    """Record a KeyboardInterrupt not raised by our handler (Ctrl-C) and return its signal."""
    if not _received:
        _received.append(int(signal.SIGINT))
    return _received[-1]


def message(command: str) -> str:
    name = signal.Signals(received() or signal.SIGINT).name
    return (f"{command}: interrupted by {name}; finished work is kept (outputs are written whole or not at "
            f"all), run the same command again to resume")
