"""Frozen-encoder embedding throughput, float32 against int8 (`embed.quantize`), side by side.

    .venv/bin/python bench/embed_speed.py [--data data/spoofbench-mini] [--encoder whisper-base] [--clips 48]

Takes `--clips` clips of a built data set (train, shuffled with a fixed seed), cuts them into
encoder batches as `antispoof embed` does (sorted by length, `--batch-seconds` of audio each),
and encodes them with both encoders in alternating rounds (float, int8, float, int8, ...), so a
machine whose load changes during the run slows both alike. Prints audio seconds per second of
each, the int8 / float ratio (best round of each), and how far the int8 states drift from the
float ones per hidden state (mean |difference| / mean |float state|). Whether that drift costs
accuracy is measured by the learnability probe and the MHFA head on the int8 cache
(`antispoof embed --quantize int8`, `bench/learnability.py --quantize int8`).
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from antispoof.data.audio import read_audio
from antispoof.data.manifest import load_split
from antispoof.inference.states import chosen_layers, encode_clips, frozen_encoder, length_batches
from antispoof.models.encoders import encoder_info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/spoofbench-mini")
    parser.add_argument("--encoder", default="whisper-base")
    parser.add_argument("--layers", default="0-5")
    parser.add_argument("--clips", type=int, default=48)
    parser.add_argument("--batch-seconds", type=float, default=120.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    clips = load_split(args.data, "train").sample(frac=1.0, random_state=0).head(args.clips)
    waves = [read_audio(p) for p in clips.audio]
    seconds = float(sum(len(w) for w in waves)) / 16000
    layers = chosen_layers(args.layers, encoder_info(args.encoder).n_states)
    batches = length_batches(np.array([len(w) / 16000 for w in waves]), args.batch_seconds)
    encoders = {q: frozen_encoder(args.encoder, quantize=q) for q in ("none", "int8")}
    print(f"{len(waves)} clips, {seconds:.0f} s of audio, {len(batches)} batches, {torch.get_num_threads()} "
          f"threads, encoder {args.encoder}, states {layers}")
    speeds: dict[str, list[float]] = {q: [] for q in encoders}
    states: dict[str, list[np.ndarray]] = {}
    for _ in range(args.rounds):
        for q, model in encoders.items():
            start, out = time.perf_counter(), [None] * len(waves)
            for batch in batches:
                for i, s in zip(batch, encode_clips(model, [waves[i] for i in batch], layers, torch.device("cpu"))):
                    out[i] = s
            speeds[q].append(seconds / (time.perf_counter() - start))
            states[q] = out
            print(f"  {q:>5}: {speeds[q][-1]:6.1f} audio s/s", flush=True)
    best = {q: max(v) for q, v in speeds.items()}
    print(f"float32 {best['none']:.1f} audio s/s, int8 {best['int8']:.1f} audio s/s: "
          f"ratio {best['int8'] / best['none']:.2f}x (best round of each)")
    for j, layer in enumerate(layers):
        ref = np.concatenate([s[:, j].astype(np.float32).ravel() for s in states["none"]])
        got = np.concatenate([s[:, j].astype(np.float32).ravel() for s in states["int8"]])
        print(f"  state {layer}: relative drift {np.abs(got - ref).mean() / np.abs(ref).mean():.4f}")


if __name__ == "__main__":
    main()
