"""Learnability check: can a linear probe on frozen Whisper features detect the spoofs of a data set?

Frozen Whisper encoder (default whisper-base) -> mean and std over time of every layer's hidden
states -> standardise -> logistic regression. The regularisation is chosen by speaker-grouped
cross-validation on train; the model fitted on all of train then scores the hidden test split,
and the EER is printed pooled and per condition, for every layer. A benchmark whose seen-attack
condition this probe cannot get to a low EER has a data problem (too little audio, a channel that
hides the artefacts, an attack that leaves none) before it has a model problem.

    .venv/bin/python bench/learnability.py --data data/spoofbench-mini [--model whisper-base]

The hidden states come from the `antispoof embed` cache (folds/<data set>/_embeddings/<model>/,
embedded first if missing; an existing cache's layers are used), so the probe and the frozen heads
read the same states and a rerun only fits the probes.
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


def features(data: Path, model_name: str, batch_seconds: float, output_root: Path):
    """Pooled states of train and test, from the `antispoof embed` cache (embedding what is missing)."""
    train, test = load_split(data, "train"), load_split(data, "test")
    started = time.time()
    root, layers = embed_dataset(data, model_name, None, output_root=output_root, batch_seconds=batch_seconds)
    cache = StateCache(root, layers)
    seconds = time.time() - started
    return train, test, pooled_states(cache, train.utt_id), pooled_states(cache, test.utt_id), layers, seconds


def probe(c: float, seed: int):
    return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000, random_state=seed))


def cross_validated(x, y, groups, c: float, folds: int, seed: int) -> np.ndarray:
    oof = np.zeros(len(y))
    for fit, val in StratifiedGroupKFold(folds, shuffle=True, random_state=seed).split(x, y, groups):
        oof[val] = probe(c, seed).fit(x[fit], y[fit]).decision_function(x[val])
    return oof


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="data/spoofbench-mini")
    parser.add_argument("--model", default="whisper-base", help="a named Whisper model or a local checkpoint folder")
    parser.add_argument("--layers", default="all", help="'all' (those cached) or comma-separated hidden-state indices")
    parser.add_argument("--c", default="0.001,0.01,0.1", help="inverse regularisation strengths to choose from")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--batch-seconds", type=float, default=120.0, help="audio per encoder batch")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    data = Path(args.data)
    train, test, x_train, x_test, cached, seconds = features(data, args.model, args.batch_seconds, Path("folds"))
    audio_h = (train.duration.sum() + test.duration.sum()) / 3600
    print(f"{len(train) + len(test)} clips ({audio_h:.2f} h): cache ready in {seconds:.0f} s (layers {cached})")
    solution = pd.read_csv(data / "solution.csv").set_index("utt_id").loc[test.utt_id]
    y = (train.label == "bonafide").to_numpy(int)
    groups = train.group if "group" in train else train.utt_id
    wanted = cached if args.layers == "all" else [int(v) for v in args.layers.split(",")]
    rows = []
    for layer in wanted:
        best = None
        for c in (float(v) for v in args.c.split(",")):
            oof = cross_validated(x_train[:, cached.index(layer)], y, groups, c, args.folds, args.seed)
            eer = compute_eer(oof[y == 1], oof[y == 0])[0]
            best = min(best, (eer, c), key=lambda t: t[0]) if best else (eer, c)
        column = cached.index(layer)
        scores = probe(best[1], args.seed).fit(x_train[:, column], y).decision_function(x_test[:, column])
        by = eer_by_condition(scores, solution.label, solution.condition if "condition" in solution else
                              ["bonafide"] * len(solution))
        rows.append({"layer": layer, "C": best[1], "cv EER %": 100 * best[0],
                     **{f"{k} %": 100 * v for k, v in by.items()}})
    table = pd.DataFrame(rows).round(2)
    print(f"\n{args.model} on {data.name}: logistic regression on mean/std-pooled hidden states "
          f"(C by {args.folds}-fold speaker-grouped CV); test EER pooled and per condition "
          f"({', '.join(CONDITIONS)}):\n")
    print(table.to_markdown(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
