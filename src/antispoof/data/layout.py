"""The data set layout: what a data set folder holds, and the one writer of it.

A data set is a folder, Kaggle style::

    train.csv              utt_id, path, duration, label, + optional metadata columns
    test.csv               utt_id, path, duration            (labels hidden)
    solution.csv           utt_id, label, + optional metadata (hidden test labels; scorer only)
    sample_submission.csv  utt_id, label (0 everywhere)
    train_segments.npz     10 ms segment labels per utt_id (1 = bona fide, 0 = spoof)
    solution_segments.npz  the same for the test split (hidden)
    competition.json       the submission format, over COMPETITION_DEFAULTS (optional): id and label
                           columns, label values, header or not, the extension ids carry
    README.md              data card

SpoofBench (spoofbench/benchmark.py) and the importers (importers/) both write through
`write_splits`; `load_competition` is what the submission writers and the scorer read.
Reading and validating the manifests is data/manifest.py.
"""
from __future__ import annotations

import json
import os
import shutil
import re
from pathlib import Path

import numpy as np
import pandas as pd

from antispoof.data.manifest import save_segments
from antispoof.schema import LABELS, ManifestError, fail
from antispoof.utils import write_csv_atomic, write_json_atomic

COMPETITION_DEFAULTS = {
    "id_column": "utt_id",
    "label_column": "label",
    "score_column": "score",
    "positive": "spoof",
    "positive_value": 1,
    "negative_value": 0,
    "header": True,
    "id_extension": "",  # appended to every utt_id in a submission (FinVolution: ".wav"); the scorer strips it
}
ASVSPOOF5_COLUMNS = ("filename", "cm-score")  # an ASVspoof 5 score file (TSV with this header)
SEGMENT_COLUMNS = ("start", "end")  # a spoofed-regions file: <id>,start,end in seconds, one row per region


def _checked_competition(path: Path, given) -> dict:
    """The defaults with `given` over them; unknown keys and impossible values fail naming `path`."""
    if not isinstance(given, dict):
        fail(path, "expected a JSON object")
    cfg = dict(COMPETITION_DEFAULTS)
    unknown = sorted(set(given) - set(cfg))
    if unknown:
        fail(path, f"unknown key(s) {', '.join(unknown)}; known: {', '.join(cfg)}")
    cfg.update(given)
    columns = [cfg[k] for k in ("id_column", "label_column", "score_column")]
    for key, column in zip(("id_column", "label_column", "score_column"), columns):
        if not isinstance(column, str) or not column.strip():  # a list or a number would crash the readers
            fail(path, f"{key} must be a non-empty string, not {column!r}")
    if len(set(columns)) < 3:
        fail(path, f"id_column, label_column and score_column must differ, not {', '.join(map(repr, columns))}")
    for key in ("positive_value", "negative_value"):
        value = cfg[key]
        if isinstance(value, bool) or not isinstance(value, (str, int, float)) or value != value \
                or value in (float("inf"), float("-inf")):
            fail(path, f"{key} must be a string or a finite number, not {value!r}")
    if cfg["positive"] not in LABELS:
        fail(path, f"positive must be bonafide or spoof, not {cfg['positive']!r}")
    if str(cfg["positive_value"]) == str(cfg["negative_value"]):
        fail(path, "positive_value and negative_value must differ")
    if not isinstance(cfg["header"], bool):
        fail(path, f"header must be true or false, not {cfg['header']!r}")
    if not isinstance(cfg["id_extension"], str) or not re.fullmatch(r"(\.[A-Za-z0-9_-]+)*", cfg["id_extension"]):
        fail(path, f"id_extension must be '' or like '.wav', not {cfg['id_extension']!r}")
    return cfg


def load_competition(data_dir) -> dict:
    """Submission format of a data set: competition.json over the defaults."""
    path = Path(data_dir) / "competition.json"
    if not path.exists():
        return dict(COMPETITION_DEFAULTS)
    try:
        given = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as err:  # JSONDecodeError, bad UTF-8, 5000-digit ints; deep nesting
        fail(path, f"invalid JSON ({err})")
    return _checked_competition(path, given)


def encode_labels(is_spoof, cfg: dict) -> np.ndarray:
    """Decisions (True = spoof) as a competition's label values, for its positive class."""
    spoof = np.asarray(is_spoof, dtype=bool)
    positive = spoof if cfg["positive"] == "spoof" else ~spoof
    return np.where(positive, cfg["positive_value"], cfg["negative_value"])


