"""Frozen-encoder embedding throughput, float32 against int8 and bf16 (`embed.quantize`), side by side.

    .venv/bin/python bench/embed_speed.py [--data data/spoofbench-mini] [--encoder whisper-base] [--clips 48]
                                          [--paths none,int8,bf16]

Takes `--clips` clips of a built data set (train, shuffled with a fixed seed), cuts them into
encoder batches as `antispoof embed` does (sorted by length, `--batch-seconds` of audio each),
and encodes them with every path in alternating rounds (float, int8, bf16, float, ...), so a
machine whose load changes during the run slows all alike; the first round also warms oneDNN's
kernels up, so the best round of each counts. Prints audio seconds per second of each, each
path's ratio to float32, and how far its states drift from the float ones per hidden state
(mean |difference| / mean |float state|). Whether that drift costs accuracy is measured by the
learnability probe and the MHFA head on such a cache (`antispoof embed --quantize bf16`,
`bench/learnability.py --quantize bf16`). bf16 is fast only on a CPU with AVX512-BF16 or AMX.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from antispoof.allocator import keep_freed_memory
from antispoof.data.audio import read_audio
from antispoof.data.manifest import load_split
from antispoof.inference.states import chosen_layers, encode_clips, frozen_encoder, length_batches
from antispoof.models.encoders import cpu_has_bf16, encoder_info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/spoofbench-mini")
    parser.add_argument("--encoder", default="whisper-base")
    parser.add_argument("--layers", default="0-5")
    parser.add_argument("--clips", type=int, default=48)
    parser.add_argument("--batch-seconds", type=float, default=120.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--paths", default="none,int8,bf16", help="embed.quantize values to time (none first)")
    args = parser.parse_args()
    print(f"allocator: freed memory kept: {keep_freed_memory()} (ANTISPOOF_MALLOC=default: glibc as it is)")
    paths = ["none"] + [q for q in args.paths.split(",") if q != "none"]
    if args.threads:
        torch.set_num_threads(args.threads)
    clips = load_split(args.data, "train").sample(frac=1.0, random_state=0).head(args.clips)
    waves = [read_audio(p) for p in clips.audio]
    seconds = float(sum(len(w) for w in waves)) / 16000
    layers = chosen_layers(args.layers, encoder_info(args.encoder).n_states)
    batches = length_batches(np.array([len(w) / 16000 for w in waves]), args.batch_seconds)
    encoders = {q: frozen_encoder(args.encoder, quantize=q) for q in paths}
    print(f"{len(waves)} clips, {seconds:.0f} s of audio, {len(batches)} batches, {torch.get_num_threads()} "
          f"threads, encoder {args.encoder}, states {layers}, bf16 native on this CPU: {cpu_has_bf16()}")
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
    for q in paths[1:]:
        print(f"float32 {best['none']:.1f} audio s/s, {q} {best[q]:.1f} audio s/s: "
              f"ratio {best[q] / best['none']:.2f}x (best round of each)")
        for j, layer in enumerate(layers):
            ref = np.concatenate([s[:, j].astype(np.float32).ravel() for s in states["none"]])
            got = np.concatenate([s[:, j].astype(np.float32).ravel() for s in states[q]])
            print(f"  {q} state {layer}: relative drift {np.abs(got - ref).mean() / np.abs(ref).mean():.4f}")


if __name__ == "__main__":
    main()
