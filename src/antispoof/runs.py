"""Run outputs on disk: where a fold's outputs live, when a fold is finished, how they are read.

    <output_root>/<dataset>/folds.csv                      the folds every experiment trains on
    <output_root>/<dataset>/<experiment>/fold<k>/
        config.yaml, checkpoints/{best,last}.ckpt, logs/run<n>/
        oof.parquet, test.parquet                          prediction tables (antispoof.predict)
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

import pandas as pd

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
    """A fold's `oof` or `test` prediction table (only `columns`, when given: segment arrays are the bulk)."""
    return read_table(Path(fold) / PREDICTIONS[part], columns)


def calibration_path(exp_dir: Path) -> Path:
    """Where an experiment's calibration (antispoof.metrics.calibration JSON) lives."""
    return Path(exp_dir) / CALIBRATION
