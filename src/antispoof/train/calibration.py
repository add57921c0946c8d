"""An experiment's calibration: one linear score -> LLR map per experiment, stored beside its folds.

`<output_root>/<dataset>/<experiment>/calibration.json` (runs.calibration_path; the format of
antispoof.metrics.calibration) is fitted on the OOF `score` of every finished fold, concatenated:
each training clip is OOF in exactly one fold, scored by a model that never trained on it, so
the fit sees every clip once and honestly. It applies to the test score averaged over those
fold models, which is how the ensemble tables read an experiment's test predictions
(ensemble.tables.average_test), and to a new clip scored the same way. Each fold model's scores are
first put on one scale, label-free (inference.fold_scale, `align_folds`, recorded in the file):
fold models drift apart in offset, and a map fitted on the other folds' scores would otherwise
miscalibrate the held-out one. The "after" OOF numbers
are cross-fitted by fold; the test numbers, where solution.csv exists, only score.

`antispoof train` refreshes the file whenever a fold finishes, `antispoof calibrate` fits it for
experiments trained before, and `antispoof report` shows it. It records the folds it was fitted
on, so `is_current` can tell when more have finished since, and each fold's own map (fitted on that
fold's OOF alone, `by_fold`): one map serves every fold model only if their score scales agree,
and the spread of those slopes shows when they do not. Decision thresholds are stored on
the LLR scale: `threshold` is the Bayes threshold of the ASVspoof 5 DCF (the decision an LLR
is made for), with the OOF EER and F1-optimal (spoof positive) thresholds beside it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from antispoof.data.manifest import load_solution
from antispoof.inference.fold_scale import DEFAULT as DEFAULT_ALIGN
from antispoof.inference.fold_scale import check_mode, scale_of
from antispoof.metrics.calibration import Calibration, calibrate, fit, load, quality, save, summary_row
from antispoof.metrics.detection import best_f1_threshold, bonafide_mask, compute_eer
from antispoof.runs import PREDICTIONS, calibration_path, experiments, finished_folds, read_predictions
from antispoof.schema import ManifestError, fail


def experiment_scores(exp_dir: Path, folds: dict[int, Path], align: str = DEFAULT_ALIGN
                      ) -> tuple[pd.DataFrame, pd.Series]:
    """OOF rows (utt_id, fold, score, label) of the given folds, and the fold-averaged test score by
    utt_id, each fold model's scores first mapped to the common scale `align` names (inference.fold_scale)."""
    raw_tests = {k: read_predictions(d, "test", ["utt_id", "score"]) for k, d in folds.items()}
    scales = {k: scale_of(t, align) for k, t in raw_tests.items()}  # each test table read once
    oof = pd.concat([scales[k].apply(read_predictions(d, "oof", ["utt_id", "score", "label"])).assign(fold=k)
                     for k, d in folds.items()], ignore_index=True)
    if oof["utt_id"].duplicated().any():
        fail(exp_dir, f"utt_id '{oof['utt_id'][oof['utt_id'].duplicated()].iloc[0]}' is OOF in two folds")
    tests = {folds[k]: scales[k].apply(t).set_index("utt_id")["score"] for k, t in raw_tests.items()}
    first_dir, first = next(iter(tests.items()))
    for d, t in tests.items():
        if t.index.duplicated().any() or set(t.index) != set(first.index):
            fail(d / PREDICTIONS["test"], f"test ids differ from {first_dir / PREDICTIONS['test']}")
    test = pd.concat([t.loc[first.index] for t in tests.values()], axis=1).mean(axis=1)
    return oof, test


def _test_labels(data_dir, ids: pd.Index) -> np.ndarray | None:
    """Hidden test labels in `ids` order where the data set has solution.csv (to score, never to fit)."""
    if data_dir is None or not (Path(data_dir) / "solution.csv").is_file():
        return None
    solution = load_solution(data_dir)[0].set_index("utt_id")["label"]
    missing = ids.difference(solution.index)
    if len(missing):
        fail(Path(data_dir) / "solution.csv", f"{len(missing)} predicted test clip(s) missing, e.g. '{missing[0]}'")
    return solution.loc[ids].to_numpy()


def _llr_thresholds(llr: np.ndarray, labels) -> dict:
    bona = bonafide_mask(labels)
    return {"eer": compute_eer(llr[bona], llr[~bona])[1], "f1": best_f1_threshold(llr, labels)["threshold"]}


