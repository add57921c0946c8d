"""Reading and validating a data set folder: its manifests and segment labels.

The layout itself (which files a data set has, their columns, competition.json) and its writers
are in `data/layout.py`. `path` is relative to the data set folder or absolute (importers point
at the original corpus instead of copying it). Metadata columns used across the project:
attack, language, speaker, group (recordings derived from one another share a group), source.

Every reader here fails with a one-line `ManifestError` naming the file and the row.
"""
from __future__ import annotations

import csv
import math
import os
import zipfile
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import pandas as pd

from antispoof.schema import LABELS, SEGMENT_HOP_S, ManifestError, fail, first_row, read_text_table, require_columns
from antispoof.utils import atomic_path

METADATA_COLUMNS = ("attack", "language", "speaker", "group", "source")

TRAIN_COLUMNS = ("utt_id", "path", "duration", "label")
TEST_COLUMNS = ("utt_id", "path", "duration")
SOLUTION_COLUMNS = ("utt_id", "label")
# Segment labels are allocated per 10 ms frame from the duration column (constant labels for clips
# without stored ones), so a duration of 2e8 s would ask for 20 GB: cap it at a day, far beyond any
# clip (data.check.max_seconds is 600 s by default), so a typo fails as a bad row instead.
MAX_DURATION_S = 86_400.0


def read_table(csv_path: str | Path, required: Iterable[str]) -> pd.DataFrame:
    """Read a CSV with string ids; refuse missing columns and unparsable files."""
    df = read_text_table(csv_path, dtype={"utt_id": str}, keep_default_na=False, na_values=[""])
    require_columns(csv_path, df, required)
    _check_field_counts(Path(csv_path), len(df.columns))
    return df


def _check_field_counts(csv_path: Path, n_columns: int) -> None:
    """pandas fills a short row with NaN, which surfaces later as "unknown label 'nan'": name the
    row and its field count instead. (A long row is already a parser error.)"""
    row = 0
    try:  # the csv module refuses what pandas took (a field over its 128 KiB limit): one line too
        with open(csv_path, newline="", encoding="utf-8") as fh:
            records = (fields for fields in csv.reader(fh) if fields)  # pandas skips blank lines too
            next(records, None)
            for row, fields in enumerate(records, start=1):
                if len(fields) < n_columns:
                    fail(csv_path, f"{len(fields)} field(s), the header has {n_columns}", row)
    except (csv.Error, UnicodeDecodeError) as err:
        fail(csv_path, f"malformed CSV ({err})", row + 1)


def _check_ids(csv_path, df):
    ids = df["utt_id"]
    empty = ids.isna() | (ids.astype(str).str.strip() == "")
    if empty.any():
        fail(csv_path, "empty utt_id", first_row(empty))
    dup = ids.duplicated()
    if dup.any():
        row = first_row(dup)
        fail(csv_path, f"duplicate utt_id '{ids.iloc[row - 1]}'", row)


def _check_labels(csv_path, df):
    bad = ~df["label"].isin(LABELS)
    if bad.any():
        row = first_row(bad)
        fail(csv_path, f"unknown label '{df['label'].iloc[row - 1]}' (expected bonafide or spoof)", row)


def _check_durations(csv_path, df):
    dur = pd.to_numeric(df["duration"], errors="coerce")
    bad = dur.isna() | ~np.isfinite(dur) | (dur <= 0) | (dur > MAX_DURATION_S)
    if bad.any():
        row = first_row(bad)
        fail(csv_path, f"bad duration '{df['duration'].iloc[row - 1]}' (expected seconds > 0, "
                       f"at most {MAX_DURATION_S:g})", row)
    df["duration"] = dur.astype(float)


def resolve_paths(df: pd.DataFrame, root: Path, csv_path: Path | None = None) -> pd.Series:
    """Absolute audio paths: relative entries are taken relative to the data set folder, and must
    stay inside it (`../../etc/passwd` is refused naming the row). The check is lexical, after
    resolving the symlinks of the data set folder itself, so a data set may be a symlink and may
    hold symlinked audio; an absolute entry is an importer's explicit pointer into the original
    corpus and is taken as written."""
    base = Path(os.path.realpath(root))
    resolved = []
    for row, entry in enumerate(df["path"].astype(str), start=1):
        if Path(entry).is_absolute():
            resolved.append(entry)
            continue
        target = os.path.normpath(base / entry)
        if os.path.commonpath([base, target]) != str(base):
            fail(csv_path or root, f"path '{entry}' leads outside the data set folder {base}", row)
        resolved.append(target)
    return pd.Series(resolved, index=df.index, dtype=object)


def _check_files(csv_path, df, root: Path):
    absolute = resolve_paths(df, root, csv_path)
    missing = ~absolute.map(lambda p: Path(p).is_file())
    if missing.any():
        row = first_row(missing)
        fail(csv_path, f"audio file not found: {absolute.iloc[row - 1]}", row)


