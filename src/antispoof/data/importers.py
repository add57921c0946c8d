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
from antispoof.data.seglab import finest_seglab, labels_at_10ms, load_seglab, resolution_note, seglab_array
from antispoof.schema import LABELS, ManifestError, fail, read_text_table, require_columns
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


def _read_fields(path: Path, columns: tuple[tuple[str, str | None], ...], seen: dict[str, str]) -> list[dict]:
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


def _read_protocol(path: Path, subset: str, seen: dict[str, str]) -> list[ProtocolRow]:
    """An ASVspoof 2019-style protocol (`speaker utt_id - attack label`), one row per line."""
    return [ProtocolRow(r["speaker"], r["utt_id"], r["attack"], r["label"], subset, r["where"])
            for r in _read_fields(path, ASV19_FIELDS, seen)]


def _duration(path: Path, where: str) -> float:
    """Clip length in seconds, after the audio check every command runs (data/clip_check.py):
    a corrupt, empty, NaN, silent, too short or too long file fails here naming the row."""
    if not path.is_file():
        raise ManifestError(f"{where}: audio file not found: {path}")
    try:
        return check_clip(path, default_limits())
    except AudioError as err:
        raise ManifestError(f"{where}: {err}") from None


def _durations(items: Iterable[tuple[Path, str]], workers: int) -> list[float]:
    """Durations of many files; threads hide file-system latency on large corpora.

    `map` yields in input order, so the error reported is the first bad row, as a
    sequential loop would report it.
    """
    items = list(items)
    if workers <= 1 or len(items) < 64:
        return [_duration(p, w) for p, w in items]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda item: _duration(*item), items))


def _protocol_frame(rows: list[ProtocolRow], audio_path, source: str, workers: int) -> pd.DataFrame:
    """Manifest rows for protocol entries; group = speaker (clips of one talker stay in one fold)."""
    paths = [Path(audio_path(r)).absolute() for r in rows]
    durations = _durations(zip(paths, (r.where for r in rows)), workers)
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


def _write_protocol_corpus(out, title: str, root: Path, frames: dict[str, pd.DataFrame],
                           segments: dict[str, dict], notes: str, force: bool = False) -> Path:
    """train + dev -> train.csv; eval -> test.csv (only what a competitor sees) and solution.csv
    (labels and metadata); then the data card."""
    train = pd.concat([frames["train"], frames["dev"]], ignore_index=True)
    test, solution = frames["eval"][list(mf.TEST_COLUMNS)], frames["eval"].drop(columns=["path", "duration"])
    card = _card(title, str(root), {"train": train, "test": frames["eval"]}, notes)
    return _write_dataset(Path(out), train, {**segments["train"], **segments["dev"]}, test, solution,
                          segments["eval"], card, force=force)


