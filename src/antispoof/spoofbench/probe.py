"""The shortcut probe: can global clip statistics alone tell bona fide from spoof?

If a gradient-boosting classifier on duration, loudness, bandwidth, silence and similar
statistics reaches a low EER, a detector would learn those instead of spoofing artefacts.
SpoofBench is only fit for use when the probe's cross-validated EER is high (>= 35 %).
The probe doubles as the simplest baseline and exercises the metrics end to end.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.model_selection import StratifiedGroupKFold

from antispoof.data.audio import SR, read_audio
from antispoof.data.clip_check import require_usable
from antispoof.data.manifest import load_split
from antispoof.metrics.detection import compute_eer
from antispoof.utils import write_csv_atomic

FEATURES = ("duration", "rms_db", "peak_db", "crest_db", "dc_offset", "zcr", "silence_ratio",
            "noise_floor_db", "dynamic_range_db", "centroid_hz", "rolloff85_hz", "rolloff95_hz",
            "bandwidth_hz", "flatness")


def clip_statistics(wave: np.ndarray, sr: int) -> dict[str, float]:
    """Global, content-blind statistics of one clip."""
    x = wave.astype(np.float64)
    frame = sr // 100
    n = max(1, len(x) // frame)
    frames = np.resize(x, n * frame).reshape(n, frame)
    energy = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
    rms = 10 * np.log10(np.mean(x**2) + 1e-12)
    peak = 20 * np.log10(np.abs(x).max() + 1e-12)
    spec = np.abs(np.fft.rfft(np.resize(x, max(512, len(x) // 512 * 512)).reshape(-1, 512) * np.hanning(512)))**2
    power = spec.mean(axis=0) + 1e-20
    freqs = np.fft.rfftfreq(512, 1 / sr)
    cumulative = np.cumsum(power) / power.sum()
    level = 10 * np.log10(power / power.max())
    return {
        "duration": len(x) / sr,
        "rms_db": rms,
        "peak_db": peak,
        "crest_db": peak - rms,
        "dc_offset": float(x.mean()),
        "zcr": float(np.mean(np.abs(np.diff(np.sign(x))) > 0)),
        "silence_ratio": float(np.mean(energy < energy.max() - 40)),
        "noise_floor_db": float(np.percentile(energy, 10)),
        "dynamic_range_db": float(np.percentile(energy, 95) - np.percentile(energy, 10)),
        "centroid_hz": float((freqs * power).sum() / power.sum()),
        "rolloff85_hz": float(freqs[np.searchsorted(cumulative, 0.85)]),
        "rolloff95_hz": float(freqs[np.searchsorted(cumulative, 0.95)]),
        "bandwidth_hz": float(freqs[np.flatnonzero(level > -50).max()]),
        "flatness": float(np.exp(np.mean(np.log(power))) / power.mean()),
    }


def statistics_table(manifest: pd.DataFrame) -> pd.DataFrame:
    """The statistics of every clip, at 16 kHz (the clips passed the audio check first)."""
    rows = [clip_statistics(read_audio(path), SR) for path in manifest["audio"]]
    return pd.DataFrame(rows, index=manifest.index)[list(FEATURES)]


def _checked(data_dir: Path, split: str) -> pd.DataFrame:
    """A split whose every clip passed the audio check (the probe needs all of them)."""
    table = load_split(data_dir, split)
    require_usable(table["audio"], data_dir / f"{split}.csv")
    return table


def _model(seed: int) -> HistGradientBoostingClassifier:
    return HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05, random_state=seed)


def run_probe(data_dir: str | Path, submission: str | Path | None = None, folds: int = 5, seed: int = 0) -> dict:
    """Cross-validated EER of the probe on train (grouped folds); optionally test predictions.

    Scores are P(bona fide), so higher = more bona fide as everywhere in the project. The trees
    are grown on one thread: on a thousand rows OpenMP's start-up costs more than it saves
    (a fit took 10 s on two busy cores, under 1 s on one).
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        return _run_probe(data_dir, submission, folds, seed)


def _run_probe(data_dir, submission, folds: int, seed: int) -> dict:
    data_dir = Path(data_dir)
    train = _checked(data_dir, "train")
    X, y = statistics_table(train), (train["label"] == "bonafide").to_numpy(int)
    groups = train["group"] if "group" in train else train["utt_id"]
    oof = np.zeros(len(train))
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    for fit_idx, val_idx in splitter.split(X, y, groups):
        oof[val_idx] = _model(seed).fit(X.iloc[fit_idx], y[fit_idx]).predict_proba(X.iloc[val_idx])[:, 1]
    cv_eer, _ = compute_eer(oof[y == 1], oof[y == 0])
    model = _model(seed).fit(X, y)
    importance = _importance(model, X, y, seed)
    result = {"cv_eer": float(cv_eer), "n_train": int(len(train)), "features": importance}
    test = _checked(data_dir, "test")
    test_scores = model.predict_proba(statistics_table(test))[:, 1]
    if "label" in test:
        lab = (test["label"] == "bonafide").to_numpy()
        result["test_eer"] = float(compute_eer(test_scores[lab], test_scores[~lab])[0])
        if "condition" in test:
            result["test_by_condition"] = _by_condition(test_scores, test, seed)
    if submission is not None:
        write_csv_atomic(pd.DataFrame({"utt_id": test["utt_id"], "score": test_scores}), submission)
        result["submission"] = str(submission)
    return result


def _by_condition(scores: np.ndarray, test: pd.DataFrame, seed: int) -> dict[str, dict]:
    """The probe's test EER per condition with its bootstrap 95 % half-width."""
    from antispoof.metrics.conditions import bootstrap_half_width, condition_masks, eer_by_condition

    labels = test["label"].to_numpy()
    eers = eer_by_condition(scores, labels, test["condition"])
    return {name: {"eer": eers[name], "half_width": bootstrap_half_width(scores[mask], labels[mask], seed=seed)}
            for name, mask in condition_masks(test["condition"]).items()}


def _importance(model, X: pd.DataFrame, y: np.ndarray, seed: int) -> dict[str, float]:
    """Permutation importance on the training data: which statistic the probe leans on."""
    from sklearn.inspection import permutation_importance

    imp = permutation_importance(model, X, y, n_repeats=3, random_state=seed, scoring="roc_auc")
    order = np.argsort(-imp.importances_mean)[:5]
    return {X.columns[i]: round(float(imp.importances_mean[i]), 4) for i in order}
