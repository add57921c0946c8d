"""Linear score calibration: any detector's score -> a natural-log likelihood ratio.

    llr(s) = slope * s + offset  ~  log p(s | bonafide) / p(s | spoof)

A raw score (a cosine, a log-odds with the training prior baked in, a vote count) orders clips
but says nothing about how strongly; actDCF thresholds at the Bayes point -log(beta) and Cllr
reads scores as LLRs, so both punish an uncalibrated score even when its EER is good. An affine
map is the standard back end (Brümmer's linear calibration, FoCal / BOSARIS): two parameters are
safely fitted on a few hundred OOF clips, and with slope >= 0 it keeps the ranking, so the EER
and minDCF of a system are unchanged (only its scale moves).

The fit minimises the prior-weighted cross-entropy of Brümmer and du Preez,

    C(a, b) = pi/N_b sum_bona log(1 + e^-(z)) + (1-pi)/N_s sum_spoof log(1 + e^z),
    z = a s + b + logit(pi),

so each class weighs what the prior says whatever the OOF class balance, and the LLR is z minus
the prior log-odds. With pi = 0.5 this is Cllr itself (in nats); the default pi is the effective
bona fide prior of the ASVspoof 5 DCF (Pspoof 0.05, Cmiss 1, Cfa 10: 0.655), whose Bayes
threshold on an LLR is exactly act_dcf's -log(beta), so the fit is tuned to the operating point
actDCF measures. If the scores really are two Gaussians of one variance, the true LLR is affine
and the fit recovers it for any pi.

Why scipy.optimize and not sklearn's LogisticRegression: the objective is a 2-parameter convex
function with a closed-form gradient, so L-BFGS-B minimises exactly it (class weights from the
prior, no hidden penalty, and a bound slope >= 0 that keeps the map monotone; a detector that
ranks backwards on OOF gets slope 0, "no evidence", rather than an inverted ranking), while
sklearn would need sample weights to emulate the prior and a version-dependent way to switch its
L2 penalty off. Scores are standardised for the solver and the map converted back; a tiny ridge
on the standardised slope (1e-6) keeps the fit finite when OOF classes separate perfectly.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from antispoof.metrics.detection import (C_FA, C_MISS, P_SPOOF, act_dcf, bayes_threshold, bonafide_mask, cllr,
                                         compute_eer, finite_scores, min_dcf)
from antispoof.schema import fail
from antispoof.utils import write_json_atomic

VERSION = 1
RIDGE = 1e-6


def effective_prior(p_spoof: float = P_SPOOF, c_miss: float = C_MISS, c_fa: float = C_FA) -> float:
    """P(bona fide) of the one-parameter application equivalent to (Pspoof, Cmiss, Cfa)."""
    bona, spoof = c_miss * (1 - p_spoof), c_fa * p_spoof
    return bona / (bona + spoof)


@dataclass
class Calibration:
    """A fitted affine map to LLRs, what it was fitted for, and how it changed the numbers.

    metrics: part (oof / test) -> before / after -> cllr, act_dcf, min_dcf, eer.
    info: free context written by the caller (system, folds, thresholds, ...).
    """

    slope: float
    offset: float
    prior: float
    n_bonafide: int
    n_spoof: int
    metrics: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)

    def apply(self, scores) -> np.ndarray:
        return self.slope * np.asarray(scores, dtype=np.float64) + self.offset

    def threshold(self, raw_threshold: float) -> float:
        """A decision threshold on the raw score, moved to the LLR scale (same decisions when slope > 0)."""
        return float(self.apply(raw_threshold))

    def to_dict(self) -> dict:
        return {"version": VERSION, "kind": "linear", **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict) -> "Calibration":
        return cls(float(d["slope"]), float(d["offset"]), float(d["prior"]), int(d["n_bonafide"]),
                   int(d["n_spoof"]), dict(d.get("metrics", {})), dict(d.get("info", {})))


# ---- fitting ----------------------------------------------------------------------------------

def _objective(params, x, y, weights, prior_logit):
    """Prior-weighted cross-entropy (nats) and its gradient in (a, b) on standardised scores."""
    from scipy.special import expit

    a, b = params
    z = a * x + b + prior_logit
    sign = np.where(y, -1.0, 1.0)  # bona fide pays log(1 + e^-z), spoof log(1 + e^z)
    loss = np.sum(weights * np.logaddexp(0.0, sign * z)) + RIDGE * a * a
    dz = weights * sign * expit(sign * z)
    return loss, np.array([np.sum(dz * x) + 2 * RIDGE * a, np.sum(dz)])


def fit(scores, labels, prior: float | None = None) -> Calibration:
    """The linear calibration of scores (higher = more bona fide) against their labels.

    labels: strings or 1 = bona fide / 0 = spoof; prior: P(bona fide) the fit is weighted for
    (default: effective_prior(), the ASVspoof 5 operating point).
    """
    from scipy.optimize import minimize

    s, y = finite_scores(scores), bonafide_mask(labels)
    if s.shape != y.shape:
        raise ValueError(f"{s.size} scores but {y.size} labels")
    n_bona, n_spoof = int(y.sum()), int((~y).sum())
    if not n_bona or not n_spoof:
        raise ValueError(f"calibration needs scores of both classes (got {n_bona} bona fide, {n_spoof} spoof)")
    prior = effective_prior() if prior is None else float(prior)
    if not 0 < prior < 1:
        raise ValueError(f"calibration prior must be a bona fide probability in (0, 1), not {prior}")
    centre, scale = float(s.mean()), float(s.std()) or 1.0
    x = (s - centre) / scale
    weights = np.where(y, prior / n_bona, (1 - prior) / n_spoof)
    result = minimize(_objective, x0=np.array([1.0, 0.0]), jac=True, method="L-BFGS-B",
                      args=(x, y, weights, math.log(prior / (1 - prior))), bounds=[(0.0, None), (None, None)])
    a, b = map(float, result.x)
    return Calibration(slope=a / scale, offset=b - a * centre / scale, prior=prior,
                       n_bonafide=n_bona, n_spoof=n_spoof)


def cross_fitted(scores, labels, folds, prior: float | None = None) -> np.ndarray:
    """LLRs of every clip from a calibration fitted without its fold: honest "after" numbers.

    With a single fold there is nothing to hold out, and the in-sample map is used.
    """
    s, folds = finite_scores(scores), np.asarray(folds)
    labels = np.asarray(labels)
    if np.unique(folds).size < 2:
        return fit(s, labels, prior).apply(s)
    out = np.empty_like(s)
    for k in np.unique(folds):
        held = folds == k
        out[held] = fit(s[~held], labels[~held], prior).apply(s[held])
    return out


# ---- what calibration changed -------------------------------------------------------------------

def quality(scores, labels) -> dict:
    """Cllr and actDCF (scores read as LLRs), minDCF and EER (scale-free), as plain floats."""
    bona = bonafide_mask(labels)
    s = finite_scores(scores)
    b, sp = s[bona], s[~bona]
    return {"cllr": cllr(b, sp), "act_dcf": act_dcf(b, sp)[0], "min_dcf": min_dcf(b, sp)[0],
            "eer": compute_eer(b, sp)[0]}


def calibrate(oof_scores, oof_labels, folds=None, test_scores=None, test_labels=None,
              prior: float | None = None, info: dict | None = None) -> tuple[Calibration, np.ndarray, np.ndarray | None]:
    """Fit on every OOF score; report before / after on OOF (cross-fitted over `folds`) and on
    test when its labels are given and hold both classes (only to score: the fit never sees them).

    Returns the calibration (fitted on all OOF clips, with its metrics), the OOF LLRs behind the
    "after" numbers and the test LLRs (None without test scores).
    """
    cal = fit(oof_scores, oof_labels, prior)
    oof_llr = cal.apply(oof_scores) if folds is None else cross_fitted(oof_scores, oof_labels, folds, cal.prior)
    cal.metrics["oof"] = {"before": quality(oof_scores, oof_labels), "after": quality(oof_llr, oof_labels),
                          "cross_fitted": folds is not None and np.unique(folds).size > 1}
    test_llr = None if test_scores is None else cal.apply(test_scores)
    if test_scores is not None and test_labels is not None and np.unique(bonafide_mask(test_labels)).size == 2:
        cal.metrics["test"] = {"before": quality(test_scores, test_labels), "after": quality(test_llr, test_labels)}
    cal.info = {"bayes_threshold": bayes_threshold(), "p_spoof": P_SPOOF, "c_miss": C_MISS, "c_fa": C_FA,
                **(info or {})}
    return cal, oof_llr, test_llr


def summary_row(cal: Calibration) -> dict:
    """One results-table row: the map and Cllr / actDCF before -> after, per part present."""
    row = {"slope": f"{cal.slope:.4g}", "offset": f"{cal.offset:.4g}", "n": cal.n_bonafide + cal.n_spoof}
    for part in ("oof", "test"):
        m = cal.metrics.get(part)
        for key, title in (("cllr", "Cllr"), ("act_dcf", "actDCF")):
            row[f"{part.upper() if part == 'oof' else part} {title}"] = (
                f"{m['before'][key]:.3f} -> {m['after'][key]:.3f}" if m else "-")
    return row


# ---- files ------------------------------------------------------------------------------------

def save(cal: Calibration, path) -> Path:
    """calibration JSON, written atomically (a crash never leaves half a file)."""
    write_json_atomic(path, cal.to_dict())
    return Path(path)


def load(path) -> Calibration:
    """A calibration JSON; a missing or malformed file fails with one line naming it."""
    path = Path(path)
    if not path.is_file():
        fail(path, "file not found (fit it with `antispoof calibrate`)")
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
        kind = d.get("kind") if isinstance(d, dict) else None
        cal = Calibration.from_dict(d) if kind == "linear" else None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        fail(path, f"malformed calibration ({type(err).__name__}: {(str(err).splitlines() or [''])[0]})")
    if cal is None:
        fail(path, f"not a linear calibration (kind {kind!r})")
    if not (math.isfinite(cal.slope) and math.isfinite(cal.offset)):
        fail(path, "slope and offset must be finite numbers")
    return cal
