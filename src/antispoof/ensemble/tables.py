"""Find every trained experiment, load its fold outputs and align them by utt_id.

OOF rows exist only for the folds that were trained, so an ensemble can only use the
clips every model predicted out of fold: the folds common to all experiments. Each fold model's
utterance scores are first brought to one scale (inference.fold_scale: standardised on its own
unlabelled test-split scores, `normalise.align_folds`). Test scores are averaged over those
folds (one test prediction per fold model; each fold model's own table is kept too, for the
stacker). Hidden test labels are never read here: a test table that still carries a `label`
column (older runs) loses it.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from antispoof.config import data_dir as resolve_data_dir
from antispoof.data.manifest import read_manifest
from antispoof.inference.fold_scale import DEFAULT as DEFAULT_ALIGN
from antispoof.inference.fold_scale import check_mode, scale_of
from antispoof.runs import PREDICTIONS, dataset_dir, finished_folds, folds_csv, read_predictions
from antispoof.runs import experiments as experiment_dirs
from antispoof.schema import fail

SCORE_COLUMNS = ("score", "score_utt", "score_seg_min")
CONTEXT_COLUMNS = ("attack", "language", "kind")


class EnsembleWarning(UserWarning):
    """Something the ensemble worked around (fewer folds or clips than asked for)."""


@dataclass
class ModelTables:
    """One experiment's predictions, rows aligned with Ensemble.oof / Ensemble.test."""

    name: str
    folds: list[int]
    hop: float
    oof: pd.DataFrame   # score columns + seg_scores, OOF rows
    test: pd.DataFrame  # the same, averaged over the folds
    test_by_fold: dict[int, pd.DataFrame] = field(default_factory=dict)  # each fold model's own test table


@dataclass
class Ensemble:
    """Everything an ensemble may learn from: OOF labels, folds, groups, every model's scores."""

    dataset: str
    data_dir: Path
    folds: list[int]
    oof: pd.DataFrame    # utt_id, fold, label, group, duration (+ attack, language, kind)
    test: pd.DataFrame   # utt_id, duration, in test.csv order
    models: dict[str, ModelTables] = field(default_factory=dict)
    train: pd.DataFrame | None = None  # train.csv as read once (segment thresholds need its labels)
    test_manifest: pd.DataFrame | None = None  # test.csv as read once (the scorer joins it with the solution)
    align: str = "none"  # how fold models' scores were brought to one scale (inference.fold_scale)

    @property
    def names(self) -> list[str]:
        return list(self.models)

    @property
    def bonafide(self) -> np.ndarray:
        return (self.oof["label"] == "bonafide").to_numpy()

    def frame(self, part: str) -> pd.DataFrame:
        return {"oof": self.oof, "test": self.test}[part]

    def fold_view(self, fold: int) -> "Ensemble":
        """The same ensemble with every model's test table from one fold model instead of the
        fold average: test features then come from the same kind of model as the OOF ones."""
        models = {n: replace(t, test=t.test_by_fold[fold]) for n, t in self.models.items()}
        return replace(self, models=models)

    def scores(self, part: str, column: str = "score") -> np.ndarray:
        """(clips x models) matrix of one score column."""
        return np.column_stack([getattr(t, part)[column].to_numpy(float) for t in self.models.values()])


def discover(root: Path, experiments=None) -> dict[str, dict[int, Path]]:
    """Experiment -> its finished folds (number -> folder), for the named experiments or every one under `root`.

    A named experiment without finished folds is an error; one found by scanning is
    skipped with a warning (it may still be training).
    """
    if experiments:
        found = {}
        for name in experiments:
            if not (root / name).is_dir():
                fail(root / name, "no such experiment (train it first: make train MODEL=... FOLD=...)")
            found[name] = finished_folds(root / name)
            if not found[name]:
                fail(root / name, "no finished folds (a fold is finished once its metrics.json is written)")
        return found
    if not root.is_dir():
        fail(root, "no experiments found (train one first: make train FOLD=0)")
    found = {}
    for exp_dir in experiment_dirs(root):
        folds = finished_folds(exp_dir)
        if folds:
            found[exp_dir.name] = folds
        else:
            warnings.warn(f"{exp_dir}: no finished folds, skipped", EnsembleWarning, stacklevel=2)
    if not found:
        fail(root, "no experiments with finished folds found (train one first: make train FOLD=0)")
    return found