def fold_maps(oof: pd.DataFrame, prior: float | None = None) -> dict[str, dict]:
    """Each fold model's own map on its own OOF clips, with the Cllr it reaches there (in-sample:
    a diagnostic of how far the fold models' scales differ, never applied; keys as in JSON)."""
    maps = {}
    for k, rows in oof.groupby("fold"):
        labels = rows["label"].to_numpy()
        if np.unique(bonafide_mask(labels)).size < 2:
            continue
        scores = rows["score"].to_numpy(float)
        own = fit(scores, labels, prior)
        maps[str(k)] = {"slope": own.slope, "offset": own.offset, "cllr": quality(own.apply(scores), labels)["cllr"]}
    return maps


def calibrate_experiment(exp_dir: Path, data_dir=None, prior: float | None = None, write: bool = True,
                         align: str = DEFAULT_ALIGN) -> Calibration:
    """Fit an experiment's calibration on its finished folds and write calibration.json beside them
    (`write=False`: only return it, for a reader that must not write into the fold outputs)."""
    exp_dir = Path(exp_dir)
    folds = finished_folds(exp_dir)
    if not folds:
        fail(exp_dir, "no finished folds to calibrate (a fold is finished once its metrics.json is written)")
    oof, test = experiment_scores(exp_dir, folds, check_mode(align, exp_dir))
    labels = oof["label"].to_numpy()
    info = {"system": exp_dir.name, "kind": "experiment", "dataset": exp_dir.parent.name, "folds": list(folds),
            "score": "score", "align_folds": align,
            "fitted_on": "OOF of the finished folds (each fold model on the common scale), concatenated",
            "applies_to": "the test score averaged over the fold models on that scale", "n_test": int(len(test))}
    try:
        cal, oof_llr, _ = calibrate(oof["score"].to_numpy(float), labels, oof["fold"].to_numpy(),
                                    test.to_numpy(float), _test_labels(data_dir, test.index), prior, info)
    except ManifestError:
        raise
    except ValueError as err:  # one class only in the OOF rows, a bad prior, non-finite scores
        fail(exp_dir, f"cannot calibrate: {err}")
    cal.info.update({"threshold": cal.info["bayes_threshold"], "threshold_rule": "bayes",
                     "llr_thresholds": _llr_thresholds(oof_llr, labels), "by_fold": fold_maps(oof, prior)})
    if write:
        save(cal, calibration_path(exp_dir))
    return cal


def refresh(exp_dir: Path, data_dir=None) -> Calibration | None:
    """calibrate_experiment for the fold runner: a calibration that cannot be fitted (one class
    only in the finished OOF) is reported, never fatal to the training run that just finished."""
    try:
        cal = calibrate_experiment(exp_dir, data_dir)
    except ValueError as err:  # ManifestError is one
        print(f"calibration of {exp_dir} skipped: {err}")
        return None
    print(f"calibration: {calibration_path(exp_dir)} (folds {cal.info['folds']})")
    return cal


def read_calibration(exp_dir: Path) -> Calibration | None:
    path = calibration_path(exp_dir)
    return load(path) if path.is_file() else None


def is_current(cal: Calibration, exp_dir: Path) -> bool:
    """Was the calibration fitted on exactly the folds the experiment has finished now?"""
    return sorted(cal.info.get("folds", [])) == list(finished_folds(exp_dir))


def calibration_rows(exp_dirs) -> pd.DataFrame:
    """One row per experiment with a calibration.json: the map and Cllr / actDCF before -> after."""
    rows = []
    for exp_dir in exp_dirs:
        cal = read_calibration(exp_dir)
        if cal is not None:
            folds = " ".join(map(str, cal.info.get("folds", [])))
            by_fold = cal.info.get("by_fold", {})
            rows.append({"experiment": Path(exp_dir).name,
                         "folds": folds + ("" if is_current(cal, exp_dir) else " (stale)"), **summary_row(cal),
                         "slope by fold": " ".join(f"{m['slope']:.3g}" for m in by_fold.values()) or "-"})
    return pd.DataFrame(rows)


def calibrate_all(root: Path, data_dir=None, pattern: str = "*", prior: float | None = None,
                  align: str = DEFAULT_ALIGN) -> pd.DataFrame:
    """Calibrate every experiment under <output_root>/<dataset> matching the glob that has finished folds."""
    dirs = [d for d in experiments(root, pattern) if finished_folds(d)]
    if not dirs:
        fail(root, f"no experiment matching '{pattern}' has finished folds")
    for d in dirs:
        calibrate_experiment(d, data_dir, prior, align=align)
    return calibration_rows(dirs)
