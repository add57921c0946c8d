"""The names every layer shares: class labels, the 10 ms label grid, and the one-line file error.

The bottom of the package (beside utils and config): it imports nothing of antispoof, so the
metrics, the data sets, the models and the scorer can all use it without reaching upward.

* Labels are ``bonafide`` / ``spoof``; every score is higher = more bona fide.
* Segment labels sit on a 10 ms grid (`SEGMENT_HOP_S`): 1 = bona fide, 0 = spoof, and
  `UNKNOWN` (-1) where the truth is hidden or a frame is padding. A coarser resolution
  min-pools them (`pool_labels`): any spoofed frame makes the window spoofed.
* Every reader of a user file fails with a `ManifestError` of one line naming the file and,
  where there is one, the row (`fail`, `first_row`, `read_text_table`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

LABELS = ("bonafide", "spoof")
SEGMENT_HOP_S = 0.01
UNKNOWN = -1  # label / segment value when the truth is hidden (test split) or the frame is padding
_NO_FRAME = 2  # above every label: what a window without a known frame takes its minimum over


# every character str.splitlines breaks at, written as its escape in a message
_LINE_BREAKS = str.maketrans({c: repr(c)[1:-1] for c in "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"})


class ManifestError(ValueError):
    """A data set file is missing, malformed or inconsistent (message names file and row).

    The message is kept to one line whatever it quotes: a value read from a bad file (a label
    holding a vertical tab, a header holding U+2028) is shown escaped, so the error never
    spills over lines or rewrites the terminal line (a carriage return) that names the file."""

    def __init__(self, message="", *args):
        super().__init__(str(message).translate(_LINE_BREAKS), *args)


def fail(path, problem: str, row: int | None = None):
    """Raise the one-line error every reader of user files gives: `<file> [row N]: <problem>`."""
    where = f"{path}" if row is None else f"{path} row {row}"
    raise ManifestError(f"{where}: {problem}")


def first_row(mask) -> int:
    """1-based data row (header excluded) of the first True in `mask`: the row `fail` names."""
    return int(np.flatnonzero(np.asarray(mask, dtype=bool))[0]) + 1


def read_text_table(path: str | Path, sep: str = ",", **read_csv) -> pd.DataFrame:
    """A CSV (or, with sep="\\t", a TSV) as pandas reads it with `read_csv`'s options; a missing or
    unparsable file fails with one line naming it."""
    path = Path(path)
    if not path.is_file():
        fail(path, "file not found")
    try:
        return pd.read_csv(path, sep=sep, **read_csv)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        fail(path, f"malformed {'TSV' if sep == chr(9) else 'CSV'} ({str(err).splitlines()[0]})")


def require_columns(path, df: pd.DataFrame, required) -> None:
    """Fail naming the required columns `df` lacks, and the ones it has."""
    missing = [c for c in required if c not in df.columns]
    if missing:
        fail(path, f"missing column(s) {', '.join(missing)}; found {', '.join(map(str, df.columns))}")


def pool_labels(labels, factor: int, n_windows: int | None = None):
    """10 ms labels [..., F] -> labels of windows of `factor` frames [..., n_windows]: the 10 ms
    label pooling of the whole project, for NumPy arrays (metrics) and torch tensors (the models'
    segment targets, on the batch's device) alike.

    A window takes the minimum of its known frames (1 bona fide, 0 spoof, or a bona fide
    probability after mixup), so any spoofed frame makes it spoofed; frames below 0 (`UNKNOWN`,
    padding) are ignored and a window without a known frame is `UNKNOWN`. n_windows defaults to
    ceil(F / factor), so a partial last window counts; frames past n_windows * factor are
    dropped and missing ones count as unknown.
    """
    if isinstance(labels, np.ndarray):
        xp = np
        pad = lambda x, n: np.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, n)], constant_values=UNKNOWN)  # noqa: E731
    else:  # a torch tensor: only then is torch imported, so the CPU-only layers never need it
        import torch
        from torch.nn import functional as F

        xp = torch
        pad = lambda x, n: F.pad(x, (0, n), value=UNKNOWN)  # noqa: E731
    size = labels.shape[-1]
    n = -(-size // factor) if n_windows is None else int(n_windows)
    width = n * factor
    labels = pad(labels, width - size) if width > size else labels[..., :width]
    windows = labels.reshape(*labels.shape[:-1], n, factor)
    lowest = xp.amin(xp.where(windows < 0, _NO_FRAME, windows), -1)
    return xp.where(lowest == _NO_FRAME, UNKNOWN, lowest)
