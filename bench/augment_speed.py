"""Throughput cost of every augmentation, on real clips, on the CPU and (when there is one) the GPU.

    .venv/bin/python bench/augment_speed.py                     # data/spoofbench-mini, 64 clips
    .venv/bin/python bench/augment_speed.py --clips 128 --batch-size 32

Wave steps (per clip, data-loader workers): each step alone at p = 1 over the clips, in clips/s of
one worker, beside reading and decoding the clip (what a worker does anyway). Batch steps (per
batch, on the device): each alone at p = 1, in ms per batch, beside one SELCNN-MTL training step
(forward, backward, Adam) on the same batch for scale.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
import torch
from omegaconf import OmegaConf

from antispoof.augment import BatchAugmenter, SpecAugment
from antispoof.augment.wave import WAVE_STEPS
from antispoof.config import load_config
from antispoof.data.dataset import ClipDataset, collate
from antispoof.data.manifest import load_segments, load_split
from antispoof.models.factory import build_model
from antispoof.train.data import wave_augmenter
from antispoof.train.module import class_targets


def _only(section: str, step: str) -> OmegaConf:
    cfg = load_config("augment/all")
    for name in cfg[section]:
        cfg[section][name].p = 1.0 if name == step else 0.0
    return cfg[section]


def wave_table(train: pd.DataFrame, segments: dict, n: int) -> pd.DataFrame:
    """clips/s of one process for reading alone and for each wave step."""
    clips = train.sample(n=min(n, len(train)), random_state=0)
    items = [ClipDataset(clips, segments)[i] for i in range(len(clips))]
    audio_s = sum(len(it["wave"]) for it in items) / 16000
    start = time.perf_counter()
    for i in range(len(clips)):
        ClipDataset(clips, segments)[i]
    seconds = time.perf_counter() - start
    rows = [{"step": "read + decode (reference)", "clips/s": len(clips) / seconds, "audio s/s": audio_s / seconds}]
    for step in WAVE_STEPS:
        chain = wave_augmenter(_only("wave", step), train)
        start = time.perf_counter()
        for k, it in enumerate(items):
            chain(it["wave"].numpy(), it["label"], it["seg"].numpy(), np.random.default_rng(k))
        seconds = time.perf_counter() - start
        rows.append({"step": step, "clips/s": len(items) / seconds, "audio s/s": audio_s / seconds})
    return pd.DataFrame(rows)


def _time(fn, device: torch.device, repeats: int) -> float:
    fn()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats * 1000


def batch_table(batches: list[dict], device: torch.device, repeats: int) -> pd.DataFrame:
    """ms per batch for each batch step, and a SELCNN-MTL training step for scale."""
    moved = [{k: v.to(device) if torch.is_tensor(v) else v for k, v in b.items()} for b in batches]
    rows = []
    for step in ("splice", "mixup", "noise"):
        augmenter = BatchAugmenter(_only("batch", step), seed=0)
        ms = _time(lambda: [augmenter(b, 0, k) for k, b in enumerate(moved)], device, repeats) / len(moved)
        rows.append({"step": step, "device": device.type, "ms/batch": ms})
    model = build_model(load_config("model/selcnn_mulbs").model).to(device)
    spec = SpecAugment(_only("batch", "specaugment").specaugment).to(device)
    feats = [model.lfcc(b["wave"], b["lengths"]) for b in moved]
    ms = _time(lambda: [spec(f, n) for f, n in feats], device, repeats) / len(moved)
    rows.append({"step": "specaugment", "device": device.type, "ms/batch": ms})
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

    def train_step():
        for b in moved:
            out = model(b["wave"], b["lengths"])
            seg = class_targets(model.segment_targets(b["seg"], out["seg_lengths"]))
            loss = model.losses(out, class_targets(b["label"]), seg)["total"]
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    rows.append({"step": "SELCNN-MTL training step (reference)", "device": device.type,
                 "ms/batch": _time(train_step, device, max(1, repeats // 4)) / len(moved)})
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/spoofbench-mini")
    parser.add_argument("--clips", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=8)
    args = parser.parse_args()
    torch.manual_seed(0)
    train = load_split(args.data, "train")
    segments = load_segments(f"{args.data}/train_segments.npz", train)
    print(f"wave steps, one process, {args.clips} clips of {args.data}")
    print(wave_table(train, segments, args.clips).to_markdown(index=False, floatfmt=".1f"))
    # length-sorted batches, as the training sampler makes them (little padding)
    clips = ClipDataset(train.sample(n=args.clips, random_state=1).sort_values("duration"), segments)
    items = [clips[i] for i in range(len(clips))]
    batches = [collate(items[i: i + args.batch_size]) for i in range(0, len(items) - args.batch_size + 1, args.batch_size)]
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    table = pd.concat([batch_table(batches, d, args.repeats) for d in devices])
    print(f"\nbatch steps, batches of {args.batch_size} clips")
    print(table.to_markdown(index=False, floatfmt=".2f"))


if __name__ == "__main__":
    main()
