"""Results tables: every experiment's fold metrics, as mean ± standard deviation over folds.

Reads folds/<dataset>/<experiment>/fold<k>/metrics.json (written by `antispoof train`), so the
table always reflects exactly what was trained.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

COLUMNS = {  # column title -> (part, metric)
    "OOF utt EER %": ("oof", "eer"),
    "OOF seg EER %": ("oof", "segment_eer"),
    "OOF F1 @EER": ("oof", "f1_at_eer"),
    "test utt EER %": ("test", "eer"),
    "test seg EER %": ("test", "segment_eer"),
    "test F1 @EER": ("test", "f1_at_eer"),
    "test best F1": ("test", "best_f1"),
}


def collect(output_root: str | Path, dataset: str, experiments: str = "*") -> pd.DataFrame:
    """One row per finished fold of every experiment whose name matches the glob `experiments`."""
    rows = []
    for path in sorted(Path(output_root, dataset).glob(f"{experiments}/fold*/metrics.json")):
        m = json.loads(path.read_text())
        row = {"experiment": path.parent.parent.name, "fold": m.get("fold"), "epochs": m.get("epochs"),
               "s/epoch": m.get("seconds_per_epoch"), "params": m.get("n_parameters"),
               "peak GB": m.get("peak_memory_gb"), "device": m.get("device", "cpu")}
        for title, (part, key) in COLUMNS.items():
            value = m.get(part, {}).get(key)
            row[title] = None if value is None else (100 * value if "%" in title else value)
        rows.append(row)
    return pd.DataFrame(rows)


def summarise(folds: pd.DataFrame) -> pd.DataFrame:
    """mean ± std over folds per experiment (std left out when only one fold is done)."""
    out = []
    for experiment, group in folds.groupby("experiment", sort=False):
        row = {"experiment": experiment, "folds": len(group), "params": int(group["params"].iloc[0]),
               "epochs": f"{group['epochs'].mean():.0f}", "s/epoch": f"{group['s/epoch'].mean():.0f}",
               "peak GB": f"{group['peak GB'].max():.1f}" if group["peak GB"].notna().any() else "-",
               "device": "/".join(sorted(set(group["device"])))}
        for title in COLUMNS:
            values = group[title].dropna().astype(float)
            scale = "{:.3f}" if "F1" in title else "{:.2f}"
            mean = scale.format(values.mean()) if len(values) else "-"
            row[title] = mean + (f" ± {scale.format(values.std())}" if len(values) > 1 else "")
        out.append(row)
    return pd.DataFrame(out)


def report(dataset: str, output_root: str | Path = "folds", experiments: str = "*") -> str:
    folds = collect(output_root, dataset, experiments)
    if folds.empty:
        return f"no finished folds under {Path(output_root, dataset)}"
    return summarise(folds).to_markdown(index=False)
