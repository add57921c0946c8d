"""The output folder of `antispoof predict`: rows streamed chunk by chunk, a killed run resumed.

Files are scored in chunks; each chunk's rows (scores, regions, failed files) are written whole
(utils.atomic_path) into `<out>/.partial/`, the scores file last as the chunk's commit mark, so
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

from antispoof.utils import write_csv_atomic, write_json_atomic, write_text_atomic

SCORE_COLUMNS = ["utt_id", "path", "duration", "windows", "score", "llr", "label", "status"]
REGION_COLUMNS = ["file", "start", "end"]
FAILED_COLUMNS = ["utt_id", "path", "problem"]
TEXT_COLUMNS = {"scores": ("utt_id", "path"), "regions": ("file",), "failed": ("utt_id", "path", "problem")}
COLUMNS = {"scores": SCORE_COLUMNS, "regions": REGION_COLUMNS, "failed": FAILED_COLUMNS}
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "'")
PARTIAL = ".partial"
RUN = "run.json"


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
    """`<out>/.partial/chunk_<n>.{regions,failed,scores}.csv` and the run record beside them."""

    def __init__(self, out: Path, run: dict):
        self.out = Path(out)
        self.dir = self.out / PARTIAL
        self.run = json.loads(json.dumps(run, default=str))
        record = self.dir / RUN
        if record.is_file():
            try:
                same = json.loads(record.read_text(encoding="utf-8")) == self.run
            except ValueError:
                same = False
            if not same:
                print(f"antispoof predict: note: {self.dir} holds rows of a run with other settings; starting afresh",
                      file=sys.stderr)
                shutil.rmtree(self.dir)
        if not record.is_file():
            self.dir.mkdir(parents=True, exist_ok=True)
            write_json_atomic(record, self.run)

    def chunks(self) -> list[Path]:
        """Finished chunks (those whose scores file, written last, exists)."""
        return sorted(self.dir.glob("chunk_*.scores.csv"))

    def read(self, kind: str) -> pd.DataFrame:
        frames = [pd.read_csv(p.with_name(p.name.replace(".scores.", f".{kind}.")), dtype={c: str for c in
                                                                                           TEXT_COLUMNS[kind]},
                              keep_default_na=False, na_values={c: [""] for c in COLUMNS[kind]
                                                                if c not in TEXT_COLUMNS[kind]})
                  for p in self.chunks()]
        frames = [f for f in frames if len(f)]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS[kind])

    def done_paths(self) -> set[str]:
        """Paths of the files a finished chunk holds (scored or failed)."""
        return set(self.read("scores")["path"])

    def write_chunk(self, scores: pd.DataFrame, regions: pd.DataFrame, failed: pd.DataFrame) -> None:
        number = len(self.chunks())
        stem = self.dir / f"chunk_{number:05d}"
        write_csv_atomic(regions[REGION_COLUMNS], stem.with_name(stem.name + ".regions.csv"))
        write_csv_atomic(failed[FAILED_COLUMNS], stem.with_name(stem.name + ".failed.csv"))
        write_csv_atomic(scores[SCORE_COLUMNS], stem.with_name(stem.name + ".scores.csv"), float_format="%.9g")

    def finish(self, inputs: pd.DataFrame) -> tuple[dict[str, pd.DataFrame], dict[str, Path]]:
        """The final files, rows in input order, then the partial folder removed."""
        order = {path: i for i, path in enumerate(inputs["path"])}
        scores = self.read("scores")
        scores = scores.iloc[scores["path"].map(order).argsort(kind="stable")].reset_index(drop=True)
        file_order = dict(zip(scores["utt_id"], range(len(scores))))
        regions = self.read("regions")
        regions = regions.iloc[regions["file"].map(file_order).argsort(kind="stable")].reset_index(drop=True)
        failed = self.read("failed")
        failed = failed.iloc[failed["path"].map(order).argsort(kind="stable")].reset_index(drop=True)
        files = {"scores": self.out / "scores.csv", "regions": self.out / "regions.csv",
                 "rttm": self.out / "regions.rttm", "failed": self.out / "failed.csv"}
        write_csv_atomic(escaped(scores, "scores"), files["scores"], float_format="%.9g")
        write_csv_atomic(escaped(regions, "regions"), files["regions"])
        write_text_atomic(files["rttm"], rttm_lines(regions))
        write_csv_atomic(escaped(failed, "failed"), files["failed"])
        shutil.rmtree(self.dir)
        return {"scores": scores, "regions": regions, "failed": failed}, files
