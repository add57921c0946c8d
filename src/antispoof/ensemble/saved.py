"""A fitted ensemble on disk, so new audio gets exactly what the submission's test clips got.

The ensemble run fits its systems on OOF and scores the test split in memory; `antispoof predict
--ensemble` has to re-apply the submitted one to new clips. `save` writes, beside the submission
files, `<stem>_model.json`: the submitted system (a vote's normalisers, weights and thresholds; a
fusion's scaler and logistic regression; a stacker's segment thresholds and quantiles, its trees in
`<stem>_lightgbm.txt`, LightGBM's own text format), the soft vote the segment regions are fused
with, the OOF segment threshold, and what it was fitted on: data set, output root, experiments,
folds, how fold models were put on one scale (`align_folds`), each model's segment hop and a
fingerprint of every fold's test.parquet (a fold retrained since would give other scores, so
`load` refuses it; the fold scales are recomputed from those same files).

sklearn estimators are stored as their constructor parameters plus their fitted attributes (the
public `*_` ones, arrays with their dtype) and rebuilt by setting them back, so the rebuilt
objects run sklearn's own transform / decision_function: the arithmetic, not a re-implementation
of it, is what makes the scores equal. `load` returns the same fitted objects the ensemble run
held (vote.FittedScores, stack.FittedFusion, stack.FittedStack); `SavedEnsemble.score` calls their
own `score` on an Ensemble whose test part holds the new clips.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from antispoof.ensemble.crossfit import Outcome
from antispoof.ensemble.normalise import Normaliser
from antispoof.ensemble.segments import fuse_segments
from antispoof.ensemble.stack import FittedFusion, FittedStack
from antispoof.ensemble.tables import Ensemble
from antispoof.ensemble.vote import FittedScores
from antispoof.runs import PREDICTIONS
from antispoof.schema import ManifestError, fail
from antispoof.utils import write_json_atomic, write_text_atomic

VERSION = 1
MODEL_SUFFIX = "_model.json"
TREES_SUFFIX = "_lightgbm.txt"


# ---- sklearn estimators as JSON -------------------------------------------------------------------

def _encode(value):
    if isinstance(value, np.ndarray):
        return {"__array__": value.tolist(), "dtype": str(value.dtype), "shape": list(value.shape)}
    if isinstance(value, np.generic):
        return value.item()
    return value


def _decode(value):
    if isinstance(value, dict) and "__array__" in value:
        return np.asarray(value["__array__"], dtype=value["dtype"]).reshape(value["shape"])
    return value


def _estimator_classes() -> dict:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import QuantileTransformer, StandardScaler

    return {c.__name__: c for c in (LogisticRegression, Pipeline, QuantileTransformer, StandardScaler)}


def estimator_state(est) -> dict:
    """A fitted sklearn estimator (or Pipeline of them) as plain JSON values."""
    name = type(est).__name__
    if name not in _estimator_classes():
        raise TypeError(f"cannot save a fitted {name} (known: {', '.join(_estimator_classes())})")
    if name == "Pipeline":
        return {"class": name, "steps": [[step, estimator_state(e)] for step, e in est.steps]}
    fitted = {k: _encode(v) for k, v in vars(est).items() if k.endswith("_") and not k.startswith("_")}
    return {"class": name, "params": {k: _encode(v) for k, v in est.get_params(deep=False).items()},
            "fitted": fitted}


def estimator_from_state(state: dict):
    """The estimator `estimator_state` describes, fitted (attributes set back, nothing refitted)."""
    cls = _estimator_classes()[state["class"]]
    if state["class"] == "Pipeline":
        return cls([(step, estimator_from_state(s)) for step, s in state["steps"]])
    est = cls(**{k: _decode(v) for k, v in state["params"].items()})
    for k, v in state["fitted"].items():
        setattr(est, k, _decode(v))
    return est


def _normaliser_state(n: Normaliser) -> dict:
    return {"method": n.method, "calibration_c": n.calibration_c, "seed": n.seed, "prior_logit": n._prior_logit,
            "model": None if n._model is None else estimator_state(n._model)}


def _normaliser(state: dict) -> Normaliser:
    n = Normaliser(state["method"], state["calibration_c"], state["seed"])
    n._model = None if state["model"] is None else estimator_from_state(state["model"])
    n._prior_logit = float(state["prior_logit"])
    return n


def _scores_state(f: FittedScores) -> dict:
    return {"type": "scores", "names": list(f.names), "weights": _encode(np.asarray(f.weights, float)),
            "threshold": float(f.threshold), "eer_threshold": float(f.eer_threshold),
            "model_thresholds": None if f.model_thresholds is None else _encode(np.asarray(f.model_thresholds, float)),
            "normalisers": {name: _normaliser_state(f.normalisers[name]) for name in f.names}}


def _scores(state: dict) -> FittedScores:
    thresholds = state["model_thresholds"]
    return FittedScores({n: _normaliser(s) for n, s in state["normalisers"].items()}, list(state["names"]),
                        _decode(state["weights"]), float(state["threshold"]), float(state["eer_threshold"]),
                        None if thresholds is None else _decode(thresholds))


class Trees:
    """LightGBM trees read back from their text file, answering FittedStack's `predict` call."""

    def __init__(self, text: str):
        import lightgbm as lgb

        self.booster = lgb.Booster(model_str=text)

    def predict(self, x, raw_score: bool = False):
        return self.booster.predict(x, raw_score=raw_score)


