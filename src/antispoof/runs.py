"""Run outputs on disk: where a fold's outputs live, when a fold is finished, how they are read.

    <output_root>/<dataset>/folds.csv                      the folds every experiment trains on
    <output_root>/<dataset>/<experiment>/fold<k>/
        config.yaml, checkpoints/{best,last}.ckpt, logs/run<n>/
        oof.parquet, test.parquet                          prediction tables (antispoof.inference.tables)
        metrics.json                                       written last
    <output_root>/<dataset>/<experiment>/calibration.json  score -> LLR map fitted on the OOF of its
                                                           finished folds (antispoof.train.calibration)

`antispoof train` writes metrics.json after every other output, so a fold is finished exactly
when its metrics.json exists: training skips it (unless forced), and the results tables, the
paired comparisons and the ensembles read it. output_root is `folds` unless a config says otherwise.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from antispoof.schema import fail, first_row, require_columns
from antispoof.utils import atomic_path, write_json_atomic

OUTPUT_ROOT = "folds"
METRICS = "metrics.json"
CALIBRATION = "calibration.json"
PREDICTIONS = {"oof": "oof.parquet", "test": "test.parquet"}


def dataset_dir(output_root, dataset: str) -> Path:
    """Where every experiment on a data set (named by its folder) keeps its runs."""
    return Path(output_root) / dataset


def folds_csv(output_root, dataset: str) -> Path:
    return dataset_dir(output_root, dataset) / "folds.csv"


def experiment_dir(output_root, dataset: str, experiment: str) -> Path:
    return dataset_dir(output_root, dataset) / experiment


def fold_dir(cfg, fold: int) -> Path:
    """The fold folder of an experiment config (its output_root, data.dir and experiment)."""
    return experiment_dir(cfg.output_root, Path(cfg.data.dir).name, cfg.experiment) / f"fold{fold}"


def is_finished(fold: Path) -> bool:
    """The finished-fold rule: metrics.json, the last output of a fold, is written."""
    return (Path(fold) / METRICS).is_file()


def finished_folds(exp_dir: Path) -> dict[int, Path]:
    """fold number k -> folder of each finished fold<k> of an experiment, in fold order."""
    found = {int(d.name[4:]): d for d in Path(exp_dir).glob("fold*") if d.name[4:].isdigit() and is_finished(d)}
    return dict(sorted(found.items()))


def experiments(root: Path, pattern: str = "*") -> list[Path]:
    """Experiment folders under <output_root>/<dataset> whose name matches the glob, by name:
    those with a fold folder, finished or not."""
    return sorted(d for d in Path(root).glob(pattern) if d.is_dir() and any(d.glob("fold*")))


def read_metrics(fold: Path) -> dict:
    return json.loads((Path(fold) / METRICS).read_text())


def write_metrics(fold: Path, metrics: dict) -> None:
    write_json_atomic(Path(fold) / METRICS, metrics)


def write_table(table: pd.DataFrame, path: str | Path) -> None:
    """A prediction table as parquet, atomically."""
    with atomic_path(path) as tmp:
        table.to_parquet(tmp, index=False)


def read_table(path: str | Path, columns: list[str] | None = None) -> pd.DataFrame:
    return pd.read_parquet(path, columns=columns)


def read_predictions(fold: Path, part: str, columns: list[str] | None = None) -> pd.DataFrame:
    """A fold's `oof` or `test` prediction table, checked: the ensembles and comparisons join
    tables on utt_id, so a duplicate id or a missing score would otherwise surface as a sklearn
    message or an id mismatch with no file named. Only `columns` (and the two checked ones) are
    read when given: the segment arrays are the bulk of a table."""
    path = Path(fold) / PREDICTIONS[part]
    if not path.is_file():
        fail(path, "file not found")
    try:
        table = read_table(path, None if columns is None else list(dict.fromkeys(["utt_id", "score", *columns])))
    except (OSError, ValueError) as err:  # pyarrow raises ArrowInvalid (a ValueError) on a bad file
        fail(path, f"unreadable prediction table ({str(err).splitlines()[0]})")
    require_columns(path, table, ("utt_id", "score"))
    duplicated = table["utt_id"].duplicated()
    if duplicated.any():
        row = first_row(duplicated)
        fail(path, f"duplicate utt_id '{table['utt_id'].iloc[row - 1]}'", row)
    score = pd.to_numeric(table["score"], errors="coerce")
    bad = ~np.isfinite(score.to_numpy(dtype=float))
    if bad.any():
        row = first_row(bad)
        fail(path, f"score of '{table['utt_id'].iloc[row - 1]}' is '{table['score'].iloc[row - 1]}', "
                   "not a finite number", row)
    return table if columns is None else table[list(columns)]


def calibration_path(exp_dir: Path) -> Path:
    """Where an experiment's calibration (antispoof.metrics.calibration JSON) lives."""
    return Path(exp_dir) / CALIBRATION
