"""Voting over normalised model scores: soft (weighted mean) and hard (majority of decisions).

* soft: the weighted mean of the normalised scores; weights are searched on OOF (equal
  weights, each model alone, and `trials` Dirichlet(1) draws with a fixed seed; the best
  OOF EER or F1 wins, the earliest candidate on a tie, so equal weights win ties).
* hard: every model cuts at one common threshold (fitted on all models' normalised OOF
  scores pooled), then the majority decides.
* strictness: every model cuts at its own OOF threshold (F1-optimal with the expected prior,
  or its EER point), as in voting over "models of different strictness", then the majority.
A hard vote is also a score, so it can be ranked for EER:
    votes for bona fide + 0.5 + 0.49 tanh(mean margin),   margin = score - the model's threshold,
which stays inside (k, k + 1) for k bona fide votes. Its fixed threshold n/2 + 0.5 gives the
majority; an even split (n/2 votes each way) goes to the side of the mean margin, and an
exactly zero mean margin counts as bona fide (the rule "score < threshold -> spoof").
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from antispoof.ensemble.crossfit import Thresholds, select
from antispoof.ensemble.normalise import Normaliser
from antispoof.ensemble.tables import Ensemble
from antispoof.ensemble.thresholds import f1_threshold, fit_threshold
from antispoof.metrics.detection import compute_eer

MODES = ("soft", "hard", "strictness")


# ---- the maths ------------------------------------------------------------------------------

def weighted_mean(scores: np.ndarray, weights) -> np.ndarray:
    w = np.asarray(weights, dtype=float)
    return scores @ (w / w.sum())


def objective_value(scores, bonafide: np.ndarray, objective: str = "eer", prior: float | None = None) -> float:
    """Higher is better: -EER, or the best F1 (spoof positive, optional test prior)."""
    if objective == "eer":
        return -compute_eer(scores[bonafide], scores[~bonafide])[0]
    if objective == "f1":
        return f1_threshold(scores, np.where(bonafide, "bonafide", "spoof"), prior)["f1"]
    raise ValueError(f"vote objective must be eer or f1, not {objective!r}")


def candidate_weights(n_models: int, trials: int, seed: int) -> np.ndarray:
    """Equal weights first, then each model alone, then Dirichlet(1) draws (reproducible)."""
    rng = np.random.default_rng(seed)
    return np.vstack([np.full(n_models, 1 / n_models), np.eye(n_models),
                      rng.dirichlet(np.ones(n_models), size=trials)])


def search_weights(scores: np.ndarray, bonafide: np.ndarray, objective: str = "eer", trials: int = 2000,
                   seed: int = 0, prior: float | None = None) -> tuple[np.ndarray, float]:
    """The candidate weight vector with the best OOF objective, and that value."""
    candidates = candidate_weights(scores.shape[1], trials, seed)
    values = [objective_value(scores @ w, bonafide, objective, prior) for w in candidates]
    best = int(np.argmax(values))  # first maximum: equal weights win a tie
    return candidates[best], float(values[best])


def majority_score(scores: np.ndarray, thresholds) -> np.ndarray:
    """Hard-vote score: bona fide votes, with the mean margin ordering clips within a vote count."""
    margins = scores - np.asarray(thresholds, dtype=float)
    votes = (margins >= 0).sum(axis=1)
    return votes + 0.5 + 0.49 * np.tanh(margins.mean(axis=1))


def majority_threshold(n_models: int) -> float:
    """Majority rule on majority_score: spoof when fewer than half vote bona fide (ties above)."""
    return n_models / 2 + 0.5


# ---- systems ----------------------------------------------------------------------------------

def fit_normalisers(ens: Ensemble, rows: np.ndarray, cfg) -> dict[str, Normaliser]:
    bona = ens.bonafide[rows]
    return {name: Normaliser(cfg.method, cfg.calibration_c).fit(select(t.oof["score"].to_numpy(float), rows), bona)
            for name, t in ens.models.items()}


def normalised(ens: Ensemble, part: str, rows, normalisers: dict[str, Normaliser],
               names: list[str] | None = None) -> np.ndarray:
    """(clips x models) normalised utterance scores of a part's rows."""
    names = names or ens.names
    return np.column_stack([normalisers[n].transform(select(getattr(ens.models[n], part)["score"].to_numpy(float), rows))
                            for n in names])