def common_folds(found: dict[str, dict[int, Path]], warn: bool = True) -> list[int]:
    """The folds every experiment finished; a warning names what is left out (unless the caller
    chose the folds itself)."""
    common = sorted(set.intersection(*(set(f) for f in found.values())))
    every = sorted(set.union(*(set(f) for f in found.values())))
    short = [f"{n} {list(f)}" for n, f in found.items() if list(f) != every]
    if not common:
        fail(Path(", ".join(found)), "the experiments share no finished fold; train the same folds")
    if short and warn:
        listed = ", ".join(short[:6]) + (f" and {len(short) - 6} more" if len(short) > 6 else "")
        warnings.warn(f"fold sets differ (fewer folds: {listed}): using the folds every experiment finished, "
                      f"{common}", EnsembleWarning, stacklevel=2)
    return common


def _mean_arrays(arrays) -> np.ndarray:
    """Element-wise mean of one clip's segment scores from several fold models."""
    n = min(len(a) for a in arrays)
    return np.mean([np.asarray(a[:n], dtype=np.float64) for a in arrays], axis=0).astype(np.float32)


def _aligned_tests(tables: list[pd.DataFrame], paths: list[Path]) -> list[pd.DataFrame]:
    """The fold models' test tables indexed by utt_id in one order, hidden labels dropped."""
    first = tables[0].drop(columns="label", errors="ignore").set_index("utt_id")
    aligned = []
    for table, path in zip(tables, paths):
        ids = set(table["utt_id"])
        if ids != set(first.index) or table["utt_id"].duplicated().any():
            fail(path, f"test ids differ from {paths[0]} ({len(ids ^ set(first.index))} differ)")
        aligned.append(table.drop(columns="label", errors="ignore").set_index("utt_id").loc[first.index])
    return aligned


def average_test(aligned: list[pd.DataFrame]) -> pd.DataFrame:
    """One test table: every score column and segment array averaged over the fold models."""
    out = pd.DataFrame(index=aligned[0].index)
    for column in SCORE_COLUMNS:
        out[column] = np.mean([a[column].to_numpy(float) for a in aligned], axis=0)
    out["seg_scores"] = [_mean_arrays(arrays) for arrays in zip(*(a["seg_scores"] for a in aligned))]
    return out


def load_model(exp_dir: Path, folds: dict[int, Path], align: str = DEFAULT_ALIGN) -> ModelTables:
    """OOF rows of the given folds (number -> folder; with their fold number) and the fold-averaged
    test table, each fold model's utterance scores mapped to the common scale `align` names."""
    oof_parts, tests, paths = [], [], []
    check_mode(align, exp_dir)
    for k, fold in folds.items():
        test = read_predictions(fold, "test")
        scale = scale_of(test, align)
        oof_parts.append(scale.apply(read_predictions(fold, "oof")).assign(fold=k))
        tests.append(scale.apply(test))
        paths.append(fold / PREDICTIONS["test"])
    oof = pd.concat(oof_parts, ignore_index=True)
    if oof["utt_id"].duplicated().any():
        fail(exp_dir, f"utt_id '{oof['utt_id'][oof['utt_id'].duplicated()].iloc[0]}' is OOF in two folds")
    hops = oof["seg_hop_s"].unique()
    if len(hops) != 1:
        fail(exp_dir, f"segment resolutions differ between folds: {sorted(hops)}")
    aligned = _aligned_tests(tests, paths)
    return ModelTables(exp_dir.name, list(folds), float(hops[0]), oof.set_index("utt_id"), average_test(aligned),
                       dict(zip(folds, aligned)))