def write_competition(out_dir, settings: dict) -> Path:
    """competition.json with exactly `settings` (the rest stays at its default), checked as it is read."""
    path = Path(out_dir) / "competition.json"
    _checked_competition(path, settings)
    write_json_atomic(path, settings)
    return path


def write_splits(out_dir, train: pd.DataFrame, train_segments: dict, test: pd.DataFrame | None = None,
                 solution: pd.DataFrame | None = None, solution_segments: dict | None = None,
                 competition: dict | None = None) -> Path:
    """Every file of the layout but the data card, each atomically: train.csv and its segment
    labels; test.csv with sample_submission.csv; solution.csv with its segment labels;
    competition.json. The frames are written as given (their columns are the caller's)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_csv_atomic(train, out / "train.csv")
    save_segments(out / "train_segments.npz", train_segments)
    if test is not None:
        write_csv_atomic(test, out / "test.csv")
        write_csv_atomic(pd.DataFrame({"utt_id": test["utt_id"], "label": 0}), out / "sample_submission.csv")
    if solution is not None:
        write_csv_atomic(solution, out / "solution.csv")
        save_segments(out / "solution_segments.npz", solution_segments)
    if competition is not None:
        write_competition(out, competition)
    return out


def write_dataset(rows: list[dict], segments: dict, out_dir: Path, metadata) -> pd.DataFrame:
    """A built benchmark's clips (one row each, with its `split`) -> the layout; returns the table.

    `metadata`: the columns beside utt_id, path, duration and label that train.csv and
    solution.csv carry. Audio under audio/ that no row names (left by an earlier build with
    another configuration) is removed. competition.json states the default format.
    """
    table = pd.DataFrame(rows).sort_values("utt_id").reset_index(drop=True)
    for orphan in set((out_dir / "audio").glob("*.flac")) - {out_dir / p for p in table["path"]}:
        orphan.unlink()
    meta = list(metadata)
    train = table[table.split == "train"]
    test = table[table.split == "test"]
    # as SpoofBench has always written it: every key but the later ones, which keep their defaults
    competition = {k: v for k, v in COMPETITION_DEFAULTS.items() if k not in ("header", "id_extension")}
    write_splits(out_dir, train[["utt_id", "path", "duration", "label", *meta]],
                 {u: segments[u] for u in train.utt_id}, test[["utt_id", "path", "duration"]],
                 test[["utt_id", "label", *meta]], {u: segments[u] for u in test.utt_id}, competition)
    return table


# ---- replacing a data set --------------------------------------------------------------

def holds_dataset(folder) -> bool:
    """A data set is there: the layout's train.csv (a finished import or build)."""
    return (Path(folder) / "train.csv").is_file()


def staging_dir(out) -> Path:
    """Where a data set that will replace `out` is built: a hidden sibling, so the swap is a rename."""
    out = Path(out).absolute()
    return out.parent / f".{out.name}.staging"


def is_free(out) -> bool:
    out = Path(out)
    return not out.exists() or (out.is_dir() and not any(out.iterdir()))


def check_free(out, force: bool, command: str) -> None:
    """Refuse to replace what is at `out` (a data set, or any non-empty folder) unless `force`."""
    if not is_free(out) and not force:
        what = "a data set is already there" if holds_dataset(out) else "the folder is not empty"
        raise ManifestError(f"{out}: {what}; `{command} --force` builds the new one beside it and swaps it in")


def build_target(out, force: bool, command: str) -> Path:
    """The staging folder a new data set meant for `out` is written into, for `swap_in` to move into
    place when it is complete (so a half-written one is never mistaken for a data set). Unless
    `force`, `out` must be free (missing or an empty folder): an existing data set, or a folder
    holding anything else, is refused, and a refused command leaves it untouched."""
    check_free(out, force, command)
    staging = staging_dir(out)
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    return staging


def swap_in(staging, out) -> Path:
    """Move a complete staged data set to `out`: the old folder is renamed aside, the new one renamed
    into place, then the old one is deleted. Each step is one rename, so a crash between them leaves
    either data set whole (the old one at `.<name>.old`), never a mix of the two."""
    staging, out = Path(staging), Path(out)
    if staging == out:
        return out
    old = out.parent / f".{out.name}.old"
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        os.replace(out, old)
    os.replace(staging, out)
    shutil.rmtree(old, ignore_errors=True)
    return out
