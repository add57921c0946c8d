"""The one audio check: is a clip usable at all? Every command that reads a data set runs it.

`antispoof import`, `folds`, `probe`, `train`, `predict` and `check` all call `check_clip` (through
`check_clips`), so a corrupt, empty, NaN-filled, silent, too short or too long file is one line
naming the file and the problem, wherever it is met, instead of a soundfile traceback, a numpy
warning or `bona fide scores contain NaN` three steps later. The file is read in blocks of 30 s,
so an hour-long recording costs one block of memory.

The limits are knobs (`data.check` in configs/train/default.yaml; `antispoof check --max-seconds`).
Results are cached per data set (`<output_root>/<data set>/clip_check.csv`, keyed by path, size,
modification time and limits), so a second `train` on a large set only stats the files.
"""
from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from antispoof.data.audio import AudioError, iter_blocks
from antispoof.schema import ManifestError
from antispoof.utils import write_csv_atomic

CHECK_CACHE = "clip_check.csv"  # beside folds.csv: <output_root>/<data set>/clip_check.csv
CACHE_COLUMNS = ("path", "size", "mtime_ns", "limits", "duration", "problem")


@dataclass(frozen=True)
class ClipLimits:
    """What a usable clip is: at least `min_seconds`, at most `max_seconds`, a peak above
    `silence_dbfs` (an all-silent clip has nothing to detect), and finite samples."""
    min_seconds: float = 0.1
    max_seconds: float = 600.0
    silence_dbfs: float = -60.0

    @classmethod
    def from_config(cls, cfg) -> "ClipLimits":
        return cls(**{k: float(cfg[k]) for k in asdict(cls()) if cfg is not None and k in cfg})

    def key(self) -> str:
        return f"{self.min_seconds:g}/{self.max_seconds:g}/{self.silence_dbfs:g}"


@functools.lru_cache(maxsize=1)
def default_limits() -> ClipLimits:
    """The limits of configs/train/default.yaml (`data.check`), for the commands without an
    experiment; the built-in ones when run away from the repository (no configs/ folder)."""
    from antispoof.config import load_config

    try:
        return ClipLimits.from_config(load_config("train/default").data.get("check"))
    except FileNotFoundError:
        return ClipLimits()


def check_clip(path: str | Path, limits: ClipLimits = ClipLimits()) -> float:
    """Duration in seconds of a usable clip; AudioError (`<file>: <problem>`) for any other."""
    path = Path(path)
    n, rate, peak = 0, 0, 0.0
    try:
        for block, rate in iter_blocks(path):
            finite = np.isfinite(block)
            if not finite.all():
                at = (n + int(np.flatnonzero(~finite.all(axis=1))[0])) / rate
                raise AudioError(f"{path}: NaN or infinite samples (first at {at:.2f} s)")
            peak = max(peak, float(np.abs(block).max()))
            n += len(block)
            if n > limits.max_seconds * rate:
                raise AudioError(f"{path}: longer than the {limits.max_seconds:g} s maximum (data.check.max_seconds)")
    except (sf.LibsndfileError, RuntimeError) as err:  # a file that opens but breaks off mid-stream
        raise AudioError(f"{path}: unreadable after {n / max(rate, 1):.2f} s ({str(err).splitlines()[0]})") from None
    if n == 0:
        raise AudioError(f"{path}: no samples in it")
    duration = n / rate
    if duration < limits.min_seconds:
        raise AudioError(f"{path}: {duration:.3f} s long ({n} samples), under the {limits.min_seconds:g} s "
                         "minimum (data.check.min_seconds)")
    peak_db = 20 * np.log10(peak) if peak > 0 else -np.inf
    if peak_db < limits.silence_dbfs:
        level = "digital silence" if peak == 0 else f"peak {peak_db:.1f} dBFS"
        raise AudioError(f"{path}: all silent ({level}, under {limits.silence_dbfs:g} dBFS; data.check.silence_dbfs)")
    return duration


def _problem(path: str, limits: ClipLimits) -> tuple[float, str]:
    try:
        return check_clip(path, limits), ""
    except AudioError as err:
        return np.nan, str(err)


