"""Importers for corpora as they are published: FinVolution 2024, ASVspoof 5, ASVspoof 2021 LA / DF
and In-the-Wild (PartialSpoof, ASVspoof 2019 LA and any competition CSV are in importers/protocols.py and competition_csv.py).

Each reads its corpus exactly as distributed (file names, folders, column order, header or not, the
corpus's own label words), because rewriting a protocol by hand is where a first row gets dropped as
a header or 0 and 1 get swapped without anybody noticing. The rest is shared with importers/common.py:
audio is never copied (absolute paths); every problem is a one-line ManifestError naming the file and
line before anything is written; every file goes through layout.write_splits (via `write_imported`).

ASVspoof 2021 and In-the-Wild are evaluation sets without a training split: their trials become the
test split with its solution, and `train_from` takes train.csv and its segment labels from a data set
imported before (ASVspoof 2019 LA, the set both are usually evaluated after, or any other); without
it train.csv is empty. All four corpora are wholly bona fide or wholly spoofed per utterance, so
their segment labels are constant.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from antispoof.config import ConfigError
from antispoof.data import manifest as mf
from antispoof.importers.common import (ENGLISH, constant_labels, data_card, file_durations, find_root, read_fields,
                                        test_frame, write_imported, write_protocol_corpus)
from antispoof.schema import fail, first_row, read_text_table, require_columns

FORMATS = ("finvolution", "asvspoof5", "asvspoof2021", "inthewild")
TRACKS = ("LA", "DF")


# ---- space-separated protocols ---------------------------------------------------------------------

def _read_trials(path: Path, columns: tuple[tuple[str, str | None], ...], seen: dict[str, str]) -> list[dict]:
    """importers.read_fields, and a protocol without a trial is refused (these corpora always list some)."""
    rows = read_fields(path, columns, seen)
    if not rows:
        fail(path, "no trials in the protocol file")
    return rows


def _frame(rows: list[dict], audio_path, source: str, workers: int) -> pd.DataFrame:
    """Manifest rows, in the column order of importers/common.py, then the corpus's own metadata;
    group = speaker (every clip of a talker in one fold)."""
    paths = [Path(audio_path(r)).absolute() for r in rows]
    durations = file_durations(zip(paths, (r["where"] for r in rows)), workers)
    frame = pd.DataFrame({"utt_id": [r["utt_id"] for r in rows], "path": [str(p) for p in paths],
                          "duration": np.round(durations, 6), "label": [r["label"] for r in rows],
                          "attack": [r["attack"] for r in rows], "speaker": [r["speaker"] for r in rows]})
    frame["group"], frame["source"], frame["language"] = frame["speaker"], source, ENGLISH
    for column in rows[0]:
        if column not in frame.columns and column != "where":
            frame[column] = [r[column] for r in rows]
    return frame


def _places(folders, names) -> list[Path]:
    """Every candidate path, name by name (corpora were repackaged under a few names and folders)."""
    return [folder / name for name in names for folder in folders]


def _find(folders, names) -> Path | None:
    """The first of `names` found in any of `folders`, or None."""
    return next((place for place in _places(folders, names) if place.exists()), None)


def _not_found(root: Path, what: str, folders, names):
    """Fail naming every place looked: a copy laid out under another name is then fixed at once,
    instead of one rename per attempt."""
    fail(root, f"{what} not found; looked for {', '.join(map(str, _places(folders, names)))}")


# ---- evaluation-only corpora -----------------------------------------------------------------------

def _train_from(data_dir, test: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """train.csv (paths made absolute, audio checked) and its 10 ms labels of another data set."""
    data_dir = Path(data_dir).absolute()
    train = mf.load_split(data_dir, "train")
    segments = mf.load_segments(data_dir / "train_segments.npz", train)
    train["path"] = train.pop("audio")
    clash = sorted(set(train["utt_id"]) & set(test["utt_id"]))
    if clash:
        fail(data_dir / "train.csv", f"utt_id '{clash[0]}' is also a trial of the corpus being imported")
    return train, segments


def _write_eval_corpus(out, title: str, origin: Path, test: pd.DataFrame, train_from, notes: str,
                       force: bool = False) -> Path:
    """Every trial -> test.csv (what a competitor sees) + solution.csv (labels, metadata); train.csv
    from `train_from` or empty; then the data card."""
    if train_from is not None:
        train, train_segments = _train_from(train_from, test)
        notes += f" train.csv and its segment labels were taken from `{Path(train_from).absolute()}`."
    else:
        train, train_segments = pd.DataFrame(columns=list(mf.TRAIN_COLUMNS)), {}
        notes += (" No training split: train.csv is empty (import again with --train-from DATASET, e.g. "
                  "an ASVspoof 2019 LA import, to train here).")
    card = data_card(title, str(origin), {"train": train, "test": test}, notes)
    return write_imported(Path(out), train, train_segments, test[list(mf.TEST_COLUMNS)],
                          test.drop(columns=["path", "duration"]), constant_labels(test), card, force=force)


# ---- FinVolution 2024 -------------------------------------------------------------------------------

FIN_SPOOF, FIN_BONAFIDE = "0", "1"  # the seed team's code labels pitch-shifted and fake-spliced clips 0


def import_finvolution(root: str | Path, out: str | Path, workers: int = 8, force: bool = False) -> Path:
    """FinVolution 2024: `train_label.txt` (no header, lines `name.wav,0|1`, 0 = fake), audio in
    `train/`, unlabelled `test/` (optional). The competition's format goes to competition.json: no
    header, `name.wav,label`, 0 = spoof, 1 = bona fide; utt_ids are the names without the
    extension all files share, which id_extension puts back in every submission.
    """
    root = Path(root).absolute()
    labels_path, train_dir, test_dir = root / "train_label.txt", root / "train", root / "test"
    df = read_text_table(labels_path, header=None, dtype=str, keep_default_na=False)
    if df.shape[1] != 2:
        fail(labels_path, f"expected 2 fields per line 'name.wav,0|1' (no header), found {df.shape[1]}")
    names, values = df[0].fillna("").str.strip(), df[1].fillna("").str.strip()
    for mask, problem in ((names == "", "empty name"), (names.duplicated(), "duplicate name")):
        if mask.any():
            row = first_row(mask)
            fail(labels_path, f"{problem} '{names.iloc[row - 1]}'", row)
    bad = ~values.isin([FIN_SPOOF, FIN_BONAFIDE])
    if bad.any():
        row = first_row(bad)
        fail(labels_path, f"label '{values.iloc[row - 1]}' of '{names.iloc[row - 1]}' is not {FIN_SPOOF} (spoof) "
                          f"or {FIN_BONAFIDE} (bona fide)" + (" (the file has no header)" if row == 1 else ""), row)
    if not train_dir.is_dir():
        fail(train_dir, "audio folder not found")
    paths = [train_dir / name for name in names]
    wheres = [f"{labels_path} row {i}" for i in range(1, len(names) + 1)]
    train = pd.DataFrame({"utt_id": names, "path": [str(p) for p in paths],
                          "duration": np.round(file_durations(zip(paths, wheres), workers), 6),
                          "label": np.where(values == FIN_SPOOF, "spoof", "bonafide")})
    train["group"], train["source"] = train["utt_id"], "finvolution"
    test = test_frame(test_dir, True, workers) if test_dir.is_dir() else None
    suffixes = {Path(name).suffix for name in [*train["utt_id"], *([] if test is None else test["utt_id"])]}
    extension = suffixes.pop() if len(suffixes) == 1 else ""
    if not re.fullmatch(r"\.[A-Za-z0-9_-]+", extension):  # no shared extension competition.json could name
        extension = ""
    if extension:  # bare stems, like every other corpus; the writers append the extension again
        for frame in (train, *([] if test is None else [test])):
            frame["utt_id"] = frame["utt_id"].str[: -len(extension)]
    if test is not None:
        clash = sorted(set(test["utt_id"]) & set(train["utt_id"]))
        if clash:
            fail(test_dir, f"'{clash[0]}{extension}' is also in {labels_path}")
    competition = {"id_column": "speech_name", "label_column": "label", "positive": "spoof",
                   "positive_value": int(FIN_SPOOF), "negative_value": int(FIN_BONAFIDE), "header": False,
                   "id_extension": extension}
    notes = (f"FinVolution 2024 (Deepfake Speech Detection): `train_label.txt` has no header; {FIN_SPOOF} = spoof, "
             f"{FIN_BONAFIDE} = bona fide. Submissions (competition.json) are written as the competition's baseline "
             f"writes them: no header, `name{extension},label` lines with {FIN_SPOOF} = spoof. The local F1 takes "
             "spoof as its positive class (the project default); if the leaderboard's F1 is on 1 = bona fide, set "
             "\"positive\": \"bonafide\", \"positive_value\": 1, \"negative_value\": 0 (the files stay byte-identical). "
             "Test labels are hidden (no solution.csv); segment labels constant; group = utt_id.")
    out = Path(out)
    card = data_card("FinVolution 2024", str(root), {"train": train, "test": test}, notes)
    return write_imported(out, train, constant_labels(train), test, None, None, card, competition, force)


# ---- ASVspoof 5 --------------------------------------------------------------------------------------

ASV5_COLUMNS = (("speaker", "speaker"), ("file", "utt_id"), ("gender", "gender"), ("codec", "codec"),
                ("codec_q", "codec_q"), ("codec_seed", None), ("attack_tag", "attack_tag"),
                ("attack_label", "attack"), ("key", "label"), ("tmp", None))
ASV5_PROTOCOLS = {"train": ("ASVspoof5.train.tsv",), "dev": ("ASVspoof5.dev.track_1.tsv", "ASVspoof5.dev.tsv"),
                  "eval": ("ASVspoof5.eval.track_1.tsv", "ASVspoof5.eval.tsv")}
ASV5_AUDIO = {"train": ("flac_T",), "dev": ("flac_D",), "eval": ("flac_E_eval", "flac_E")}
ASV5_MARKERS = ("flac_T", "ASVspoof5_protocols", "ASVspoof5.train.tsv")  # any of them marks the corpus folder


def _asv5_root(root: Path) -> Path:
    """The corpus folder (`root` or its `ASVspoof5/`), recognised by its training audio or any of its
    protocol places, so a copy lacking flac_T still gets an error that lists the right places."""
    for marker in ASV5_MARKERS:
        found = find_root(root, marker, ["ASVspoof5"])
        if (found / marker).exists():
            return found
    return Path(root).absolute()


def _asv5_partitions(root: Path) -> dict[str, tuple[Path, Path]]:
    """(protocol, audio folder) of each partition present, in release order. train is required; dev
    and eval count as present when their protocol or their audio is, and then need both: a copy
    holding half of a partition is incomplete, not a smaller corpus (and silently dropping eval
    would make dev the test split)."""
    folders = [root, root / "ASVspoof5_protocols"]
    present = {}
    for subset in ("train", "dev", "eval"):
        protocol, audio = _find(folders, ASV5_PROTOCOLS[subset]), _find([root], ASV5_AUDIO[subset])
        if subset != "train" and protocol is None and audio is None:
            continue
        if protocol is None:
            _not_found(root, f"ASVspoof 5 {subset} protocol", folders, ASV5_PROTOCOLS[subset])
        if audio is None or not audio.is_dir():
            _not_found(root, f"ASVspoof 5 {subset} audio folder", [root], ASV5_AUDIO[subset])
        present[subset] = (protocol, audio)
    return present


def import_asvspoof5(root: str | Path, out: str | Path, workers: int = 8, force: bool = False) -> Path:
    """ASVspoof 5 (track 1), whichever partitions the copy holds: the latest present (eval, else dev)
    is the test split (test.csv + solution.csv), the earlier ones train.csv; with train alone there is
    no test split. The corpus was released in stages (train and dev first, eval keys later), so a
    copy with train only, or train + dev, is a real corpus, not a broken one.

    Protocols `ASVspoof5.{train,dev[.track_1],eval[.track_1]}.tsv` in `root` or its
    `ASVspoof5_protocols/`: space-separated, no header, 10 fields (speaker, file, gender, codec,
    codec_q, codec_seed, attack_tag, attack_label, key, tmp). Audio `flac_T/`, `flac_D/`,
    `flac_E_eval/` (or `flac_E/`).
    """
    root = _asv5_root(Path(root))
    partitions = _asv5_partitions(root)
    seen: dict[str, str] = {}
    frames = {}
    for subset, (protocol, audio) in partitions.items():
        rows = _read_trials(protocol, ASV5_COLUMNS, seen)
        frames[subset] = _frame(rows, lambda r: audio / f"{r['utt_id']}.flac", "asvspoof5", workers)
        frames[subset]["subset"] = subset
    test = list(frames)[-1] if len(frames) > 1 else None
    parts = [subset for subset in frames if subset != test]
    if test is None:
        print(f"{root}: only the ASVspoof 5 training partition is present (no dev or eval protocol or audio): "
              "no test split, train.csv only")
        split = "Only the training partition was present: train.csv holds it, and there is no test split. "
    else:
        split = (f"train.csv holds {' + '.join(parts)}; the test split (test.csv, solution.csv) is the {test} "
                 "partition" + ("" if test == "eval" else ", the latest present (no eval partition)") + ". ")
    notes = ("ASVspoof 5 (track 1, countermeasures): bona fide MLS English speech and TTS/VC spoofs, attacks "
             "A01-A32 (eval attacks unseen in train/dev), eval through codecs (`codec`, `codec_q`). " + split +
             "`subset` keeps each row's official partition; group = speaker; segment labels are constant per "
             "utterance. Score files for the official evaluation: `write_asvspoof5_scores` (filename<TAB>cm-score).")
    segments = {subset: constant_labels(frame) for subset, frame in frames.items()}
    return write_protocol_corpus(out, "ASVspoof 5", root, frames, segments, notes, force, test=test)


# ---- ASVspoof 2021 LA / DF ---------------------------------------------------------------------------

ASV21_COLUMNS = {
    "LA": (("speaker", "speaker"), ("trial", "utt_id"), ("codec", "codec"), ("transmission", "transmission"),
           ("attack", "attack"), ("key", "label"), ("trim", "trim"), ("phase", "subset")),
    "DF": (("speaker", "speaker"), ("trial", "utt_id"), ("codec", "codec"), ("source", "corpus"),
           ("attack", "attack"), ("key", "label"), ("trim", "trim"), ("phase", "subset"), ("vocoder", "vocoder"),
           ("-", None), ("-", None), ("-", None), ("-", None)),
}


def _audio_index(folders: list[Path]) -> dict[str, Path]:
    """File name -> folder over the folders that exist: one directory scan instead of a stat per
    trial (DF has 611,829 of them, spread over four archive parts)."""
    index: dict[str, Path] = {}
    for folder in folders:
        if folder.is_dir():
            with os.scandir(folder) as entries:
                for entry in entries:
                    index.setdefault(entry.name, folder)
    return index


def import_asvspoof2021(root: str | Path, out: str | Path, track: str, train_from=None, workers: int = 8,
                        force: bool = False) -> Path:
    """ASVspoof 2021 LA or DF evaluation set: every trial -> test/solution (`subset` = phase:
    progress, eval, hidden_track); train.csv from `train_from` (usually an ASVspoof 2019 LA import).

    Keys `keys/{LA,DF}/CM/trial_metadata.txt` (LA 8 fields, DF 13); audio
    `ASVspoof2021_{LA,DF}_eval/flac/`, or DF's archive parts `ASVspoof2021_DF_eval_part*/ASVspoof2021_DF_eval/flac/`.
    """
    track = str(track or "").upper()
    if track not in TRACKS:
        raise ConfigError(f"ASVspoof 2021: track must be LA or DF, not {track or 'none'!r} (--track)")
    root = Path(root).absolute()
    rows = _read_trials(root / "keys" / track / "CM" / "trial_metadata.txt", ASV21_COLUMNS[track], {})
    name = f"ASVspoof2021_{track}_eval"
    folders = [root / name / "flac", *sorted(root.glob(f"{name}_part*/{name}/flac"))]
    index = _audio_index(folders)
    frame = _frame(rows, lambda r: index.get(f"{r['utt_id']}.flac", folders[0]) / f"{r['utt_id']}.flac",
                   f"asvspoof2021_{track.lower()}", workers)
    what = ("logical access: ASVspoof 2019 LA attacks sent through telephony codecs (`codec`, `transmission`)"
            if track == "LA" else "deepfake: TTS/VC spoofs and bona fide speech from ASVspoof 2019 LA, VCC 2018 and "
            "VCC 2020 (`corpus`, `vocoder`), through media codecs (`codec`)")
    notes = (f"ASVspoof 2021 {track} ({what}). Every trial is in the test split; `subset` is the phase "
             "(progress / eval / hidden_track); group = speaker; segment labels are constant per utterance.")
    return _write_eval_corpus(out, f"ASVspoof 2021 {track}", root, frame, train_from, notes, force)


# ---- In-the-Wild -------------------------------------------------------------------------------------

ITW_LABELS = {"bona-fide": "bonafide", "spoof": "spoof"}


def import_inthewild(root: str | Path, out: str | Path, train_from=None, workers: int = 8,
                     force: bool = False) -> Path:
    """In-the-Wild (Müller et al. 2022): `release_in_the_wild/meta.csv` (`file,speaker,label`, labels
    `bona-fide` / `spoof`) beside the audio; every clip -> test/solution, utt_id = the file's stem."""
    root = find_root(Path(root), "meta.csv", ["release_in_the_wild"])
    meta = root / "meta.csv"
    df = read_text_table(meta, dtype=str, keep_default_na=False)
    require_columns(meta, df, ("file", "speaker", "label"))
    files, labels = df["file"].str.strip(), df["label"].str.strip().map(ITW_LABELS)
    ids = files.map(lambda f: Path(f).stem)
    for mask, problem in ((files == "", "empty file"), (ids.duplicated(), "duplicate utt_id")):
        if mask.any():
            row = first_row(mask)
            fail(meta, f"{problem} '{ids.iloc[row - 1]}'", row)
    if labels.isna().any():
        row = first_row(labels.isna())
        fail(meta, f"unknown label '{df['label'].iloc[row - 1]}' (expected bona-fide or spoof)", row)
    paths = [(root / f).absolute() for f in files]
    wheres = [f"{meta} row {i}" for i in range(1, len(df) + 1)]
    frame = pd.DataFrame({"utt_id": ids, "path": [str(p) for p in paths],
                          "duration": np.round(file_durations(zip(paths, wheres), workers), 6), "label": labels,
                          "speaker": df["speaker"].str.strip()})
    frame["group"], frame["source"], frame["language"] = frame["speaker"], "in_the_wild", ENGLISH
    notes = ("In-the-Wild: English speech of public figures, bona fide recordings and deepfakes found online "
             "(`bona-fide` -> bonafide). Every clip is in the test split; group = speaker; segment labels "
             "are constant per utterance.")
    return _write_eval_corpus(out, "In-the-Wild", root, frame, train_from, notes, force)


# ---- the `antispoof import` entry ---------------------------------------------------------------------

def import_native(fmt: str, root, out, track: str | None = None, train_from=None, workers: int = 8,
                  force: bool = False) -> Path:
    """`antispoof import <format> --root ... [--track] [--train-from]`: misuse is a ConfigError line."""
    if train_from is not None and fmt not in ("asvspoof2021", "inthewild"):
        raise ConfigError(f"{fmt} has its own training split; --train-from is for asvspoof2021 and inthewild")
    if track is not None and fmt != "asvspoof2021":
        raise ConfigError(f"--track is for asvspoof2021 only, not {fmt}")
    if fmt == "finvolution":
        return import_finvolution(root, out, workers, force)
    if fmt == "asvspoof5":
        return import_asvspoof5(root, out, workers, force)
    if fmt == "asvspoof2021":
        return import_asvspoof2021(root, out, track, train_from, workers, force)
    if fmt == "inthewild":
        return import_inthewild(root, out, train_from, workers, force)
    raise ConfigError(f"unknown corpus format {fmt!r}; known: {', '.join(FORMATS)}")