def _labels(ens: Ensemble, rows) -> np.ndarray:
    return select(ens.oof["label"].to_numpy(), rows)


@dataclass
class FittedScores:
    """A fitted linear system: normalisers, weights over models, thresholds."""

    normalisers: dict[str, Normaliser]
    names: list[str]
    weights: np.ndarray
    threshold: float
    eer_threshold: float
    model_thresholds: np.ndarray | None = None  # hard votes only

    def score(self, ens: Ensemble, part: str, rows=None) -> np.ndarray:
        s = normalised(ens, part, rows, self.normalisers, self.names)
        if self.model_thresholds is not None:
            return majority_score(s, self.model_thresholds)
        return weighted_mean(s, self.weights)


class SingleModel:
    """One model, normalised as the vote sees it: its row in every results table."""

    def __init__(self, name: str, cfg):
        self.name, self.cfg = name, cfg

    def fit(self, ens: Ensemble, rows: np.ndarray) -> FittedScores:
        norms = {self.name: fit_normalisers(ens, rows, self.cfg.normalise)[self.name]}
        s = normalised(ens, "oof", rows, norms, [self.name])[:, 0]
        t = Thresholds.fit(s, _labels(ens, rows), self.cfg.threshold.rule, self.cfg.threshold.prior)
        return FittedScores(norms, [self.name], np.ones(1), t.threshold, t.eer_threshold)


class SoftVote:
    name = "vote:soft"

    def __init__(self, cfg):
        self.cfg = cfg

    def fit(self, ens: Ensemble, rows: np.ndarray) -> FittedScores:
        v = self.cfg.vote
        norms = fit_normalisers(ens, rows, self.cfg.normalise)
        s = normalised(ens, "oof", rows, norms)
        if v.weights == "search":
            weights, _ = search_weights(s, ens.bonafide[rows], v.objective, v.trials, self.cfg.seed,
                                        self.cfg.threshold.prior)
        elif v.weights == "equal":
            weights = np.full(s.shape[1], 1 / s.shape[1])
        else:
            raise ValueError(f"vote.weights must be search or equal, not {v.weights!r}")
        t = Thresholds.fit(weighted_mean(s, weights), _labels(ens, rows), self.cfg.threshold.rule,
                           self.cfg.threshold.prior)
        return FittedScores(norms, ens.names, weights, t.threshold, t.eer_threshold)


class HardVote:
    """Majority of per-model decisions; `own_thresholds` makes it the strictness vote."""

    def __init__(self, cfg, own_thresholds: bool):
        self.cfg, self.own = cfg, own_thresholds
        self.name = "vote:strictness" if own_thresholds else "vote:hard"

    def _model_thresholds(self, s: np.ndarray, labels: np.ndarray) -> np.ndarray:
        rule, prior = self.cfg.vote.model_rule, self.cfg.threshold.prior
        if self.own:
            return np.array([fit_threshold(s[:, j], labels, rule, prior) for j in range(s.shape[1])])
        common = fit_threshold(s.T.ravel(), np.tile(labels, s.shape[1]), rule, prior)
        return np.full(s.shape[1], common)

    def fit(self, ens: Ensemble, rows: np.ndarray) -> FittedScores:
        norms = fit_normalisers(ens, rows, self.cfg.normalise)
        s = normalised(ens, "oof", rows, norms)
        labels = _labels(ens, rows)
        thresholds = self._model_thresholds(s, labels)
        eer_thr = Thresholds.fit(majority_score(s, thresholds), labels, "eer").eer_threshold
        return FittedScores(norms, ens.names, np.full(s.shape[1], 1 / s.shape[1]),
                            majority_threshold(s.shape[1]), eer_thr, thresholds)


def vote_systems(cfg) -> list:
    """The three votes, the submitted one (cfg.vote.mode) first."""
    if cfg.vote.mode not in MODES:
        raise ValueError(f"vote.mode must be one of {', '.join(MODES)}, not {cfg.vote.mode!r}")
    systems = {"soft": SoftVote(cfg), "hard": HardVote(cfg, False), "strictness": HardVote(cfg, True)}
    return [systems[cfg.vote.mode], *(s for m, s in systems.items() if m != cfg.vote.mode)]
