"""The names every layer shares: class labels, the 10 ms label grid, and the one-line file error.

The bottom of the package (beside utils and config): it imports nothing of antispoof, so the
metrics, the data sets, the models and the scorer can all use it without reaching upward.

* Labels are ``bonafide`` / ``spoof``; every score is higher = more bona fide.
* Segment labels sit on a 10 ms grid (`SEGMENT_HOP_S`): 1 = bona fide, 0 = spoof.
* Every reader of a user file fails with a `ManifestError` of one line naming the file and,
  where there is one, the row (`fail`, `first_row`, `read_text_table`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

LABELS = ("bonafide", "spoof")
SEGMENT_HOP_S = 0.01


class ManifestError(ValueError):
    """A data set file is missing, malformed or inconsistent (message names file and row)."""


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