def read_manifest(csv_path: str | Path, kind: str = "train", check_files: bool = True) -> pd.DataFrame:
    """Load and validate train.csv / test.csv / solution.csv.

    kind: "train" (audio + labels), "test" (audio, no labels), "solution" (labels only).
    The returned frame gets an extra column `audio` with the absolute path (not for solution).
    """
    required = {"train": TRAIN_COLUMNS, "test": TEST_COLUMNS, "solution": SOLUTION_COLUMNS}[kind]
    csv_path = Path(csv_path)
    df = read_table(csv_path, required)
    _check_ids(csv_path, df)
    if "label" in required:
        _check_labels(csv_path, df)
    if "duration" in required:
        _check_durations(csv_path, df)
    if "path" in required:
        empty = df["path"].isna()
        if empty.any():
            fail(csv_path, "empty path", first_row(empty))
        if check_files:
            _check_files(csv_path, df, csv_path.parent)
        df["audio"] = resolve_paths(df, csv_path.parent, csv_path)
    return df


def load_split(data_dir: str | Path, split: str, check_files: bool = True, solution: pd.DataFrame | None = None,
               test: pd.DataFrame | None = None) -> pd.DataFrame:
    """The train split, or the test split joined with its hidden labels when solution.csv exists
    (`solution`, `test`: those files as already read, so a caller holding them reads neither again)."""
    data_dir = Path(data_dir)
    if split == "train":
        return read_manifest(data_dir / "train.csv", "train", check_files)
    if split != "test":
        raise ValueError(f"split must be train or test, not {split!r}")
    if test is None:
        test = read_manifest(data_dir / "test.csv", "test", check_files)
    solution_path = data_dir / "solution.csv"
    if solution is None:
        if not solution_path.exists():
            return test
        solution = read_manifest(solution_path, "solution")
    unknown = set(solution["utt_id"]) ^ set(test["utt_id"])
    if unknown:
        fail(solution_path, f"{len(unknown)} utt_id(s) differ from test.csv, e.g. '{sorted(unknown)[0]}'")
    extra = [c for c in solution.columns if c not in test.columns or c == "utt_id"]
    return test.merge(solution[extra], on="utt_id", how="left")


# ---- segment labels -------------------------------------------------------------------

def n_segments(duration_s: float, hop_s: float = SEGMENT_HOP_S) -> int:
    """Number of label frames covering a clip: a partial last frame counts."""
    return max(1, math.ceil(round(duration_s / hop_s, 6)))


def constant_segments(label: str, duration_s: float) -> np.ndarray:
    """Segment labels of a clip that is wholly bona fide or wholly spoof."""
    return np.full(n_segments(duration_s), 1 if label == "bonafide" else 0, dtype=np.int8)


def save_segments(path: str | Path, segments: Mapping[str, np.ndarray]) -> None:
    """Write utt_id -> int8 array (1 = bona fide, 0 = spoof, 10 ms) as one compressed npz."""
    arrays = {uid: np.asarray(seg, dtype=np.int8) for uid, seg in segments.items()}
    with atomic_path(Path(path).with_suffix(".npz")) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)


def load_segments(path: str | Path, manifest: pd.DataFrame | None = None) -> dict[str, np.ndarray]:
    """Read segment labels; utterances absent from the file get constant labels from the manifest."""
    path = Path(path)
    segments: dict[str, np.ndarray] = {}
    if path.exists():
        try:  # our own handle: numpy leaks its own when the archive is corrupt
            with open(path, "rb") as fh:
                npz = np.load(fh)
                if not isinstance(npz, np.lib.npyio.NpzFile):
                    raise ValueError("not an npz archive")
                segments = {k: npz[k].astype(np.int8) for k in npz.files}
        except (OSError, ValueError, zipfile.BadZipFile) as err:
            raise ManifestError(f"{path}: unreadable segment labels ({err})") from None
    if manifest is not None:
        for row in manifest.itertuples():
            if row.utt_id not in segments:
                segments[row.utt_id] = constant_segments(row.label, row.duration)
            else:
                seg = segments[row.utt_id]
                if seg.size == 0:
                    raise ManifestError(f"{path}: segment labels of '{row.utt_id}' are empty")
                if np.any((seg != 0) & (seg != 1)):
                    raise ManifestError(f"{path}: segment labels of '{row.utt_id}' are not 0/1")
                if (seg.min() == 0) != (row.label == "spoof"):
                    raise ManifestError(
                        f"{path}: segment labels of '{row.utt_id}' contradict its label '{row.label}'")
    return segments


def load_solution(data_dir: str | Path, needed_for: str | None = None, solution: pd.DataFrame | None = None,
                  test: pd.DataFrame | None = None) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """The test split with its hidden labels and their 10 ms segment labels: for scoring only.

    Fails naming solution.csv (and what it is `needed_for`) when the data set hides its labels.
    """
    data_dir = Path(data_dir)
    test = load_split(data_dir, "test", check_files=False, solution=solution, test=test)
    if "label" not in test.columns:
        fail(data_dir / "solution.csv", "file not found" + (f" (needed {needed_for})" if needed_for else ""))
    return test, load_segments(data_dir / "solution_segments.npz", test)
