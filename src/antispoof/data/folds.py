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


# ---- leave-one-attack-out folds ------------------------------------------------------------

LOAO_ROOT = "folds_loao"  # output root of runs on leave-one-attack-out folds (`output_root=folds_loao`)


def _attacks_of(df: pd.DataFrame) -> pd.Series:
    """Each row's attacks (a list; empty for bona fide rows)."""
    return df["attack"].fillna("bonafide").astype(str).str.split("+").map(
        lambda names: sorted(n for n in names if n and n != "bonafide"))


def hold_out_attacks(df: pd.DataFrame, k: int) -> list[list[str]]:
    """Which attacks each fold holds out: every fold at least one, neural attacks (the
    `generation` column) spread one per fold first, then the rest greedily to the fold with the
    fewest held-out spoofs, so every fold loses a similar share of its training spoofs."""
    attacks = _attacks_of(df)
    counts = pd.Series([a for names in attacks for a in names]).value_counts()
    if len(counts) < k:
        raise ManifestError(f"{k} leave-one-attack-out folds need at least {k} attacks; the training split has "
                            f"{len(counts)} ({', '.join(counts.index)}): use --k {max(2, len(counts))}")
    neural = set()
    if "generation" in df.columns:
        single = attacks.map(len) == 1
        neural = {names[0] for names, gen in zip(attacks[single], df["generation"][single]) if gen == "neural"}
    order = sorted(counts.index, key=lambda a: (a not in neural, -counts[a], a))
    held, load, n_neural = [[] for _ in range(k)], np.zeros(k), np.zeros(k)
    for attack in order:
        key = [(n_neural[f], load[f], f) for f in range(k)] if attack in neural else [(load[f], f) for f in range(k)]
        fold = min(key)[-1]
        held[fold].append(attack)
        load[fold] += counts[attack]
        n_neural[fold] += attack in neural
    return held


def attack_folds(df: pd.DataFrame, k: int = 5, seed: int = 0) -> tuple[pd.DataFrame, list[list[str]]]:
    """Leave-one-attack-out folds with speakers still grouped.

    A row's `fold` is its group's fold, as in the default folds: it is scored out of fold once.
    Fold f's training part further leaves out every clip that touches an attack fold f holds out
    (`exclude` lists those folds), so its validation part holds attacks its model never saw:
    `held_out` marks those OOF rows, and the stacker, calibration and model selection can learn
    how a detector fares on an unseen attack.
    """
    folds = assign_folds(df, k, seed)
    held = hold_out_attacks(df, k)
    fold_of_attack = {a: f for f, names in enumerate(held) for a in names}
    touched = [{fold_of_attack[a] for a in names} for names in _attacks_of(df)]
    exclude = [";".join(str(f) for f in sorted(t - {own})) for t, own in zip(touched, folds)]
    held_out = [int(own in t) for t, own in zip(touched, folds)]
    table = pd.DataFrame({"utt_id": df["utt_id"], "fold": folds, "label": df["label"], "group": fold_groups(df),
                          "exclude": exclude, "held_out": held_out})
    for f in range(k):
        if not table.held_out[table.fold == f].any():
            raise ManifestError(f"leave-one-attack-out fold {f}: its validation part has no clip of its held-out "
                                f"attacks {held[f]}; try another --seed or fewer folds")
    return table, held


def make_attack_folds(data_dir: str | Path, k: int = 5, seed: int = 0, out: str | Path | None = None) -> Path:
    """Write folds.csv with `exclude` / `held_out` columns, and folds.json naming each fold's
    held-out attacks. Default output: folds_loao/<data set folder name>/folds.csv, so runs on
    them (`output_root=folds_loao`) never mix with runs on the default folds."""
    from antispoof.utils import write_json_atomic

    data_dir = Path(data_dir)
    csv_path = data_dir / "train.csv"
    df = read_manifest(csv_path, "train", check_files=False)
    if "attack" not in df.columns:
        raise ManifestError(f"{csv_path}: leave-one-attack-out folds need an `attack` column")
    try:
        table, held = attack_folds(df, k, seed)
    except ManifestError as err:
        raise ManifestError(f"{csv_path}: {err}") from None
    out = Path(out) if out else folds_csv(LOAO_ROOT, data_dir.resolve().name)
    write_csv_atomic(table, out)
    write_json_atomic(out.with_suffix(".json"), {"by": "attack", "k": k, "seed": seed,
                                                 "held_out": {str(f): names for f, names in enumerate(held)}})
    return out


def training_mask(folds: pd.DataFrame, fold: int) -> np.ndarray:
    """Rows of folds.csv in fold `fold`'s training part: other folds' rows, less those whose
    `exclude` names this fold (leave-one-attack-out folds)."""
    mask = folds["fold"].to_numpy() != fold
    if "exclude" in folds.columns:
        excluded = folds["exclude"].fillna("").astype(str).str.split(";").map(lambda fs: str(fold) in fs)
        mask &= ~excluded.to_numpy(bool)
    return mask
