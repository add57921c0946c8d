"""`antispoof check`: every clip of a data set through the audio check (data/clip_check.py),
one line per unusable clip, exit 1 if any."""
from __future__ import annotations

from dataclasses import replace

from antispoof.config import data_dir
from antispoof.data.clip_check import check_clips, default_limits
from antispoof.data.manifest import load_split


def check_dataset(data: str, min_seconds=None, max_seconds=None, silence_dbfs=None) -> None:
    limits = replace(default_limits(), **{k: v for k, v in (("min_seconds", min_seconds),
                                                            ("max_seconds", max_seconds),
                                                            ("silence_dbfs", silence_dbfs)) if v is not None})
    root, n_bad, n_all = data_dir(data), 0, 0
    for split in ("train", "test"):
        if split == "test" and not (root / "test.csv").exists():
            continue
        table = load_split(root, split)
        result = check_clips(table["audio"], limits, progress=f"checking {split}.csv")
        for utt_id, problem in zip(table["utt_id"], result["problem"]):
            if problem:
                print(f"{split} {utt_id}: {problem}")
        n_bad, n_all = n_bad + int((result["problem"] != "").sum()), n_all + len(table)
    print(f"{root}: {n_all - n_bad} of {n_all} clips usable ({limits.min_seconds:g}-{limits.max_seconds:g} s, "
          f"peak above {limits.silence_dbfs:g} dBFS, finite samples)")
    if n_bad:
        raise SystemExit(1)
