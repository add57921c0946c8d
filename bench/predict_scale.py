"""Peak memory and time of `antispoof predict` over many files: streamed in chunks, its memory
should not grow with the number of files.

    .venv/bin/python bench/predict_scale.py --experiment folds/demo/spoofbench-mini/selcnn_mulbs
    .venv/bin/python bench/predict_scale.py --experiment ... --files 1000 10000 --chunk-files 256 100000

Makes a folder of N files (the first `--seconds` of test clips of a data set, default
data/spoofbench-mini, 16-bit WAV under distinct names), runs `antispoof predict --experiment` over it
as a child process per (N, chunk) and prints the wall time and the child's own peak resident set
(os.wait4's rusage: that process alone). A chunk of at least N files is one chunk: what the
command did before it streamed.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import soundfile as sf

from antispoof.data.audio import SR, read_audio

REPO = Path(__file__).resolve().parents[1]


def make_folder(data: Path, n: int, seconds: float, out: Path) -> Path:
    clips = [read_audio(data / p)[: int(seconds * SR)] for p in pd.read_csv(data / "test.csv").path[:50]]
    out.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        sf.write(out / f"clip_{i:06d}.wav", clips[i % len(clips)], SR, subtype="PCM_16")
    return out


def run(experiment: str, audio: Path, chunk: int, out: Path) -> tuple[float, float, int]:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "antispoof.commands.cli", "predict", "--experiment", experiment,
                             "--audio", str(audio), "--out", str(out), "--chunk-files", str(chunk)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"predict failed ({code}): {proc.stderr.read()[-2000:]}")
    return seconds, usage.ru_maxrss / 1024, len(pd.read_csv(out / "scores.csv"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", required=True, help="an experiment folder with finished folds")
    parser.add_argument("--data", default="data/spoofbench-mini", help="where the clips come from (its test.csv)")
    parser.add_argument("--files", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--chunk-files", type=int, nargs="+", default=[256])
    parser.add_argument("--seconds", type=float, default=1.0, help="length of each file")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="predict-scale-"))
    try:
        rows = []
        for n in args.files:
            audio = make_folder(Path(args.data), n, args.seconds, work / f"audio_{n}")
            for chunk in args.chunk_files:
                seconds, peak_mb, scored = run(args.experiment, audio, chunk, work / f"out_{n}_{chunk}")
                rows.append({"files": n, "seconds_each": args.seconds, "chunk_files": min(chunk, n), "rows": scored,
                             "wall_s": round(seconds, 1),
                             "files_per_s": round(n / seconds, 1), "peak_rss_mb": round(peak_mb)})
                print(rows[-1], flush=True)
        print(pd.DataFrame(rows).to_markdown(index=False))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