def _stat(path: str) -> tuple[int, int]:
    try:
        st = os.stat(path)
        return st.st_size, st.st_mtime_ns
    except OSError:
        return -1, -1


def check_clips(paths, limits: ClipLimits = ClipLimits(), cache: Path | None = None, workers: int | None = None,
                progress: str | None = None) -> pd.DataFrame:
    """Check many files (threads: libsndfile and numpy release the GIL); one row per path, in order,
    with `duration` and `problem` ("" when usable). Reuses and updates `cache` when given."""
    paths = [str(p) for p in paths]
    stats = [_stat(p) for p in paths]
    known = _read_cache(cache, limits)
    results: dict[int, tuple[float, str]] = {}
    todo = []
    for i, (path, stat) in enumerate(zip(paths, stats)):
        hit = known.get((path, *stat))
        if hit is not None and stat[0] >= 0:
            results[i] = hit
        else:
            todo.append(i)
    if todo:
        workers = workers or min(8, os.cpu_count() or 1)
        bar = _bar(len(todo), progress)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for i, result in zip(todo, pool.map(lambda i: _problem(paths[i], limits), todo)):
                results[i] = result
                bar.update()
        bar.close()
    table = pd.DataFrame({"path": paths, "size": [s for s, _ in stats], "mtime_ns": [m for _, m in stats],
                          "limits": limits.key(), "duration": [results[i][0] for i in range(len(paths))],
                          "problem": [results[i][1] for i in range(len(paths))]})
    if cache is not None and todo:
        _write_cache(cache, table, limits)
    return table[["path", "duration", "problem"]]


def _bar(total: int, label: str | None):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=label or "checking audio", unit="clip", disable=total < 200 or label is None)


def _read_cache(cache: Path | None, limits: ClipLimits) -> dict:
    if cache is None or not Path(cache).is_file():
        return {}
    try:
        old = pd.read_csv(cache, dtype={"path": str, "problem": str, "limits": str}, keep_default_na=False,
                          na_values={"duration": [""]})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError):
        return {}  # a damaged cache is only a cache: check again
    if list(old.columns) != list(CACHE_COLUMNS):
        return {}
    old = old[old["limits"] == limits.key()]
    return {(r.path, int(r.size), int(r.mtime_ns)): (float(r.duration), r.problem) for r in old.itertuples()}


def _write_cache(cache: Path, table: pd.DataFrame, limits: ClipLimits) -> None:
    """Merge this run's rows over the cached ones (other data set parts, other limits stay)."""
    try:
        old = pd.read_csv(cache, dtype=str, keep_default_na=False) if Path(cache).is_file() else None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
        old = None
    fresh = table[list(CACHE_COLUMNS)]
    if old is not None and list(old.columns) == list(CACHE_COLUMNS):
        keep = old[~old.set_index(["path", "limits"]).index.isin(fresh.set_index(["path", "limits"]).index)]
        fresh = pd.concat([keep, fresh.astype(str)], ignore_index=True)
    try:
        write_csv_atomic(fresh, cache)
    except OSError:
        pass  # an unwritable output folder only costs the next run a re-check


def require_usable(paths, csv_path: Path, limits: ClipLimits | None = None) -> pd.DataFrame:
    """check_clips over a manifest's audio (`default_limits()` unless given), failing in one line
    naming the manifest when any clip is unusable (probe, folds: they need every clip)."""
    csv_path = Path(csv_path)
    result = check_clips(paths, limits or default_limits(), progress=f"checking {csv_path.name}")
    if (result["problem"] != "").any():
        raise ManifestError(bad_clips_message(csv_path, result,
                                              f"antispoof check --data {csv_path.parent} lists them all"))
    return result


def bad_clips_message(where, table: pd.DataFrame, hint: str) -> str:
    """One line for a set of unusable clips: how many, the first problem, and where to see all."""
    bad = table[table["problem"] != ""]
    more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
    return f"{where}: {len(bad)} unusable clip(s): {bad['problem'].iloc[0]}{more}; {hint}"