def _constant(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    return {r.utt_id: mf.constant_segments(r.label, r.duration) for r in frame.itertuples()}


def _card(title: str, origin: str, splits: dict[str, pd.DataFrame], notes: str) -> str:
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


def _write_dataset(out: Path, train: pd.DataFrame, train_segments: dict, test: pd.DataFrame | None,
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


def _find_root(root: Path, marker: str, wrappers: Iterable[str]) -> Path:
    """Accept the corpus folder itself or the folder that contains it (e.g. `database/`)."""
    root = Path(root).absolute()
    if (root / marker).exists():
        return root
    for wrapper in wrappers:
        if (root / wrapper / marker).exists():
            return root / wrapper
    return root


# ---- PartialSpoof ------------------------------------------------------------------

PS_PROTOCOL = "protocols/PartialSpoof_LA_cm_protocols/PartialSpoof.LA.cm.{subset}.trl.txt"


def _partialspoof_segments(rows: list[ProtocolRow], seglab: dict, seglab_path: Path) -> dict[str, np.ndarray]:
    """Segment labels of each protocol row, checked against the utterance label."""
    segments = {}
    for row in rows:
        if row.utt_id not in seglab:
            raise ManifestError(f"{seglab_path}: no segment labels for '{row.utt_id}' ({row.where})")
        seg = seglab_array(seglab[row.utt_id], seglab_path, row.utt_id)
        if (seg.min() == 0) != (row.label == "spoof"):
            raise ManifestError(
                f"{seglab_path}: segment labels of '{row.utt_id}' contradict its label '{row.label}' ({row.where})")
        segments[row.utt_id] = seg
    return segments


def import_partialspoof(root: str | Path, out: str | Path, workers: int = 8, force: bool = False) -> Path:
    """Import the PartialSpoof database: train+dev -> train.csv, eval -> test/solution.

    `root` is the `database/` folder (or its parent). Segment labels come from the finest
    `segment_labels/{subset}_seglab_{0.01,...,0.64}.npy` present (data/seglab.py); 10 ms ones are
    stored as-is: they may differ from the audio length by a frame, which consumers resolve by
    truncating (as PartialSpoof does).
    """
    root = _find_root(Path(root), "protocols", ["database"])
    seen: dict[str, str] = {}
    frames, segments, shifts = {}, {}, {}
    for subset in ("train", "dev", "eval"):
        rows = _read_protocol(root / PS_PROTOCOL.format(subset=subset), subset, seen)
        seglab_path, shifts[subset] = finest_seglab(root / "segment_labels", subset)
        coarse = _partialspoof_segments(rows, load_seglab(seglab_path), seglab_path)
        frames[subset] = _protocol_frame(
            rows, lambda r: root / r.subset / "con_wav" / f"{r.utt_id}.wav", "partialspoof", workers)
        segments[subset] = labels_at_10ms(coarse, shifts[subset], dict(zip(frames[subset].utt_id,
                                                                           frames[subset].duration)))
    notes = ("PartialSpoof (Zhang et al.): utterances concatenating bona fide and spoofed "
             "(ASVspoof 2019 LA) segments. Segment labels at 10 ms, 1 = bona fide, 0 = spoof. "
             f"{resolution_note(shifts)} `subset` keeps the official train/dev split; group = speaker.")
    return _write_protocol_corpus(out, "PartialSpoof", root, frames, segments, notes, force)


# ---- ASVspoof 2019 LA ----------------------------------------------------------------

ASV19_PROTOCOLS = {"train": "train.trn", "dev": "dev.trl", "eval": "eval.trl"}


def import_asvspoof2019_la(root: str | Path, out: str | Path, workers: int = 8, force: bool = False) -> Path:
    """Import ASVspoof 2019 LA: train+dev -> train.csv, eval -> test/solution.

    `root` is the `LA/` folder (or its parent). Utterances are wholly bona fide or wholly
    spoofed, so segment labels are constant.
    """
    root = _find_root(Path(root), "ASVspoof2019_LA_cm_protocols", ["LA"])
    seen: dict[str, str] = {}
    frames = {}
    for subset, name in ASV19_PROTOCOLS.items():
        protocol = root / "ASVspoof2019_LA_cm_protocols" / f"ASVspoof2019.LA.cm.{name}.txt"
        rows = _read_protocol(protocol, subset, seen)
        frames[subset] = _protocol_frame(
            rows, lambda r: root / f"ASVspoof2019_LA_{r.subset}" / "flac" / f"{r.utt_id}.flac",
            "asvspoof2019_la", workers)
    notes = ("ASVspoof 2019 logical access: bona fide VCTK speech and TTS/VC spoofs "
             "(attacks A01-A19; eval attacks differ from train/dev). `subset` keeps the official "
             "train/dev split; group = speaker; segment labels are constant per utterance.")
    segments = {subset: _constant(frame) for subset, frame in frames.items()}
    return _write_protocol_corpus(out, "ASVspoof 2019 LA", root, frames, segments, notes, force)


# ---- competition CSV ------------------------------------------------------------------

def _norm_value(value) -> str:
    """'1', '1.0' and 1 are the same label value; other strings compare stripped."""
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        return text
    return str(int(number)) if number.is_integer() else text


def _as_json_value(text: str):
    try:
        return int(text)
    except ValueError:
        return text


def _label_values(values: pd.Series, spoof: str, csv_path: Path, label_column: str) -> str:
    """The negative (bona fide) value: 1-x for 0/1 labels, else the one other value present."""
    if spoof in ("0", "1"):
        negative = "1" if spoof == "0" else "0"
    else:
        others = [v for v in dict.fromkeys(values) if v != spoof]
        negative = others[0] if others else "bonafide"
    bad = ~values.isin([spoof, negative])
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0]) + 1
        raise ManifestError(f"{csv_path} row {row}: unknown label '{values.iloc[row - 1]}' in column "
                            f"'{label_column}' (expected {spoof} = spoof or {negative} = bonafide)")
    return negative


def _audio_index(folder: Path) -> tuple[dict[str, Path], dict[str, list[Path]]]:
    """Files of a folder by full name and by stem, for ids given with or without extension."""
    if not folder.is_dir():
        raise ManifestError(f"{folder}: audio folder not found")
    by_name, by_stem = {}, {}
    for path in sorted(folder.iterdir()):
        if path.is_file():
            by_name[path.name] = path.absolute()
            by_stem.setdefault(path.stem, []).append(path.absolute())
    return by_name, by_stem


