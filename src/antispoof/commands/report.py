"""Results tables (`antispoof report`): every experiment's fold metrics, mean ± standard deviation over folds.

Reads the metrics.json of every finished fold (antispoof.runs), so the table always reflects
exactly what was trained, and each experiment's calibration.json where there is one.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from antispoof.metrics.conditions import CONDITIONS
from antispoof.runs import experiments as experiment_dirs
from antispoof.runs import dataset_dir, finished_folds, read_metrics
from antispoof.train.calibration import calibration_rows

COLUMNS = {  # column title -> (part, metric)
    "OOF utt EER %": ("oof", "eer"),
    "OOF seg EER %": ("oof", "segment_eer"),
    "OOF range EER %": ("oof", "segment_range_eer"),
    "OOF F1 @EER": ("oof", "f1_at_eer"),
    "test utt EER %": ("test", "eer"),
    "test seg EER %": ("test", "segment_eer"),
    "test range EER %": ("test", "segment_range_eer"),
    "test F1 @EER": ("test", "f1_at_eer"),
    "test best F1": ("test", "best_f1"),
}
# test EER per condition (metrics.json test.eer_by_condition), shown where a data set has conditions
CONDITION_COLUMNS = {f"test {name} %": name for name in CONDITIONS}


def collect(output_root: str | Path, dataset: str, experiments: str = "*") -> pd.DataFrame:
    """One row per finished fold of every experiment whose name matches the glob `experiments`."""
    rows = []
    folds = [(e, d) for e in experiment_dirs(dataset_dir(output_root, dataset), experiments)
             for d in finished_folds(e).values()]
    for exp_dir, fold in folds:
        m = read_metrics(fold)
        row = {"experiment": exp_dir.name, "fold": m.get("fold"), "epochs": m.get("epochs"),
               "s/epoch": m.get("seconds_per_epoch"), "params": m.get("n_parameters"),
               "peak GB": m.get("peak_memory_gb"), "device": m.get("device", "cpu")}
        for title, (part, key) in COLUMNS.items():
            value = m.get(part, {}).get(key)
            row[title] = None if value is None else (100 * value if "%" in title else value)
        by_condition = m.get("test", {}).get("eer_by_condition", {})
        for title, name in CONDITION_COLUMNS.items():
            row[title] = 100 * by_condition[name] if name in by_condition else None
        rows.append(row)
    folds = pd.DataFrame(rows)
    absent = [t for t in CONDITION_COLUMNS if t in folds and folds[t].isna().all()]
    return folds.drop(columns=absent)


def summarise(folds: pd.DataFrame) -> pd.DataFrame:
    """mean ± std over folds per experiment (std left out when only one fold is done)."""
    out = []
    for experiment, group in folds.groupby("experiment", sort=False):
        row = {"experiment": experiment, "folds": len(group), "params": int(group["params"].iloc[0]),
               "epochs": f"{group['epochs'].mean():.0f}", "s/epoch": f"{group['s/epoch'].mean():.0f}",
               "peak GB": f"{group['peak GB'].max():.1f}" if group["peak GB"].notna().any() else "-",
               "device": "/".join(sorted(set(group["device"])))}
        for title in [*COLUMNS, *(t for t in CONDITION_COLUMNS if t in folds)]:
            values = group[title].dropna().astype(float)
            scale = "{:.3f}" if "F1" in title else "{:.2f}"
            mean = scale.format(values.mean()) if len(values) else "-"
            row[title] = mean + (f" ± {scale.format(values.std())}" if len(values) > 1 else "")
        out.append(row)
    return pd.DataFrame(out)


def report(dataset: str, output_root: str | Path = "folds", experiments: str = "*") -> str:
    """The results table, and below it the calibration of every experiment that has one."""
    folds = collect(output_root, dataset, experiments)
    if folds.empty:
        return f"no finished folds under {dataset_dir(output_root, dataset)}"
    table = summarise(folds).to_markdown(index=False)
    calibrated = calibration_rows(experiment_dirs(dataset_dir(output_root, dataset), experiments))
    if calibrated.empty:
        return table
    return (f"{table}\n\nCalibration (calibration.json: LLR = slope x score + offset, fitted on OOF; "
            f"before -> after, OOF cross-fitted by fold):\n\n{calibrated.to_markdown(index=False)}")
