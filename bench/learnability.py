"""Learnability check: can a simple probe on fixed features detect the spoofs of a data set?

Two feature sets, side by side:
- `--features whisper`: frozen Whisper encoder (default whisper-base) -> mean and std over time of
  every layer's hidden states; one probe per layer. The states come from the `antispoof embed`
  cache (folds/<data set>/_embeddings/<model>/, embedded first if missing), so the probe and the
  frozen heads read the same states and a rerun only fits the probes.
- `--features spectral`: linear-frequency statistics (LFCC mean / std / percentiles and the
  log-spectrum's per-band mean and variance, `antispoof.features.spectral_stats`), cached in
  folds/<data set>/_spectral_stats.npz. Neural vocoders rebuild the log-mel that Whisper reads;
  the artefacts they leave are on a linear axis.
The probe is logistic regression (`--classifier logreg`, its regularisation chosen by
speaker-grouped cross-validation on train) or gradient boosting (`--classifier gbm`). Fitted on
all of train it scores the hidden test split: EER pooled and per condition. A benchmark whose
seen-attack conditions these probes cannot get to a low EER has a data problem (too little
audio, a channel that hides the artefacts, an attack that leaves none) before a model problem.
`--submission` writes the test scores (higher = more bona fide) as a baseline submission.

    .venv/bin/python bench/learnability.py --data data/spoofbench-mini [--features spectral --classifier gbm]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from tqdm import tqdm

from antispoof.metrics.conditions import CONDITIONS, eer_by_condition
from antispoof.data.manifest import load_split
from antispoof.inference.states import embed_dataset
from antispoof.features.state_cache import StateCache
from antispoof.metrics import compute_eer


def pooled_states(cache: StateCache, utt_ids) -> np.ndarray:
    """[clips, layers, 2 * dim]: mean and std over each clip's frames of every cached hidden state."""
    out = []
    for utt in tqdm(list(utt_ids), desc="pooling", unit="clip"):
        states = np.asarray(cache.states(utt), dtype=np.float32)  # [frames, layers, dim]
        out.append(np.concatenate([states.mean(0), states.std(0)], axis=-1))
    return np.stack(out)


def features(data: Path, model_name: str, batch_seconds: float, output_root: Path, quantize: str = "none"):
    """Pooled states of train and test, from the `antispoof embed` cache (embedding what is missing)."""
    train, test = load_split(data, "train"), load_split(data, "test")
    started = time.time()
    root, layers = embed_dataset(data, model_name, None, output_root=output_root, batch_seconds=batch_seconds,
                                 quantize=quantize)
    cache = StateCache(root, layers)
    seconds = time.time() - started
    return train, test, pooled_states(cache, train.utt_id), pooled_states(cache, test.utt_id), layers, seconds


def spectral_features(data: Path, table: pd.DataFrame, output_root: Path) -> np.ndarray:
    """Linear-frequency statistics of every clip of a split, cached beside the folds (a cache of
    another clip list is recomputed)."""
    from antispoof.data.audio import read_audio
    from antispoof.features.spectral_stats import SpectralStatistics
    from antispoof.utils import atomic_path

    cache = output_root / data.name / "_spectral_stats.npz"
    known = {}
    if cache.is_file():
        with np.load(cache) as npz:
            known = dict(zip(npz["utt_id"], npz["x"]))
    missing = [(u, p) for u, p in zip(table.utt_id, table.audio) if u not in known]
    if missing:
        stats = SpectralStatistics()
        for utt, path in tqdm(missing, desc="linear-frequency statistics", unit="clip"):
            known[utt] = stats(read_audio(path))
        cache.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(cache) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, utt_id=np.array(list(known)), x=np.stack(list(known.values())))
    return np.stack([known[u] for u in table.utt_id])[:, None, :]  # one "layer"


def probe(c: float, seed: int, classifier: str = "logreg"):
    if classifier == "gbm":
        from sklearn.ensemble import HistGradientBoostingClassifier

        return HistGradientBoostingClassifier(max_iter=300, learning_rate=0.05, l2_regularization=c, random_state=seed)
    return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000, random_state=seed))


def _score(model, x) -> np.ndarray:
    return model.decision_function(x) if hasattr(model, "decision_function") else model.predict_proba(x)[:, 1]


