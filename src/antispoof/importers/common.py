"""Importers: turn a published corpus or a competition CSV into the manifest layout.

Audio is never copied: manifests point at the original files with absolute paths, so an
imported data set costs a few CSVs and one npz of segment labels. Every problem in the
source (missing protocol, malformed line, missing audio, unknown label, duplicate id) is
reported as a one-line `ManifestError` naming the file and the line, before anything is
written, so a half-imported folder never looks finished.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable, NamedTuple

import numpy as np
import pandas as pd

from antispoof.data import manifest as mf
from antispoof.data.audio import AudioError
from antispoof.data.clip_check import check_clip, default_limits
from antispoof.data.layout import build_target, swap_in, write_splits
from antispoof.schema import LABELS, ManifestError, fail
from antispoof.utils import write_text_atomic

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".opus", ".aiff", ".aif", ".au")
ENGLISH = "en"


class ProtocolRow(NamedTuple):
    speaker: str
    utt_id: str
    attack: str
    label: str
    subset: str
    where: str  # "file line N", for error messages


# ---- shared helpers -----------------------------------------------------------------

ASV19_FIELDS = (("speaker", "speaker"), ("utt_id", "utt_id"), ("-", None), ("attack", "attack"), ("label", "label"))


def read_fields(path: Path, columns: tuple[tuple[str, str | None], ...], seen: dict[str, str]) -> list[dict]:
    """A header-less, space-separated protocol: one trial per line, `columns` = (the corpus's name of
    each field, our column or None to drop it), in file order; ours must include utt_id and label.
    Every ASVspoof-style protocol is read here (2019 LA, PartialSpoof, ASVspoof 5, ASVspoof 2021).

    `seen` maps every utt_id read so far (across the corpus's files) to where it was read, so a trial
    listed in two files is caught as well as one listed twice in one file.
    """
    if not path.is_file():
        fail(path, "protocol file not found")
    native = " ".join(name for name, _ in columns)
    label_name = next(name for name, ours in columns if ours == "label")  # as the corpus calls it
    rows = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for number, line in enumerate(fh, start=1):
            fields = line.split()
            if not fields:
                continue
            where = f"{path} line {number}"
            if len(fields) != len(columns):
                raise ManifestError(f"{where}: expected {len(columns)} fields '{native}', "
                                    f"got {len(fields)}: {line.strip()!r}")
            row = {ours: value for (_, ours), value in zip(columns, fields) if ours}
            if row["label"] not in LABELS:
                raise ManifestError(f"{where}: unknown {label_name} '{row['label']}' (expected bonafide or spoof)")
            if row["utt_id"] in seen:
                raise ManifestError(f"{where}: duplicate utt_id '{row['utt_id']}' (first at {seen[row['utt_id']]})")
            seen[row["utt_id"]] = where
            rows.append({**row, "where": where})
    return rows


def read_protocol(path: Path, subset: str, seen: dict[str, str]) -> list[ProtocolRow]:
    """An ASVspoof 2019-style protocol (`speaker utt_id - attack label`), one row per line."""
    return [ProtocolRow(r["speaker"], r["utt_id"], r["attack"], r["label"], subset, r["where"])
            for r in read_fields(path, ASV19_FIELDS, seen)]


def _duration(path: Path, where: str) -> float:
    """Clip length in seconds, after the audio check every command runs (data/clip_check.py):
    a corrupt, empty, NaN, silent, too short or too long file fails here naming the row."""
    if not path.is_file():
        raise ManifestError(f"{where}: audio file not found: {path}")
    try:
        return check_clip(path, default_limits())
    except AudioError as err:
        raise ManifestError(f"{where}: {err}") from None


def file_durations(items: Iterable[tuple[Path, str]], workers: int) -> list[float]:
    """Durations of many files; threads hide file-system latency on large corpora.

    `map` yields in input order, so the error reported is the first bad row, as a
    sequential loop would report it.
    """
    items = list(items)
    if workers <= 1 or len(items) < 64:
        return [_duration(p, w) for p, w in items]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda item: _duration(*item), items))


def protocol_frame(rows: list[ProtocolRow], audio_path, source: str, workers: int) -> pd.DataFrame:
    """Manifest rows for protocol entries; group = speaker (clips of one talker stay in one fold)."""
    paths = [Path(audio_path(r)).absolute() for r in rows]
    durations = file_durations(zip(paths, (r.where for r in rows)), workers)
    return pd.DataFrame({
        "utt_id": [r.utt_id for r in rows],
        "path": [str(p) for p in paths],
        "duration": np.round(durations, 6),
        "label": [r.label for r in rows],
        "attack": [r.attack for r in rows],
        "speaker": [r.speaker for r in rows],
        "group": [r.speaker for r in rows],
        "source": source,
        "language": ENGLISH,
        "subset": [r.subset for r in rows],
    })


def write_protocol_corpus(out, title: str, root: Path, frames: dict[str, pd.DataFrame],
                           segments: dict[str, dict], notes: str, force: bool = False,
                           test: str | None = "eval") -> Path:
    """Every partition but `test` -> train.csv, in the order of `frames`; `test` -> test.csv (only
    what a competitor sees) and solution.csv (labels and metadata); then the data card.

    `test=None` writes train.csv alone (no test.csv, solution.csv or sample submission), as an
    import without a test folder does: a copy of a corpus that lacks its evaluation partition
    still trains, and nothing pretends to be a held-out split."""
    parts = [name for name in frames if name != test]
    train = pd.concat([frames[name] for name in parts], ignore_index=True)
    train_segments = {uid: seg for name in parts for uid, seg in segments[name].items()}
    if test is None:
        card = data_card(title, str(root), {"train": train}, notes)
        return write_imported(Path(out), train, train_segments, None, None, None, card, force=force)
    held = frames[test]
    card = data_card(title, str(root), {"train": train, "test": held}, notes)
    return write_imported(Path(out), train, train_segments, held[list(mf.TEST_COLUMNS)],
                          held.drop(columns=["path", "duration"]), segments[test], card, force=force)


def constant_labels(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    return {r.utt_id: mf.constant_segments(r.label, r.duration) for r in frame.itertuples()}


def data_card(title: str, origin: str, splits: dict[str, pd.DataFrame], notes: str) -> str:
    """A short data card: where the data came from and how much of each class there is."""
    text = [f"# {title}\n", f"Imported from `{origin}` (audio not copied; paths are absolute).\n"]
    for name, frame in splits.items():
        if frame is None:
            continue
        seconds = frame["duration"].sum() if "duration" in frame.columns else float("nan")
        text.append(f"## {name}: {len(frame)} utterances, {seconds / 3600:.2f} h ({seconds / 60:.1f} min)\n")
        if "label" in frame.columns:
            counts = frame["label"].value_counts()
            text.append(", ".join(f"{lab} {int(counts.get(lab, 0))}" for lab in LABELS) + "\n")
            for column in ("subset", "attack"):
                if column in frame.columns and frame[column].nunique() > 1:
                    text.append(frame.groupby([column, "label"]).size().unstack(fill_value=0).to_markdown() + "\n")
    text.append(f"## Notes\n{notes}\n")
    return "\n".join(text)


def write_imported(out: Path, train: pd.DataFrame, train_segments: dict, test: pd.DataFrame | None,
                   solution: pd.DataFrame | None, solution_segments: dict | None, card: str,
                   competition: dict | None = None, force: bool = False) -> Path:
    """Write every file of the layout (data/layout.py), re-read it with the project's own validators
    (audio already checked), then write the data card (it marks completion).

    An existing data set at `out` is refused unless `force`; then the new one is written into a
    staging folder and swapped in whole (layout.build_target / swap_in), so a failed import never
    leaves the old train.csv beside a new test.csv."""
    target = build_target(out, force, "antispoof import")
    write_splits(target, train, train_segments, test, solution, solution_segments, competition)
    mf.load_segments(target / "train_segments.npz", mf.load_split(target, "train", check_files=False))
    if (target / "solution.csv").exists():
        mf.load_segments(target / "solution_segments.npz", mf.load_split(target, "test", check_files=False))
    write_text_atomic(target / "README.md", card)
    return swap_in(target, out)


def find_root(root: Path, marker: str, wrappers: Iterable[str]) -> Path:
    """Accept the corpus folder itself or the folder that contains it (e.g. `database/`)."""
    root = Path(root).absolute()
    if (root / marker).exists():
        return root
    for wrapper in wrappers:
        if (root / wrapper / marker).exists():
            return root / wrapper
    return root


def folder_index(folder: Path) -> tuple[dict[str, Path], dict[str, list[Path]]]:
    """Files of a folder by full name and by stem, for ids given with or without extension."""
    if not folder.is_dir():
        raise ManifestError(f"{folder}: audio folder not found")
    by_name, by_stem = {}, {}
    for path in sorted(folder.iterdir()):
        if path.is_file():
            by_name[path.name] = path.absolute()
            by_stem.setdefault(path.stem, []).append(path.absolute())
    return by_name, by_stem


def test_frame(test_dir: Path, use_names: bool, workers: int) -> pd.DataFrame:
    """Every audio file of the test folder, ids styled like the training ids."""
    folder_index(test_dir)  # existence check with the standard message
    files = sorted(p.absolute() for p in test_dir.iterdir()
                   if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise ManifestError(f"{test_dir}: no audio files ({', '.join(AUDIO_SUFFIXES)})")
    ids = [p.name if use_names else p.stem for p in files]
    dup = pd.Series(ids).duplicated()
    if dup.any():
        raise ManifestError(f"{test_dir}: two files give the same utt_id '{ids[int(np.flatnonzero(dup)[0])]}'")
    durations = file_durations(((p, str(test_dir)) for p in files), workers)
    return pd.DataFrame({"utt_id": ids, "path": [str(p) for p in files], "duration": np.round(durations, 6)})
