"""Where a SELCNN-MTL training epoch's time goes, stage by stage, on real clips (issue 31, item 1).

    .venv/bin/python bench/selcnn_profile.py [--data mini] [--model selcnn_mulbs] [--batches 12] [crop_s=...]

Builds fold 0's training loader exactly as `antispoof train` does (decoding, the wave chain, crops,
length-grouped batches, collate) and times, per batch: the loader (decode + augment + collate),
the LFCC front end, the rest of the forward pass (SE-LCNN, Bi-LSTMs, heads), the loss, the backward
pass and the optimiser step; and the share of padded samples in the batches (compute spent on
padding). Prints seconds per stage, its share, and training clips per second, so a speed-up can
be aimed at what dominates and checked with the same command. Extra `key=value` arguments are
config overrides (e.g. `data.crop_s=4`).
"""
from __future__ import annotations

import argparse
import time

import torch

from antispoof.train.data import FoldData
from antispoof.train.fold import experiment_config
from antispoof.train.module import DetectorModule, class_targets

STAGES = ("loader", "lfcc", "forward", "loss", "backward", "step")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="mini")
    parser.add_argument("--model", default="selcnn_mulbs")
    parser.add_argument("--batches", type=int, default=12)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    cfg = experiment_config(args.model, args.data, ["output_root=/tmp/selcnn_profile", "data.num_workers=0",
                                                    *args.overrides])
    data = FoldData(cfg, 0)
    module = DetectorModule(cfg).train()
    model = module.model
    optimiser = torch.optim.Adam(model.parameters(), lr=float(cfg.optim.lr))
    seconds = dict.fromkeys(STAGES, 0.0)
    clips = samples = padded = 0
    loader = iter(data.loader("train", train=True))
    for _ in range(args.batches):
        t0 = time.perf_counter()
        batch = next(loader, None)
        if batch is None:
            break
        t1 = time.perf_counter()
        features = model.input_features(batch["wave"], batch["lengths"])
        t2 = time.perf_counter()
        out = model.forward_features(features)
        t3 = time.perf_counter()
        seg = class_targets(model.segment_targets(batch["seg"], out["seg_lengths"]))
        loss = model.losses(out, class_targets(batch["label"]), seg)["total"]
        t4 = time.perf_counter()
        optimiser.zero_grad()
        loss.backward()
        t5 = time.perf_counter()
        optimiser.step()
        t6 = time.perf_counter()
        for stage, dt in zip(STAGES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5)):
            seconds[stage] += dt
        clips += len(batch["lengths"])
        samples += int(batch["lengths"].sum())
        padded += batch["wave"].numel()
    total = sum(seconds.values())
    print(f"{args.model} on {args.data}, fold 0 training loader, {clips} clips in {total:.1f} s: "
          f"{clips / total:.2f} clips/s; {torch.get_num_threads()} threads; padding {1 - samples / padded:.1%} "
          f"of the batch samples")
    for stage in STAGES:
        print(f"  {stage:>8}: {seconds[stage]:7.2f} s  {seconds[stage] / total:6.1%}")


if __name__ == "__main__":
    main()