def cross_validated(x, y, groups, c: float, folds: int, seed: int, classifier: str = "logreg") -> np.ndarray:
    oof = np.zeros(len(y))
    for fit, val in StratifiedGroupKFold(folds, shuffle=True, random_state=seed).split(x, y, groups):
        oof[val] = _score(probe(c, seed, classifier).fit(x[fit], y[fit]), x[val])
    return oof


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="data/spoofbench-mini")
    parser.add_argument("--features", choices=("whisper", "spectral"), default="whisper")
    parser.add_argument("--classifier", choices=("logreg", "gbm"), default="logreg")
    parser.add_argument("--model", default="whisper-base", help="a named Whisper model or a local checkpoint folder")
    parser.add_argument("--layers", default="all", help="'all' (those cached) or comma-separated hidden-state indices")
    parser.add_argument("--c", default=None, help="regularisation strengths to choose from: logreg's C "
                        "(default 0.001,0.01,0.1), gbm's l2_regularization (default 0,1)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--batch-seconds", type=float, default=120.0, help="audio per encoder batch")
    parser.add_argument("--quantize", choices=("none", "int8", "bf16"), default="none",
                        help="int8 / bf16: the states of that encoder path (their own cache, <model>-int8 / -bf16)")
    parser.add_argument("--submission", help="write the (best layer's) test scores here: utt_id,score")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    data = Path(args.data)
    started = time.time()
    if args.features == "whisper":
        train, test, x_train, x_test, cached, seconds = features(data, args.model, args.batch_seconds, Path("folds"),
                                                                  args.quantize)
        name = f"{args.model} (mean/std-pooled hidden states)"
    else:
        train, test = load_split(data, "train"), load_split(data, "test")
        x_train, x_test = spectral_features(data, train, Path("folds")), spectral_features(data, test, Path("folds"))
        cached, seconds, name = [0], time.time() - started, "linear-frequency statistics"
    audio_h = (train.duration.sum() + test.duration.sum()) / 3600
    print(f"{len(train) + len(test)} clips ({audio_h:.2f} h): features ready in {seconds:.0f} s (layers {cached})")
    solution = pd.read_csv(data / "solution.csv").set_index("utt_id").loc[test.utt_id]
    y = (train.label == "bonafide").to_numpy(int)
    groups = train.group if "group" in train else train.utt_id
    wanted = cached if args.layers == "all" else [int(v) for v in args.layers.split(",")]
    strengths = args.c or ("0,1" if args.classifier == "gbm" else "0.001,0.01,0.1")
    rows, best_scores = [], None
    for layer in wanted:
        best = None
        for c in (float(v) for v in strengths.split(",")):
            oof = cross_validated(x_train[:, cached.index(layer)], y, groups, c, args.folds, args.seed, args.classifier)
            eer = compute_eer(oof[y == 1], oof[y == 0])[0]
            best = min(best, (eer, c), key=lambda t: t[0]) if best else (eer, c)
        column = cached.index(layer)
        model = probe(best[1], args.seed, args.classifier).fit(x_train[:, column], y)
        scores = _score(model, x_test[:, column])
        if best_scores is None or best[0] < best_scores[0]:
            best_scores = (best[0], scores)
        by = eer_by_condition(scores, solution.label, solution.condition if "condition" in solution else
                              ["bonafide"] * len(solution))
        rows.append({"layer": layer, "C": best[1], "cv EER %": 100 * best[0],
                     **{f"{k} %": 100 * v for k, v in by.items()}})
    table = pd.DataFrame(rows)
    table = table.round({c: 2 for c in table.columns if c.endswith("%")})
    print(f"\n{name} on {data.name}: {args.classifier} (regularisation by {args.folds}-fold speaker-grouped CV); "
          f"test EER pooled and per condition ({', '.join(c for c in CONDITIONS if f'{c} %' in table)}), "
          f"{time.time() - started:.0f} s in all:\n")
    print(table.to_markdown(index=False))
    if args.submission:
        from antispoof.utils import write_csv_atomic

        write_csv_atomic(pd.DataFrame({"utt_id": test.utt_id, "score": best_scores[1]}), args.submission)
        print(f"submission written: {args.submission} (the layer of lowest CV EER)")
    return 0


if __name__ == "__main__":
    from antispoof.schema import ManifestError

    try:
        sys.exit(main())
    except ManifestError as err:  # a stale cache, a broken manifest: one line, naming the file
        sys.exit(f"learnability: {err}")
