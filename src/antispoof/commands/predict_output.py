"""The output folder of `antispoof predict`: rows streamed chunk by chunk, a killed run resumed.

Files are scored in chunks; each chunk's rows (scores, regions, failed files) are written whole
(utils.atomic_path) into `<out>/.partial/` (`.partial/shard-<i>-of-<n>/` for one process of a run
sharded over n, which `--merge n` assembles), the scores file last as the chunk's commit mark, so
memory holds one chunk however many files are scored, and a run stopped at any point (Ctrl-C,
SIGTERM, a crash, a full disk) restarts after its last finished chunk. What the partial rows were
made with (the source, the window plan, the threshold, the audio limit) is recorded beside them: a
rerun with other settings starts afresh instead of mixing two runs. When every file is done, the
final scores.csv, regions.csv, regions.rttm and failed.csv are written in input order and the
partial folder goes.

Text cells taken from file names (ids, paths, the region file, the problem) are escaped against
spreadsheet formula injection (OWASP): a cell starting with `=`, `+`, `-`, `@`, a tab or a carriage
return, or with the escape mark itself, gets a leading `'`; `unescape_cell` strips it, so every
name is recoverable. Numbers are written as numbers.
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pandas as pd

from antispoof.schema import fail
from antispoof.utils import write_csv_atomic, write_json_atomic, write_text_atomic

SCORE_COLUMNS = ["utt_id", "path", "duration", "windows", "score", "llr", "label", "status"]
REGION_COLUMNS = ["file", "start", "end"]
FAILED_COLUMNS = ["utt_id", "path", "problem"]
TEXT_COLUMNS = {"scores": ("utt_id", "path"), "regions": ("file",), "failed": ("utt_id", "path", "problem")}
COLUMNS = {"scores": SCORE_COLUMNS, "regions": REGION_COLUMNS, "failed": FAILED_COLUMNS}
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "'")
PARTIAL = ".partial"
RUN = "run.json"


def shard_folder(out: Path, index: int, count: int) -> Path:
    """Where process `index` of a run sharded over `count` keeps its chunks."""
    return Path(out) / PARTIAL / f"shard-{index}-of-{count}"


def escape_cell(text: str) -> str:
    """`=cmd()` -> `'=cmd()`; a name that starts with `'` gets one more, so unescaping is exact."""
    text = str(text)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def unescape_cell(text: str) -> str:
    text = str(text)
    return text[1:] if text.startswith("'") else text


def escaped(table: pd.DataFrame, kind: str) -> pd.DataFrame:
    table = table.copy()
    for column in TEXT_COLUMNS[kind]:
        table[column] = table[column].map(escape_cell)
    return table


def rttm_lines(regions: pd.DataFrame) -> str:
    """NIST RTTM, one SPEAKER line per spoofed region (type `spoof`), times in seconds."""
    lines = [f"SPEAKER {''.join(c if not c.isspace() else '_' for c in str(r.file))} 1 {r.start:.3f} "
             f"{r.end - r.start:.3f} <NA> <NA> spoof <NA> <NA>" for r in regions.itertuples()]
    return "".join(line + "\n" for line in lines)


class ChunkStore:
    """`<dir>/chunk_<k>.{regions,failed,scores}.csv` and the run record beside them; chunk k holds
    input files k * chunk_files onwards, the same chunks in every process of a sharded run."""

    def __init__(self, folder: Path, run: dict, existing_only: bool = False):
        self.dir = Path(folder)
        self.run = json.loads(json.dumps(run, default=str))
        record = self.dir / RUN
        if record.is_file():
            try:
                same = json.loads(record.read_text(encoding="utf-8")) == self.run
            except ValueError:
                same = False
            if not same and existing_only:
                fail(record, "these chunks were scored with other settings or inputs; run the shard again")
            if not same:
                print(f"antispoof predict: note: {self.dir} holds rows of a run with other settings or inputs; "
                      "starting afresh", file=sys.stderr)
                shutil.rmtree(self.dir)
        if not record.is_file():
            self.dir.mkdir(parents=True, exist_ok=True)
            write_json_atomic(record, self.run)

    def done_chunks(self) -> set[int]:
        """Finished chunks: those whose scores file (written last) exists."""
        return {int(p.name.split(".")[0].removeprefix("chunk_")) for p in self.dir.glob("chunk_*.scores.csv")}

    def read(self, kind: str) -> list[pd.DataFrame]:
        numbers = {c: str for c in TEXT_COLUMNS[kind]}
        missing = {c: [""] for c in COLUMNS[kind] if c not in TEXT_COLUMNS[kind]}
        return [pd.read_csv(self.dir / f"chunk_{k:05d}.{kind}.csv", dtype=numbers, keep_default_na=False,
                            na_values=missing) for k in sorted(self.done_chunks())]

    def write_chunk(self, number: int, scores: pd.DataFrame, regions: pd.DataFrame, failed: pd.DataFrame) -> None:
        stem = self.dir / f"chunk_{number:05d}"
        write_csv_atomic(regions[REGION_COLUMNS], stem.with_name(stem.name + ".regions.csv"))
        write_csv_atomic(failed[FAILED_COLUMNS], stem.with_name(stem.name + ".failed.csv"))
        write_csv_atomic(scores[SCORE_COLUMNS], stem.with_name(stem.name + ".scores.csv"), float_format="%.9g")


def _gather(stores: list[ChunkStore], kind: str) -> pd.DataFrame:
    frames = [f for store in stores for f in store.read(kind) if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS[kind])


def finish(stores: list[ChunkStore], inputs: pd.DataFrame, out: Path) -> tuple[dict[str, pd.DataFrame],
                                                                                dict[str, Path]]:
    """The final files from every chunk of `stores`, rows in input order; then `<out>/.partial` goes."""
    order = {path: i for i, path in enumerate(inputs["path"])}
    scores = _gather(stores, "scores")
    scores = scores.iloc[scores["path"].map(order).argsort(kind="stable")].reset_index(drop=True)
    file_order = dict(zip(scores["utt_id"], range(len(scores))))
    regions = _gather(stores, "regions")
    regions = regions.iloc[regions["file"].map(file_order).argsort(kind="stable")].reset_index(drop=True)
    failed = _gather(stores, "failed")
    failed = failed.iloc[failed["path"].map(order).argsort(kind="stable")].reset_index(drop=True)
    out = Path(out)
    files = {"scores": out / "scores.csv", "regions": out / "regions.csv", "rttm": out / "regions.rttm",
             "failed": out / "failed.csv"}
    write_csv_atomic(escaped(scores, "scores"), files["scores"], float_format="%.9g")
    write_csv_atomic(escaped(regions, "regions"), files["regions"])
    write_text_atomic(files["rttm"], rttm_lines(regions))
    write_csv_atomic(escaped(failed, "failed"), files["failed"])
    shutil.rmtree(out / PARTIAL, ignore_errors=True)
    return {"scores": scores, "regions": regions, "failed": failed}, files
