"""The utterance score from segment scores, the pooling rule chosen on OOF (one row per model).

A partial spoof holds a few spoofed words in bona fide speech: an utterance head that averages
over the clip dilutes them, while the segment branch (MHFA's and SELCNN-MTL's alike) scores each
stretch. How to pool those segment scores into one clip score is a choice the data should make:

  utterance     the model's own utterance score (no pooling)
  min           the least bona fide segment (the min rule of the PartialSpoof papers)
  lowest_<p>    the mean of the lowest p % of segments (top-k mean, k = ceil(p % of n))
  softmin_<t>   attention pooling with the scores as their own keys: weights softmax(-s / tau),
                tau = t x the spread of the model's segment scores; t -> 0 is min, t -> inf the mean
  mean          the mean segment

`PooledModel` is a cross-fitted system: its fit picks, on the OOF rows it is given, the rule with
the lowest EER, so the held-out fold's figure is scored by a rule chosen without it. The pooled
scores of each fold model are put on one scale as the utterance scores are (inference.fold_scale:
median and IQR of that fold model's pooled test scores), and the test score is the mean over fold
models, so a pooled row compares with the single-model rows and its condition columns show where
pooling helps (partial spoofs) and where it costs (whole-clip attacks).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from antispoof.ensemble.crossfit import Thresholds, select
from antispoof.ensemble.normalise import Normaliser
from antispoof.ensemble.tables import Ensemble
from antispoof.inference.fold_scale import robust_scale
from antispoof.metrics.detection import compute_eer

DEFAULT_RULES = ("utterance", "min", "lowest_10", "lowest_25", "softmin_0.5", "softmin_2", "mean")


# ---- the maths --------------------------------------------------------------------------------

def lowest_mean(scores: np.ndarray, share: float) -> float:
    """Mean of the ceil(share x n) lowest scores (at least one)."""
    k = max(1, math.ceil(share * scores.size))
    return float(np.mean(np.partition(scores, k - 1)[:k]))


def softmin_pool(scores: np.ndarray, tau: float) -> float:
    """sum softmax(-s / tau) s: a soft minimum, each segment weighted by how spoof-like it is."""
    z = -scores / tau
    w = np.exp(z - z.max())
    return float(np.dot(w, scores) / w.sum())


def pool(scores, rule: str, spread: float = 1.0) -> float:
    """One clip's pooled score under `rule` (not 'utterance'); `spread` scales softmin's tau."""
    s = np.asarray(scores, dtype=np.float64)
    s = s[np.isfinite(s)]
    if s.size == 0:
        return float("nan")
    if rule == "min":
        return float(s.min())
    if rule == "mean":
        return float(s.mean())
    name, _, value = rule.partition("_")
    if name == "lowest":
        return lowest_mean(s, float(value) / 100)
    if name == "softmin":
        return softmin_pool(s, float(value) * spread)
    raise ValueError(f"unknown pooling rule {rule!r} (utterance, min, mean, lowest_<percent>, softmin_<t>)")


def check_rules(rules) -> tuple[str, ...]:
    rules = tuple(str(r) for r in rules)
    for rule in rules:
        if rule != "utterance":
            pool([0.0, 1.0], rule)  # raises on an unknown rule
    if not rules:
        raise ValueError("pooling.rules is empty")
    return rules


def segment_spread(seg_scores) -> float:
    """Normal-consistent IQR of every segment score of a table (softmin's unit of tau)."""
    values = [np.asarray(s, dtype=np.float64).ravel() for s in seg_scores]
    flat = np.concatenate(values) if values else np.zeros(0)
    return robust_scale(flat)[1] if np.isfinite(flat).sum() >= 2 else 1.0


def pooled_column(table: pd.DataFrame, rule: str, spread: float) -> np.ndarray:
    """A table's pooled score per clip (the 'score' column itself for 'utterance')."""
    if rule == "utterance":
        return table["score"].to_numpy(float)
    return np.array([pool(s, rule, spread) for s in table["seg_scores"]])


def _standardise(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    centre, spread = robust_scale(reference)
    return (values - centre) / spread


# ---- the system ---------------------------------------------------------------------------------

@dataclass
class PooledScores:
    """One model's scores under each rule: OOF (fold models on one scale) and test (fold mean)."""

    oof: dict[str, np.ndarray]
    test: dict[str, np.ndarray]


def pooled_scores(ens: Ensemble, name: str, rules) -> PooledScores:
    """Every rule's OOF and test scores of one model. The OOF clips of fold k are put on fold model k's
    scale (from its own pooled test scores); 'utterance' is already on it (ensemble.tables)."""
    t = ens.models[name]
    fold_of = ens.oof["fold"].to_numpy()
    spread = segment_spread(t.oof["seg_scores"])
    oof, test = {}, {}
    for rule in rules:
        if rule == "utterance":
            oof[rule], test[rule] = t.oof["score"].to_numpy(float), t.test["score"].to_numpy(float)
            continue
        raw = pooled_column(t.oof, rule, spread)
        by_fold = {k: pooled_column(tab, rule, spread) for k, tab in t.test_by_fold.items()}
        out = np.full(raw.size, np.nan)
        for k, ref in by_fold.items():
            rows = fold_of == k
            out[rows] = _standardise(raw[rows], ref)
        oof[rule] = out
        test[rule] = np.mean([_standardise(v, v) for v in by_fold.values()], axis=0)
    return PooledScores(oof, test)


@dataclass
class FittedPooling:
    rule: str
    scores: PooledScores
    normaliser: Normaliser
    threshold: float
    eer_threshold: float

    def score(self, ens: Ensemble, part: str, rows=None) -> np.ndarray:
        values = self.scores.oof[self.rule] if part == "oof" else self.scores.test[self.rule]
        return self.normaliser.transform(select(values, rows))


class PooledModel:
    """One model's utterance score pooled from its segments, by the rule its OOF rows prefer."""

    def __init__(self, name: str, cfg, rules=DEFAULT_RULES):
        self.model, self.cfg, self.rules = name, cfg, check_rules(rules)
        self.name = f"pool:{name}"
        self._cache: tuple[int, PooledScores] | None = None

    def _scores(self, ens: Ensemble) -> PooledScores:
        if self._cache is None or self._cache[0] != id(ens):
            self._cache = (id(ens), pooled_scores(ens, self.model, self.rules))
        return self._cache[1]

    def fit(self, ens: Ensemble, rows: np.ndarray) -> FittedPooling:
        scores = self._scores(ens)
        bona = ens.bonafide[rows]
        eers = {r: compute_eer(v[rows][bona], v[rows][~bona])[0] for r, v in scores.oof.items()}
        rule = min(self.rules, key=lambda r: (eers[r], self.rules.index(r)))  # the first rule wins a tie
        norm = Normaliser(self.cfg.normalise.method, self.cfg.normalise.calibration_c)
        norm.fit(scores.oof[rule][rows], bona)
        t = Thresholds.fit(norm.transform(scores.oof[rule][rows]), select(ens.oof["label"].to_numpy(), rows),
                           self.cfg.threshold.rule, self.cfg.threshold.prior)
        return FittedPooling(rule, scores, norm, t.threshold, t.eer_threshold)


def pooling_systems(cfg, ens: Ensemble) -> list[PooledModel]:
    """A PooledModel per experiment when `pooling.enabled` (every rule of `pooling.rules`)."""
    p = cfg.get("pooling")
    if p is None or not p.get("enabled", False):
        return []
    return [PooledModel(name, cfg, p.get("rules", DEFAULT_RULES)) for name in ens.names]
