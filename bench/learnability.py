"""Learnability check: can a linear probe on frozen Whisper features detect the spoofs of a data set?

Frozen Whisper encoder (default whisper-base) -> mean and std over time of every layer's hidden
states -> standardise -> logistic regression. The regularisation is chosen by speaker-grouped
cross-validation on train; the model fitted on all of train then scores the hidden test split,
and the EER is printed pooled and per condition, for every layer. A benchmark whose seen-attack
condition this probe cannot get to a low EER has a data problem (too little audio, a channel that
hides the artefacts, an attack that leaves none) before it has a model problem.

    .venv/bin/python bench/learnability.py --data data/spoofbench-mini [--model whisper-base]

The pooled features are cached beside the fold outputs (folds/<data set>/_bench/), so a rerun only
fits the probes.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from tqdm import tqdm

from antispoof.metrics.conditions import CONDITIONS, eer_by_condition
from antispoof.data.audio import read_audio
from antispoof.data.manifest import load_split
from antispoof.metrics import compute_eer
from antispoof.models.common import valid_mask
from antispoof.models.whisper_detector import WhisperDetector, WhisperDetectorConfig


def pooled_states(model: WhisperDetector, paths: list[str], durations: np.ndarray, batch_seconds: float) -> np.ndarray:
    """[clips, layers + 1, 2 * dim]: mean and std over each clip's frames of every hidden state.

    Clips are batched by length (the manifest's durations), so padding costs little; each batch's
    audio is read when it is encoded.
    """
    out = [None] * len(paths)
    batches, current, longest = [], [], 0.0
    for i in np.argsort(durations, kind="stable"):
        longest = max(longest, durations[i])
        if current and longest * (len(current) + 1) > batch_seconds:
            batches.append(current)
            current, longest = [], durations[i]
        current.append(int(i))
    batches.append(current)
    with torch.inference_mode():
        for batch in tqdm(batches, desc="encoding", unit="batch"):
            waves = [torch.from_numpy(read_audio(paths[i])) for i in batch]
            wave = torch.nn.utils.rnn.pad_sequence(waves, batch_first=True)
            n = torch.tensor([len(w) for w in waves])
            chunks, chunk_lengths, owner = model._chunks(wave, n)
            mel, mel_frames = model.logmel(chunks, chunk_lengths)
            states, frames = model.encode(mel, mel_frames, all_layers=True)  # [L+1, N, T, D]
            valid = valid_mask(frames, states.shape[2]).float()[None, :, :, None]
            # Chunks of one clip pool together: sum over chunks, then divide by the clip's frames.
            count = torch.zeros(len(batch)).index_add_(0, owner, frames.float())[None, :, None]
            total = torch.zeros(states.shape[0], len(batch), states.shape[-1]).index_add_(
                1, owner, (states * valid).sum(2))
            square = torch.zeros_like(total).index_add_(1, owner, (states.square() * valid).sum(2))
            mean = total / count
            std = (square / count - mean.square()).clamp_min(0).sqrt()
            feats = torch.cat([mean, std], dim=-1).permute(1, 0, 2).numpy().astype(np.float32)
            for j, i in enumerate(batch):
                out[i] = feats[j]
    return np.stack(out)


def features(data: Path, model_name: str, batch_seconds: float, cache_dir: Path):
    cache = cache_dir / f"learnability_{model_name.replace('/', '_')}.npz"
    train, test = load_split(data, "train"), load_split(data, "test")
    if cache.is_file():
        saved = np.load(cache, allow_pickle=False)
        if list(saved["train_ids"]) == list(train.utt_id) and list(saved["test_ids"]) == list(test.utt_id):
            return train, test, saved["train"], saved["test"], 0.0
    started = time.time()
    model = WhisperDetector(WhisperDetectorConfig(pretrained=model_name, pad_to="batch", apply_spec_augment=False)).eval()
    x_train = pooled_states(model, list(train.audio), train.duration.to_numpy(), batch_seconds)
    x_test = pooled_states(model, list(test.audio), test.duration.to_numpy(), batch_seconds)
    seconds = time.time() - started
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.savez(cache, train=x_train, test=x_test, train_ids=train.utt_id.to_numpy(str), test_ids=test.utt_id.to_numpy(str))
    return train, test, x_train, x_test, seconds


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
    parser.add_argument("--layers", default="all", help="'all' or comma-separated hidden-state indices (0 = input)")
    parser.add_argument("--c", default="0.001,0.01,0.1", help="inverse regularisation strengths to choose from")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--batch-seconds", type=float, default=120.0, help="audio per encoder batch")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    data = Path(args.data)
    train, test, x_train, x_test, seconds = features(data, args.model, args.batch_seconds,
                                                      Path("folds") / data.name / "_bench")
    if seconds:
        audio_h = (train.duration.sum() + test.duration.sum()) / 3600
        print(f"embedded {len(train) + len(test)} clips ({audio_h:.2f} h) in {seconds:.0f} s")
    solution = pd.read_csv(data / "solution.csv").set_index("utt_id").loc[test.utt_id]
    y = (train.label == "bonafide").to_numpy(int)
    groups = train.group if "group" in train else train.utt_id
    layers = range(x_train.shape[1]) if args.layers == "all" else [int(v) for v in args.layers.split(",")]
    rows = []
    for layer in layers:
        best = None
        for c in (float(v) for v in args.c.split(",")):
            oof = cross_validated(x_train[:, layer], y, groups, c, args.folds, args.seed)
            eer = compute_eer(oof[y == 1], oof[y == 0])[0]
            best = min(best, (eer, c), key=lambda t: t[0]) if best else (eer, c)
        scores = probe(best[1], args.seed).fit(x_train[:, layer], y).decision_function(x_test[:, layer])
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
