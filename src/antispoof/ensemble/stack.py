"""Learned fusion of the models: a LightGBM stacker and the logistic-regression baseline.

Both are fitted inside crossfit.cross_fit, so the OOF prediction of fold k comes from a
fusion trained on the other folds only (the outer loop: the training folds of folds.csv).
Inside one outer training part, an inner grouped CV (speakers never straddle a split, as in
the outer folds) gives predictions the fusion did not train on: LightGBM takes its number of
trees from their early stopping, and both take their decision thresholds from them. Every
label-fitted piece of an inner fit (the segment thresholds behind `seg_below`, the runs and
transitions) comes from its inner training rows alone. The fitted model is then refitted on
the whole outer training part.
Scores are log-odds of bona fide (higher = more bona fide), like every other score here.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import lightgbm as lgb
import numpy as np
from omegaconf import OmegaConf
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from antispoof.ensemble.crossfit import Thresholds, select
from antispoof.ensemble.features import build_features
from antispoof.ensemble.tables import Ensemble
from antispoof.ensemble.thresholds import eer_threshold
from antispoof.schema import fail


def inner_splits(ens: Ensemble, rows: np.ndarray, n_splits: int, seed: int) -> list:
    """Grouped, stratified splits of the outer training rows (positions within those rows)."""
    groups = select(ens.oof["group"].to_numpy(), rows)
    if len(set(groups)) < n_splits:
        fail(ens.data_dir, f"inner CV needs {n_splits} speaker groups, the training part has {len(set(groups))}")
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # "least populated class" warnings: small folds are expected
        warnings.simplefilter("ignore", UserWarning)
        return list(splitter.split(np.zeros(len(groups)), ens.bonafide[rows], groups))


def seg_thresholds(ens: Ensemble, rows: np.ndarray) -> dict[str, float]:
    """Each model's EER threshold of its min-pooled segment score, from training rows only."""
    labels = select(ens.oof["label"].to_numpy(), rows)
    return {name: eer_threshold(select(t.oof["score_seg_min"].to_numpy(float), rows), labels)
            for name, t in ens.models.items()}


# ---- logistic-regression fusion (the baseline) ---------------------------------------------

@dataclass
class FittedFusion:
    model: object
    threshold: float
    eer_threshold: float

    def score(self, ens: Ensemble, part: str, rows=None) -> np.ndarray:
        return self.model.decision_function(select(ens.scores(part), rows))


class LogisticFusion:
    """Linear fusion of the models' utterance scores (standardised), the classic score fusion."""

    name = "fusion:logreg"

    def __init__(self, cfg):
        self.cfg = cfg

    def fit(self, ens: Ensemble, rows: np.ndarray) -> FittedFusion:
        x, y = ens.scores("oof")[rows], ens.bonafide[rows]
        model = make_pipeline(StandardScaler(), LogisticRegression(C=self.cfg.stack.logreg_c))
        splits = inner_splits(ens, rows, self.cfg.stack.inner_folds, self.cfg.seed)
        inner = cross_val_predict(model, x, y, cv=splits, method="decision_function")
        t = Thresholds.fit(inner, select(ens.oof["label"].to_numpy(), rows), self.cfg.threshold.rule,
                           self.cfg.threshold.prior)
        return FittedFusion(model.fit(x, y), t.threshold, t.eer_threshold)


# ---- LightGBM stacker ---------------------------------------------------------------------------

@dataclass
class FittedStack:
    model: lgb.LGBMClassifier
    seg_thresholds: dict[str, float]
    quantiles: list[float]
    threshold: float
    eer_threshold: float
    n_trees: int
    inner_scores: np.ndarray
    per_fold_test: bool = True

    def features(self, ens: Ensemble, part: str, rows=None):
        return build_features(ens, part, rows, self.seg_thresholds, self.quantiles)

    def score(self, ens: Ensemble, part: str, rows=None) -> np.ndarray:
        """Log-odds bona fide. Test clips: by default the mean of the scores on each fold model's
        own test features, since the trees learned thresholds on single-model OOF features and
        averaging fold models shrinks segment statistics (max, std, quantiles) on test."""
        if part == "test" and self.per_fold_test:
            return np.mean([self.model.predict(self.features(ens.fold_view(k), part, rows), raw_score=True)
                            for k in ens.folds], axis=0)
        return self.model.predict(self.features(ens, part, rows), raw_score=True)


class LightGBMStack:
    """Gradient-boosted trees on the per-utterance features of every model (features.py)."""

    name = "stack:lightgbm"

    def __init__(self, cfg):
        self.cfg = cfg
        self.params = OmegaConf.to_container(cfg.stack.lightgbm, resolve=True)
        if cfg.stack.test_features not in ("per_fold", "averaged"):
            raise ValueError(f"stack.test_features must be per_fold or averaged, not {cfg.stack.test_features!r}")

    def _classifier(self, **overrides) -> lgb.LGBMClassifier:
        return lgb.LGBMClassifier(**{**self.params, "random_state": self.cfg.seed, **overrides})

    def _inner(self, ens: Ensemble, rows: np.ndarray, y: np.ndarray, quantiles) -> tuple[np.ndarray, int]:
        """Inner-CV scores (each from trees and segment thresholds that did not see the clip's
        label) and the mean early-stopping point."""
        positions = np.flatnonzero(rows)

        def mask(idx):
            out = np.zeros(len(rows), dtype=bool)
            out[positions[idx]] = True
            return out

        scores, best = np.zeros(len(y)), []
        for train_idx, valid_idx in inner_splits(ens, rows, self.cfg.stack.inner_folds, self.cfg.seed):
            train_idx, valid_idx = np.sort(train_idx), np.sort(valid_idx)  # features come in row order
            thresholds = seg_thresholds(ens, mask(train_idx))
            x_train = build_features(ens, "oof", mask(train_idx), thresholds, quantiles)
            x_valid = build_features(ens, "oof", mask(valid_idx), thresholds, quantiles)
            model = self._classifier().fit(
                x_train, y[train_idx], eval_X=(x_valid,), eval_y=(y[valid_idx],),
                callbacks=[lgb.early_stopping(self.cfg.stack.early_stopping_rounds, verbose=False)])
            n = max(1, int(model.best_iteration_ or model.n_estimators))
            scores[valid_idx] = model.predict(x_valid, raw_score=True, num_iteration=n)
            best.append(n)
        return scores, max(1, int(round(np.mean(best))))

    def fit(self, ens: Ensemble, rows: np.ndarray) -> FittedStack:
        try:
            return self._fit(ens, np.asarray(rows, dtype=bool))
        except lgb.basic.LightGBMError as err:  # its message ends with the C++ source location
            problem = str(err).split(" at /")[0].strip()
            raise ValueError(f"stack.lightgbm: LightGBM refused the settings: {problem}") from None

    def _fit(self, ens: Ensemble, rows: np.ndarray) -> FittedStack:
        quantiles = list(self.cfg.stack.quantiles)
        y = ens.bonafide[rows].astype(int)
        inner, n_trees = self._inner(ens, rows, y, quantiles)
        thresholds = seg_thresholds(ens, rows)
        x = build_features(ens, "oof", rows, thresholds, quantiles)
        t = Thresholds.fit(inner, select(ens.oof["label"].to_numpy(), rows), self.cfg.threshold.rule,
                           self.cfg.threshold.prior)
        model = self._classifier(n_estimators=n_trees).fit(x, y)
        return FittedStack(model, thresholds, quantiles, t.threshold, t.eer_threshold, n_trees, inner,
                           self.cfg.stack.test_features == "per_fold")
