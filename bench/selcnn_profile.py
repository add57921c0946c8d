"""Where a SELCNN-MTL training epoch's time goes, stage by stage, on real clips (issue 31, item 1).

    .venv/bin/python bench/selcnn_profile.py [--data mini] [--model selcnn_mulbs] [--batches 12] [key=value ...]
    .venv/bin/python bench/selcnn_profile.py --data full --versus data.crop_s=3 --rounds 2

Builds fold 0's training loader exactly as `antispoof train` does (decoding, the wave chain, crops,
length-grouped batches, collate) and times, per batch: the loader (decode + augment + collate),
the LFCC front end, the rest of the forward pass (SE-LCNN, Bi-LSTMs, heads), the loss, the backward
pass and the optimiser step; and the share of padded samples in the batches (compute spent on
padding). Prints seconds per stage, its share, and training clips per second, so a speed-up can
be aimed at what dominates and checked with the same command. Extra `key=value` arguments are
config overrides for both runs. `--versus` names the overrides of a second configuration, timed
side by side on the same fold-0 clips in alternating rounds (so a busy machine slows both alike);
the ratio of its training clips/s to the first one's is the last line.
Like `antispoof`, it keeps freed memory (src/antispoof/allocator.py); the allocator's own effect is
the ratio of two runs, one with `ANTISPOOF_MALLOC=default` in the environment.
"""
from __future__ import annotations

import argparse
import time

import torch

from antispoof.allocator import keep_freed_memory
from antispoof.train.data import FoldData
from antispoof.train.fold import experiment_config
from antispoof.train.module import DetectorModule, class_targets

STAGES = ("loader", "lfcc", "forward", "loss", "backward", "step")


class Profile:
    """Seconds per stage, clips and padded samples over every batch timed for one configuration."""

    def __init__(self, name: str):
        self.name, self.seconds = name, dict.fromkeys(STAGES, 0.0)
        self.clips = self.samples = self.padded = 0

    @property
    def clips_per_s(self) -> float:
        return self.clips / sum(self.seconds.values())

    def report(self) -> None:
        total = sum(self.seconds.values())
        print(f"{self.name}: {self.clips} clips in {total:.1f} s: {self.clips_per_s:.2f} clips/s; "
              f"padding {1 - self.samples / self.padded:.1%} of the batch samples")
        for stage in STAGES:
            print(f"  {stage:>8}: {self.seconds[stage]:7.2f} s  {self.seconds[stage] / total:6.1%}")


def time_batches(cfg, batches: int, profile: Profile, warmup: int = 1) -> None:
    """Train a fresh model on fold 0's first `warmup + batches` training batches, adding each stage's
    time of the last `batches` (the first calls of a fresh process or model pay one-off costs)."""
    torch.manual_seed(int(cfg.seed))
    data = FoldData(cfg, 0)
    module = DetectorModule(cfg).train()
    model = module.model
    optimiser = torch.optim.Adam(model.parameters(), lr=float(cfg.optim.lr))
    loader = iter(data.loader("train", train=True))
    for k in range(warmup + batches):
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
        if k < warmup:
            continue
        for stage, dt in zip(STAGES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5)):
            profile.seconds[stage] += dt
        profile.clips += len(batch["lengths"])
        profile.samples += int(batch["lengths"].sum())
        profile.padded += batch["wave"].numel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="mini")
    parser.add_argument("--model", default="selcnn_mulbs")
    parser.add_argument("--batches", type=int, default=12)
    parser.add_argument("--versus", nargs="+", default=None, metavar="KEY=VALUE",
                        help="overrides of a second configuration timed side by side, e.g. data.crop_s=3")
    parser.add_argument("--rounds", type=int, default=1, help="alternating rounds per configuration")
    parser.add_argument("--warmup", type=int, default=1, help="untimed batches before the timed ones, per round")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    print(f"allocator: freed memory kept: {keep_freed_memory()} (ANTISPOOF_MALLOC=default: glibc as it is)")
    common = ["output_root=/tmp/selcnn_profile", "data.num_workers=0", *args.overrides]
    runs = [(" ".join(args.overrides) or "as configured", common)]
    if args.versus:
        runs.append((" ".join(args.versus), [*common, *args.versus]))
    profiles = [Profile(name) for name, _ in runs]
    for _ in range(args.rounds):
        for (_, overrides), profile in zip(runs, profiles):
            time_batches(experiment_config(args.model, args.data, overrides), args.batches, profile, args.warmup)
    print(f"{args.model} on {args.data}, fold 0 training batches, {torch.get_num_threads()} threads, "
          f"{args.rounds} round(s) of {args.batches} batches after {args.warmup} untimed")
    for profile in profiles:
        profile.report()
    if args.versus:
        print(f"ratio ({profiles[1].name}) / ({profiles[0].name}): "
              f"{profiles[1].clips_per_s / profiles[0].clips_per_s:.2f}x training clips/s")


if __name__ == "__main__":
    main()
