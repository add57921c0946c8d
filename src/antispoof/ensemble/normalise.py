"""Score normalisation, fitted on OOF scores and applied unchanged to test scores.

Detectors score on different scales (SELCNN-MTL: cosines in [-1, 1]; Whisper: log-odds
of any size), so a vote must first bring them to one scale:
  rank      the OOF empirical CDF (sklearn QuantileTransformer): in [0, 1], monotone;
  zscore    (s - mean) / std of the OOF scores;
  logistic  Platt calibration on the OOF labels (on standardised scores), returned as a log-likelihood ratio
            (log-odds minus the OOF prior log-odds), so 0 is "as likely bona fide as spoof"
            whatever the class balance, and actDCF / Cllr become meaningful;
  none      the raw scores.
Every method is monotone increasing (logistic unless a model scores backwards on OOF), so a
single model's EER never changes; only the scale that voting and thresholds see does.
"""
from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import QuantileTransformer, StandardScaler

METHODS = ("none", "rank", "zscore", "logistic")


class Normaliser:
    """One model's score map: `fit` on OOF scores (and labels, for logistic), then `transform`."""

    def __init__(self, method: str = "zscore", calibration_c: float = 1.0e4, seed: int = 0):
        if method not in METHODS:
            raise ValueError(f"normalise must be one of {', '.join(METHODS)}, not {method!r}")
        self.method, self.calibration_c, self.seed = method, calibration_c, seed
        self._model = None
        self._prior_logit = 0.0

    def fit(self, scores, bonafide=None) -> "Normaliser":
        x = np.asarray(scores, dtype=float).reshape(-1, 1)
        if self.method == "rank":
            self._model = QuantileTransformer(n_quantiles=min(1000, len(x)), output_distribution="uniform",
                                              random_state=self.seed).fit(x)
        elif self.method == "zscore":
            self._model = StandardScaler().fit(x)
        elif self.method == "logistic":
            y = np.asarray(bonafide, dtype=bool)
            if y.all() or not y.any():
                raise ValueError("logistic calibration needs OOF scores of both classes")
            # standardising first only helps the solver (4x fewer iterations); the map stays linear
            self._model = make_pipeline(StandardScaler(), LogisticRegression(C=self.calibration_c)).fit(x, y)
            self._prior_logit = float(np.log(y.mean() / (1 - y.mean())))
        return self

    def transform(self, scores) -> np.ndarray:
        x = np.asarray(scores, dtype=float).reshape(-1, 1)
        if self.method == "none":
            return x.ravel().copy()
        if self._model is None:
            raise RuntimeError("Normaliser.transform before fit")
        if self.method == "logistic":
            return self._model.decision_function(x) - self._prior_logit
        return self._model.transform(x).ravel()

    def transform_arrays(self, arrays) -> list[np.ndarray]:
        """The same map applied to variable-length arrays (segment scores), in one call."""
        arrays = [np.asarray(a, dtype=float) for a in arrays]
        if not arrays:
            return []
        flat = self.transform(np.concatenate(arrays)) if sum(a.size for a in arrays) else np.zeros(0)
        return np.split(flat, np.cumsum([a.size for a in arrays])[:-1])