def _find_audio(utt_id: str, index, folder: Path, where: str) -> Path:
    by_name, by_stem = index
    if utt_id in by_name:
        return by_name[utt_id]
    matches = by_stem.get(utt_id, [])
    if len(matches) > 1:
        raise ManifestError(f"{where}: ambiguous audio for '{utt_id}': " + ", ".join(p.name for p in matches))
    if not matches:
        raise ManifestError(f"{where}: audio file not found: {folder / utt_id}[.*]")
    return matches[0]


def _read_competition_csv(csv_path: Path, id_column: str, label_column: str) -> pd.DataFrame:
    df = read_text_table(csv_path, dtype=str, keep_default_na=False)
    require_columns(csv_path, df, (id_column, label_column))
    ids = df[id_column].str.strip()
    for mask, problem in ((ids == "", "empty id"), (ids.duplicated(), "duplicate id")):
        if mask.any():
            row = int(np.flatnonzero(mask.to_numpy())[0]) + 1
            raise ManifestError(f"{csv_path} row {row}: {problem} '{ids.iloc[row - 1]}' in column '{id_column}'")
    df[id_column] = ids
    return df


def _test_frame(test_dir: Path, use_names: bool, workers: int) -> pd.DataFrame:
    """Every audio file of the test folder, ids styled like the training ids."""
    _audio_index(test_dir)  # existence check with the standard message
    files = sorted(p.absolute() for p in test_dir.iterdir()
                   if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise ManifestError(f"{test_dir}: no audio files ({', '.join(AUDIO_SUFFIXES)})")
    ids = [p.name if use_names else p.stem for p in files]
    dup = pd.Series(ids).duplicated()
    if dup.any():
        raise ManifestError(f"{test_dir}: two files give the same utt_id '{ids[int(np.flatnonzero(dup)[0])]}'")
    durations = _durations(((p, str(test_dir)) for p in files), workers)
    return pd.DataFrame({"utt_id": ids, "path": [str(p) for p in files], "duration": np.round(durations, 6)})


def import_competition_csv(csv: str | Path, audio_dir: str | Path, out: str | Path,
                           test_dir: str | Path | None = None, id_column: str = "speech_name",
                           label_column: str = "label", spoof_value: str | int = "1",
                           workers: int = 8, force: bool = False) -> Path:
    """Import a competition's labelled CSV (e.g. FinVolution `speech_name,label`).

    Rows -> train.csv (utt_id = the competition id, verbatim, so predictions map back);
    the optional test folder -> test.csv (no solution: its labels are the competition's).
    competition.json records the id column and the 0/1 coding for the submission writer.
    """
    csv_path, audio_dir = Path(csv).absolute(), Path(audio_dir).absolute()
    df = _read_competition_csv(csv_path, id_column, label_column)
    spoof = _norm_value(spoof_value)
    values = df[label_column].map(_norm_value)
    negative = _label_values(values, spoof, csv_path, label_column)
    index = _audio_index(audio_dir)
    wheres = [f"{csv_path} row {i + 1}" for i in range(len(df))]
    paths = [_find_audio(uid, index, audio_dir, w) for uid, w in zip(df[id_column], wheres)]
    train = pd.DataFrame({
        "utt_id": df[id_column],
        "path": [str(p) for p in paths],
        "duration": np.round(_durations(zip(paths, wheres), workers), 6),
        "label": np.where(values == spoof, "spoof", "bonafide"),
    })
    for column in mf.METADATA_COLUMNS:
        if column in df.columns and column not in (id_column, label_column):
            train[column] = df[column].replace("", np.nan).to_numpy()
    fallback = train["speaker"].fillna(train["utt_id"]) if "speaker" in train.columns else train["utt_id"]
    train["group"] = train["group"].fillna(fallback) if "group" in train.columns else fallback
    if "source" not in train.columns:
        train["source"] = "competition"
    test = None
    if test_dir is not None:
        use_names = sum(uid in index[0] for uid in train["utt_id"]) * 2 > len(train)
        test = _test_frame(Path(test_dir).absolute(), use_names, workers)
        clash = set(test["utt_id"]) & set(train["utt_id"])
        if clash:
            raise ManifestError(f"{test_dir}: utt_id '{sorted(clash)[0]}' is also in {csv_path}")
    out = Path(out)
    competition = {"id_column": id_column, "label_column": label_column, "positive": "spoof",
                   "positive_value": _as_json_value(spoof), "negative_value": _as_json_value(negative)}
    notes = (f"Competition CSV: id column `{id_column}`, label column `{label_column}`, "
             f"{spoof} = spoof, {negative} = bona fide (see competition.json). Test labels are hidden "
             "(no solution.csv). Segment labels are constant per utterance; group = "
             + ("speaker." if "speaker" in train.columns else "utt_id."))
    card = _card(out.name, str(csv_path), {"train": train, "test": test}, notes)
    return _write_dataset(out, train, _constant(train), test, None, None, card, competition, force)