# ---- the file ---------------------------------------------------------------------------------------

def fingerprint(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _system_state(fitted, trees_file: Path) -> dict:
    if isinstance(fitted, FittedScores):
        return _scores_state(fitted)
    if isinstance(fitted, FittedFusion):
        return {"type": "fusion", "model": estimator_state(fitted.model), "threshold": float(fitted.threshold),
                "eer_threshold": float(fitted.eer_threshold)}
    if isinstance(fitted, FittedStack):
        write_text_atomic(trees_file, fitted.model.booster_.model_to_string())
        return {"type": "lightgbm", "trees": trees_file.name, "trees_sha256": fingerprint(trees_file),
                "seg_thresholds": {k: float(v) for k, v in fitted.seg_thresholds.items()},
                "quantiles": [float(q) for q in fitted.quantiles], "threshold": float(fitted.threshold),
                "eer_threshold": float(fitted.eer_threshold), "n_trees": int(fitted.n_trees),
                "per_fold_test": bool(fitted.per_fold_test)}
    raise TypeError(f"cannot save a fitted {type(fitted).__name__}")


def save(path, kind: str, ens: Ensemble, output_root, chosen: Outcome, soft: FittedScores, segments: dict,
         calibration: Path) -> Path:
    """`<stem>_model.json` (and `<stem>_lightgbm.txt` for a stacker) beside the submission files.

    `segments`: the OOF segment threshold and the region knobs (merge_gap_s, min_region_s)."""
    path = Path(path)
    trees_file = path.with_name(path.name.removesuffix(MODEL_SUFFIX) + TREES_SUFFIX)
    root = Path(output_root) / ens.dataset
    state = {"version": VERSION, "kind": kind, "system": chosen.name, "dataset": ens.dataset,
             "data_dir": str(ens.data_dir), "output_root": str(output_root), "experiments": ens.names,
             "folds": list(ens.folds), "align_folds": ens.align,
             "hops": {n: float(t.hop) for n, t in ens.models.items()},
             "test_sha256": {n: {str(k): fingerprint(root / n / f"fold{k}" / PREDICTIONS["test"]) for k in ens.folds}
                             for n in ens.names},
             "fitted": _system_state(chosen.fitted, trees_file), "soft": _scores_state(soft),
             "segments": {k: float(v) for k, v in segments.items()}, "calibration": Path(calibration).name}
    write_json_atomic(path, state)
    return path


@dataclass
class SavedEnsemble:
    """A fitted ensemble read back: the submitted system, the soft vote of the regions, thresholds."""

    path: Path
    state: dict
    fitted: object
    soft: FittedScores

    @property
    def experiments(self) -> list[str]:
        return list(self.state["experiments"])

    @property
    def folds(self) -> list[int]:
        return [int(k) for k in self.state["folds"]]

    @property
    def threshold(self) -> float:
        """The decision threshold of the submitted labels (score < threshold -> spoof)."""
        return float(self.fitted.threshold)

    @property
    def align(self) -> str:
        """How the fold models' scores were brought to one scale (inference.fold_scale; older files: none)."""
        return str(self.state.get("align_folds", "none"))

    @property
    def calibration_path(self) -> Path:
        return self.path.with_name(self.state["calibration"])

    def experiment_dir(self, name: str) -> Path:
        return Path(self.state["output_root"]) / self.state["dataset"] / name

    def check_folds(self) -> None:
        """Refuse fold outputs that changed since the fit (retrained folds score differently)."""
        for name, folds in self.state["test_sha256"].items():
            for k, digest in folds.items():
                table = self.experiment_dir(name) / f"fold{k}" / PREDICTIONS["test"]
                if not table.is_file() or fingerprint(table) != digest:
                    fail(table, f"changed since {self.path.name} was fitted (retrained?); run the ensemble again")

    def score(self, ens: Ensemble) -> np.ndarray:
        """The submitted system's scores of ens.test (higher = more bona fide)."""
        return np.asarray(self.fitted.score(ens, "test"), dtype=float)

    def segments(self, ens: Ensemble) -> tuple[list[np.ndarray], float]:
        """Fused segment scores of ens.test at the finest hop, as the submission's regions are."""
        soft = self.soft
        return fuse_segments(ens, "test", None, soft.normalisers, soft.weights, soft.names)


def model_path(name, submissions="submissions") -> Path:
    """`--ensemble NAME`: a `<stem>_model.json` path, a path to a stem (submissions/demo_vote), or a
    bare stem looked up in the submissions folder."""
    path = Path(name)
    if path.suffix == ".json":
        return path
    if path.parent != Path("."):
        return path.with_name(path.name + MODEL_SUFFIX)
    return Path(submissions) / f"{name}{MODEL_SUFFIX}"


def load(path) -> SavedEnsemble:
    """A saved ensemble; a missing or malformed file fails in one line naming it."""
    path = Path(path)
    if not path.is_file():
        fail(path, "no saved ensemble here (run ensemble/vote.py or ensemble/stack.py, which write it)")
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
        if state.get("version") != VERSION:
            fail(path, f"saved ensemble version {state.get('version')!r}, this code reads {VERSION}")
        f = state["fitted"]
        if f["type"] == "scores":
            fitted = _scores(f)
        elif f["type"] == "fusion":
            fitted = FittedFusion(estimator_from_state(f["model"]), float(f["threshold"]), float(f["eer_threshold"]))
        elif f["type"] == "lightgbm":
            trees = path.with_name(f["trees"])
            if not trees.is_file() or fingerprint(trees) != f["trees_sha256"]:
                fail(trees, f"missing or not the trees {path.name} was saved with")
            fitted = FittedStack(Trees(trees.read_text(encoding="utf-8")), f["seg_thresholds"], f["quantiles"],
                                 float(f["threshold"]), float(f["eer_threshold"]), int(f["n_trees"]), np.zeros(0),
                                 bool(f["per_fold_test"]))
        else:
            fail(path, f"unknown system type {f['type']!r}")
        soft = _scores(state["soft"])
    except ManifestError:
        raise
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        fail(path, f"malformed saved ensemble ({type(err).__name__}: {(str(err).splitlines() or [''])[0]})")
    return SavedEnsemble(path, state, fitted, soft)
