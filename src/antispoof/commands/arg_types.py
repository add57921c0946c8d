"""argparse types of the CLI: values that parse or fail with one line saying what was expected."""
from __future__ import annotations

import argparse


def shard_arg(text: str) -> tuple[int, int]:
    """`I/N` -> (I, N), 0 <= I < N."""
    index, _, count = text.partition("/")
    try:
        shard = int(index), int(count)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected I/N, e.g. 0/4") from None
    if not 0 <= shard[0] < shard[1]:
        raise argparse.ArgumentTypeError(f"{text!r}: I runs from 0 to N - 1")
    return shard


def threshold_arg(text: str) -> float | str:
    """`--threshold`: an LLR, or 'competition' for the submission's own threshold."""
    if text == "competition":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected an LLR (a number) or 'competition'") from None


def count_arg(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number of shards, 1 or more")
    return int(text)


def probability_arg(text: str) -> float:
    """A probability strictly between 0 and 1 (a prior)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a probability between 0 and 1, e.g. 0.05")
    return value