def _oof_frame(train: pd.DataFrame, folds_path: Path, ids: list[str], labelled: pd.Series) -> pd.DataFrame:
    """Context of the OOF clips from train.csv and folds.csv, checked against the fold outputs."""
    train = train.set_index("utt_id")
    if not folds_path.is_file():
        fail(folds_path, "file not found (the folds the experiments were trained on)")
    folds = pd.read_csv(folds_path, dtype={"utt_id": str}).set_index("utt_id")
    unknown = [u for u in ids if u not in train.index or u not in folds.index]
    if unknown:
        fail(folds_path, f"{len(unknown)} OOF clip(s) missing from train.csv or folds.csv, e.g. '{unknown[0]}'")
    frame = pd.DataFrame({"utt_id": ids, "fold": labelled["fold"].loc[ids].to_numpy(),
                          "label": train.loc[ids, "label"].to_numpy(),
                          "group": folds.loc[ids, "group"].astype(str).to_numpy(),
                          "duration": train.loc[ids, "duration"].to_numpy(float)})
    for column in CONTEXT_COLUMNS:
        if column in train.columns:
            frame[column] = train.loc[ids, column].astype(str).to_numpy()
    stale = (frame["fold"].to_numpy() != folds.loc[ids, "fold"].to_numpy()) | (
        frame["label"].to_numpy() != labelled["label"].loc[ids].to_numpy())
    if stale.any():
        fail(folds_path,
             f"fold or label of '{ids[int(np.argmax(stale))]}' differs from the fold outputs (stale folds?)")
    return frame.sort_values(["fold", "utt_id"], kind="stable").reset_index(drop=True)


def load_ensemble(dataset: str, output_root="folds", experiments=None, folds=None,
                  align: str = DEFAULT_ALIGN) -> Ensemble:
    """Every model's OOF and test predictions on the clips and folds they all share (or on the
    given `folds` of those: ensembles with and without an experiment that finished fewer folds
    compare on the same clips), fold models on one scale (`align`, inference.fold_scale)."""
    data_dir = resolve_data_dir(str(dataset))
    root = dataset_dir(output_root, data_dir.name)
    found = discover(root, list(experiments) if experiments else None)
    common = common_folds(found, warn=folds is None)
    missing = sorted(set(folds or []) - set(common))
    if missing:
        fail(root, f"fold(s) {missing} asked for, but the folds every experiment finished are {common}")
    folds = common if folds is None else sorted(set(folds))
    models = {name: load_model(root / name, {k: found[name][k] for k in folds}, align) for name in found}
    shared = set.intersection(*(set(m.oof.index) for m in models.values()))
    if any(len(m.oof) != len(shared) for m in models.values()):
        warnings.warn(f"OOF clips differ between experiments: using the {len(shared)} they share",
                      EnsembleWarning, stacklevel=2)
    if not shared:
        fail(root, "the experiments share no OOF clip")
    first = next(iter(models.values())).oof
    train = read_manifest(data_dir / "train.csv", "train", check_files=False)
    oof = _oof_frame(train, folds_csv(output_root, data_dir.name), sorted(shared), first[["fold", "label"]])
    test_manifest = read_manifest(data_dir / "test.csv", "test", check_files=False)
    test = test_manifest[["utt_id", "duration"]]
    for name, m in models.items():
        diff = set(m.test.index) ^ set(test["utt_id"])
        if diff:
            fail(root / name, f"test predictions and {data_dir / 'test.csv'} differ in {len(diff)} id(s), "
                              f"e.g. '{sorted(diff)[0]}'")
        # labels live in Ensemble.oof alone, where cross-fitting can hide a fold's (models' own copies go)
        m.oof = m.oof.loc[oof["utt_id"]].drop(columns="label", errors="ignore").reset_index()
        m.test = m.test.loc[test["utt_id"]].reset_index()
        m.test_by_fold = {k: t.loc[test["utt_id"]].reset_index() for k, t in m.test_by_fold.items()}
    return Ensemble(data_dir.name, data_dir, folds, oof, test.reset_index(drop=True), models, train, test_manifest,
                    align)

