"""Cost of `antispoof compare`'s paired bootstrap on real fold outputs, per resample.

    .venv/bin/python bench/compare_speed.py --data full whisper_base_mhfa whisper_base_pooled
    .venv/bin/python bench/compare_speed.py --data mini selcnn_segbw selcnn_segment --resamples 50

Prints how long reading the fold outputs takes, how many 20 ms segment points a fold scores, and
the seconds per bootstrap resample (every common fold of both experiments, both levels), i.e. a
1,000-resample comparison costs 1,000 times that. On SpoofBench-full (2,356 test clips, 733k
segment points per fold, 5 + 5 folds, 2 cores): 0.49 and 0.73 s per resample in two runs of 20
and 10 resamples, against 2.25 s when every resample sorted its points (the code before this bench).
"""
from __future__ import annotations

import argparse
import time

from antispoof.commands.compare import hidden_test, load_fold, paired_bootstrap
from antispoof.config import data_dir as resolve_data_dir
from antispoof.runs import experiment_dir, finished_folds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a")
    parser.add_argument("b")
    parser.add_argument("--data", default="mini")
    parser.add_argument("--output-root", default="folds")
    parser.add_argument("--resamples", type=int, default=20)
    args = parser.parse_args()
    data_dir = resolve_data_dir(args.data)
    solution, segments = hidden_test(data_dir)
    bonafide = (solution["label"] == "bonafide").to_numpy()
    finished = {e: finished_folds(experiment_dir(args.output_root, data_dir.name, e)) for e in (args.a, args.b)}
    common = sorted(set(finished[args.a]) & set(finished[args.b]))
    start = time.perf_counter()
    a, b = ([load_fold(finished[e][k], solution, segments) for k in common] for e in (args.a, args.b))
    points = sum(len(s) for s, _ in a[0].seg)
    print(f"read {2 * len(common)} folds ({common}) in {time.perf_counter() - start:.1f} s; "
          f"{len(bonafide)} test clips, {points:,} segment points per fold")
    start = time.perf_counter()
    result = paired_bootstrap(a, b, bonafide, resamples=args.resamples)
    per = (time.perf_counter() - start) / args.resamples
    print(f"{per:.3f} s per resample ({args.resamples} resamples; 1,000 take {1000 * per / 60:.1f} min); "
          f"Δ utt EER {result['utt']['delta']:+.2f}, Δ seg EER {result['seg']['delta']:+.2f} points")


if __name__ == "__main__":
    main()
