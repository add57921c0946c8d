"""Importer for a competition's labelled CSV (FinVolution-style `speech_name,label`) and an
optional folder of unlabelled test audio; competition.json records the 0/1 coding the
submission writer maps back to."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from antispoof.data import manifest as mf
from antispoof.importers.common import constant_labels, data_card, file_durations, folder_index, test_frame, write_imported
from antispoof.schema import ManifestError, read_text_table, require_columns


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
    index = folder_index(audio_dir)
    wheres = [f"{csv_path} row {i + 1}" for i in range(len(df))]
    paths = [_find_audio(uid, index, audio_dir, w) for uid, w in zip(df[id_column], wheres)]
    train = pd.DataFrame({
        "utt_id": df[id_column],
        "path": [str(p) for p in paths],
        "duration": np.round(file_durations(zip(paths, wheres), workers), 6),
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
        test = test_frame(Path(test_dir).absolute(), use_names, workers)
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
    card = data_card(out.name, str(csv_path), {"train": train, "test": test}, notes)
    return write_imported(out, train, constant_labels(train), test, None, None, card, competition, force)
