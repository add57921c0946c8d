"""Cross-validation folds: StratifiedGroupKFold over the training split.

Grouping keeps a recording, every clip derived from it and (where known) its speaker in
one fold, so out-of-fold scores never reward memorising a voice or a source recording.
Stratification keeps the class balance (and, when the data allow, the attack mix) of
every fold close to the whole.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

from antispoof.data.manifest import read_manifest
from antispoof.runs import OUTPUT_ROOT, folds_csv
from antispoof.schema import LABELS, ManifestError
from antispoof.utils import write_csv_atomic


def fold_groups(df: pd.DataFrame) -> pd.Series:
    """Group of each row: `group`, else `speaker`, else the utterance itself."""
    groups = pd.Series(np.nan, index=df.index, dtype=object)
    for column in ("group", "speaker"):
        if column in df.columns:
            groups = groups.fillna(df[column].replace("", np.nan))
    return groups.fillna(df["utt_id"]).astype(str)


def _split(y: pd.Series, groups: pd.Series, k: int, seed: int) -> np.ndarray:
    folds = np.full(len(y), -1, dtype=int)
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # "least populated class" warnings: we check the result instead
        warnings.simplefilter("ignore", UserWarning)
        for fold, (_, test_idx) in enumerate(splitter.split(np.zeros(len(y)), y, groups)):
            folds[test_idx] = fold
    return folds


def _acceptable(folds: np.ndarray, labels: pd.Series, groups: pd.Series, k: int) -> bool:
    """Every fold non-empty, and holding both classes whenever each class spans >= k groups."""
    if (np.bincount(folds, minlength=k) == 0).any():
        return False
    for label in LABELS:
        if groups[labels == label].nunique() >= k:
            if len(set(folds[(labels == label).to_numpy()])) < k:
                return False
    return True


def assign_folds(df: pd.DataFrame, k: int = 5, seed: int = 0) -> np.ndarray:
    """Fold index per row: stratify on label+attack if that still gives sound folds, else label.

    GroupKFold is the last resort: it always fills every fold when there are >= k groups.
    """
    groups = fold_groups(df)
    labels = df["label"]
    candidates = []
    if "attack" in df.columns:
        candidates.append(labels + "|" + df["attack"].fillna("-").astype(str))
    candidates.append(labels)
    for y in candidates:
        folds = _split(y, groups, k, seed)
        if _acceptable(folds, labels, groups, k):
            return folds
    folds = np.full(len(df), -1, dtype=int)
    for fold, (_, test_idx) in enumerate(GroupKFold(n_splits=k).split(df, groups=groups)):
        folds[test_idx] = fold
    return folds


def make_folds(data_dir: str | Path, k: int = 5, seed: int = 0, out: str | Path | None = None,
               check_audio: bool = False) -> Path:
    """Write folds.csv (utt_id, fold, label, group) for a data set's train.csv.

    Default output: folds/<data set folder name>/folds.csv under the working directory.
    The folds need no audio (they can be made on a machine without the corpus); `antispoof folds`
    checks the clips first all the same (`check_audio`, data/clip_check.py), so that a broken clip
    is named now rather than in the middle of a fold (`--no-audio-check` skips it).
    """
    data_dir = Path(data_dir)
    csv_path = data_dir / "train.csv"
    df = read_manifest(csv_path, "train", check_files=False)
    if check_audio:
        from antispoof.data.clip_check import require_usable

        require_usable(df["audio"], csv_path)
    if k < 2:
        raise ManifestError(f"{csv_path}: k = {k} folds; need k >= 2")
    groups = fold_groups(df)
    if groups.nunique() < k:
        raise ManifestError(f"{csv_path}: {k} folds need at least {k} groups, found {groups.nunique()}")
    folds = assign_folds(df, k, seed)
    table = pd.DataFrame({"utt_id": df["utt_id"], "fold": folds, "label": df["label"], "group": groups})
    out = Path(out) if out else folds_csv(OUTPUT_ROOT, data_dir.resolve().name)
    write_csv_atomic(table, out)
    return out
