"""Training and inference throughput and peak memory of the Whisper detector, on real clips.

    .venv/bin/python bench/whisper_speed.py                        # tiny + base, both paddings, this device
    .venv/bin/python bench/whisper_speed.py --models whisper-base --pad-to max --batch-size 32 --precision bf16

Takes clips from a built data set (default data/spoofbench-mini), makes batches of `--batch-size`
clips, runs a few warm-up steps, then times `--steps` training steps (forward, backward, Adam) and
inference steps. Prints clips/s, audio seconds per second and peak memory (torch's allocator on
GPU, the process's peak RSS so far on the CPU).
"""
from __future__ import annotations

import argparse
import contextlib
import time

import numpy as np
import pandas as pd
import torch

from antispoof.data.audio import SR
from antispoof.data.dataset import ClipDataset, collate
from antispoof.data.manifest import load_split
from antispoof.models.whisper_detector import WhisperDetector, WhisperDetectorConfig
from antispoof.train.fold import peak_memory_gb


def batches(data: str, batch_size: int, n: int, seconds: float | None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """n padded batches of shuffled training clips (the training loader's dataset and collate)."""
    clips = ClipDataset(load_split(data, "train").sample(frac=1.0, random_state=0).head(batch_size * n))
    items = [clips[i] for i in range(len(clips))]
    if seconds:  # fixed-length clips: tile real speech up to the length
        for item in items:
            item["wave"] = torch.from_numpy(np.resize(item["wave"].numpy(), int(seconds * SR)))
    groups = [collate(items[i: i + batch_size]) for i in range(0, len(items) - batch_size + 1, batch_size)]
    return [(batch["wave"], batch["lengths"]) for batch in groups]


def measure(model, data, device, precision: str, train: bool, steps: int) -> dict:
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)
                if precision != "fp32" else contextlib.nullcontext())
    optimizer = torch.optim.Adam(model.param_groups(1e-5)) if train else None
    model.train(train)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    timed, clips, audio = 0.0, 0, 0.0
    for step in range(steps + 2):  # two warm-up steps
        wave, lengths = data[step % len(data)]
        wave, lengths = wave.to(device), lengths.to(device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.set_grad_enabled(train), autocast:
            out = model(wave, lengths)
            if train:
                labels = torch.zeros(len(lengths), dtype=torch.long, device=device)
                seg = torch.zeros(len(lengths), int(out["seg_lengths"].max()), dtype=torch.long, device=device)
                loss = model.losses(out, labels, seg)["total"]
        if train:
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if step >= 2:
            timed += time.perf_counter() - start
            clips += len(lengths)
            audio += float(lengths.sum()) / SR
    return {"clips/s": clips / timed, "audio s/s": audio / timed, "peak GB": peak_memory_gb(device)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/spoofbench-mini")
    parser.add_argument("--models", nargs="+", default=["whisper-tiny.en", "whisper-base"])
    parser.add_argument("--pad-to", nargs="+", default=["batch", "max"])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=None, help="tile every clip to this length")
    parser.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default=None,
                        help="default: bf16 on GPU, fp32 on the CPU")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    precision = args.precision or ("bf16" if device.type == "cuda" else "fp32")
    data = batches(args.data, args.batch_size, args.steps + 2, args.seconds)
    mean_s = float(np.mean([float(l.float().mean()) / SR for _, l in data]))
    rows = []
    for name in args.models:
        for pad_to in args.pad_to:
            config = WhisperDetectorConfig(pretrained=name, pad_to=pad_to,
                                           gradient_checkpointing=args.gradient_checkpointing)
            model = WhisperDetector(config).to(device)
            for train in (True, False):
                rows.append({"model": name, "pad_to": pad_to, "mode": "train" if train else "infer",
                             **measure(model, data, device, precision, train, args.steps)})
            del model
    print(f"device {device} ({torch.cuda.get_device_name() if device.type == 'cuda' else 'CPU'}), "
          f"{precision}, batch {args.batch_size}, mean clip {mean_s:.1f} s, torch threads {torch.get_num_threads()}")
    print(pd.DataFrame(rows).to_markdown(index=False, floatfmt=".2f"))


if __name__ == "__main__":
    main()
