"""Honest OOF numbers for anything fitted on OOF: fit on the other folds, predict the held-out one.

Every ensemble system (a normalised single model, a vote, a fusion, a stacker) learns
something from OOF labels: a calibration, weights, a threshold, trees. Scoring it on the
same OOF clips would flatter it, so each OOF fold is predicted by the system fitted on the
other folds only, with the fold's decisions taken at that system's own threshold. The test
split is predicted by the system fitted on all OOF clips, as the submission is.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from antispoof.ensemble.tables import Ensemble
from antispoof.ensemble.thresholds import eer_threshold, fit_threshold
from antispoof.schema import fail


class Fitted(Protocol):
    threshold: float       # decision threshold (score < threshold -> spoof)
    eer_threshold: float

    def score(self, ens: Ensemble, part: str, rows: np.ndarray | None = None) -> np.ndarray: ...


class System(Protocol):
    name: str

    def fit(self, ens: Ensemble, rows: np.ndarray) -> Fitted: ...


@dataclass
class Thresholds:
    """A fitted system's two thresholds, from scores it did not overfit (in-sample for a few
    weights, inner-CV predictions for a learned fusion)."""

    threshold: float
    eer_threshold: float

    @classmethod
    def fit(cls, scores, labels, rule: str = "f1", prior: float | None = None) -> "Thresholds":
        return cls(fit_threshold(scores, labels, rule, prior), eer_threshold(scores, labels))


@dataclass
class Outcome:
    """A system's honest OOF scores and decisions, and its final test scores and threshold."""

    name: str
    oof: np.ndarray
    oof_spoof: np.ndarray
    test: np.ndarray
    threshold: float
    eer_threshold: float
    fitted: Any

    @property
    def test_spoof(self) -> np.ndarray:
        return self.test < self.threshold


def select(values, rows: np.ndarray | None):
    """values[rows] for an array or a DataFrame (positional), all of them when rows is None."""
    if rows is None:
        return values
    return values.iloc[np.flatnonzero(rows)] if hasattr(values, "iloc") else values[rows]


def cross_fit(ens: Ensemble, system: System) -> Outcome:
    """OOF scores of `system` fold by fold (fitted without that fold), then the final fit."""
    if len(ens.folds) < 2:
        fail(ens.data_dir, f"{system.name}: needs OOF predictions of at least 2 folds (have {ens.folds})")
    fold_of = ens.oof["fold"].to_numpy()
    oof = np.full(len(fold_of), np.nan)
    spoof = np.zeros(len(fold_of), dtype=bool)
    for fold in ens.folds:
        held = fold_of == fold
        fitted = system.fit(ens, ~held)
        oof[held] = fitted.score(ens, "oof", held)
        spoof[held] = oof[held] < fitted.threshold
    final = system.fit(ens, np.ones(len(fold_of), dtype=bool))
    return Outcome(system.name, oof, spoof, final.score(ens, "test"), final.threshold, final.eer_threshold, final)
