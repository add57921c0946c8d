"""Submission writers: every leaderboard file goes through here (antispoof.submit.scorer scores them).

A submission is a CSV with an id column and a hard `label` column (competition 0/1,
1 = spoof by default) and/or a `score` column (higher = more bona fide). The column names,
the 0/1 mapping, whether the file has a header and the extension its ids carry come from an
optional `<data_dir>/competition.json` (data/layout.py), so an imported competition keeps its own
format (e.g. FinVolution: no header, `name.wav,0|1`). Every writer here follows it; two more formats:
  * an ASVspoof 5 score file: TSV with the header `filename<TAB>cm-score`;
  * a segment file: `<id>,start,end` per spoofed region in seconds (several rows per clip,
    none for a clip without spoofed regions).
Every writer takes a `Competition`: the format and the ids test.csv expects, read once for all
the files of a submission (a data set folder also works; it is then read for that one file).
Writers refuse ids that do not match test.csv, with one line naming the file; nothing is written then.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from antispoof.data.layout import ASVSPOOF5_COLUMNS, SEGMENT_COLUMNS, encode_labels, load_competition
from antispoof.data.manifest import read_manifest
from antispoof.schema import fail
from antispoof.utils import write_csv_atomic


@dataclass(frozen=True)
class Competition:
    """What every submission file of a data set must look like: its format (competition.json over
    the defaults) and the ids it must cover, in test.csv order (no hidden label is read)."""

    format: dict
    ids: np.ndarray

    @classmethod
    def load(cls, data_dir) -> "Competition":
        cfg = load_competition(data_dir)
        return cls(cfg, read_manifest(Path(data_dir) / "test.csv", "test", check_files=False)["utt_id"].to_numpy())


def competition_of(target) -> Competition:
    """A loaded Competition as it is; a data set folder, read now."""
    return target if isinstance(target, Competition) else Competition.load(target)


def _checked_ids(path: Path, ids, expected, allow_missing: bool = False, allow_repeats: bool = False) -> pd.Series:
    """ids as strings, refused (one line naming the file) unless they match test.csv."""
    ids = pd.Series(np.asarray(ids, dtype=str))
    if not allow_repeats and ids.duplicated().any():
        fail(path, f"duplicate id '{ids[ids.duplicated()].iloc[0]}'; nothing written")
    wanted, given = set(expected), set(ids)
    missing, extra = sorted(wanted - given), sorted(given - wanted)
    if missing and not allow_missing:
        fail(path, f"{len(missing)} of {len(wanted)} test ids missing, e.g. '{missing[0]}'; nothing written")
    if extra:
        fail(path, f"{len(extra)} id(s) not in test.csv, e.g. '{extra[0]}'; nothing written")
    return ids


def _in_test_order(path: Path, ids, values: dict, competition: Competition) -> pd.DataFrame:
    """One row per test id, in test.csv order, with the given value columns."""
    expected = competition.ids
    ids = _checked_ids(path, ids, expected)
    df = pd.DataFrame({k: np.asarray(v) for k, v in values.items()}, index=ids.to_numpy()).loc[expected]
    return df.reset_index(drop=True).assign(_id=expected)


def _public_ids(ids, cfg: dict) -> pd.Series:
    """utt_ids as the competition spells them: with its id_extension appended (set where the
    importer stripped the one extension every file name shares, so utt_ids stay bare stems)."""
    return pd.Series(np.asarray(ids, dtype=str)) + cfg["id_extension"]


def _finite(path: Path, ids, scores) -> np.ndarray:
    scores = np.asarray(scores, dtype=float)
    if scores.shape != (len(ids),):
        fail(path, f"{scores.size} scores for {len(ids)} ids; nothing written")
    bad = ~np.isfinite(scores)
    if bad.any():
        fail(path, f"score of '{np.asarray(ids)[bad][0]}' is not a finite number; nothing written")
    return scores


def write_label_submission(path, ids, is_spoof, competition) -> Path:
    """Hard labels in the competition's 0/1 (positive class spoof unless competition.json says otherwise)."""
    path, competition = Path(path), competition_of(competition)
    cfg = competition.format
    df = _in_test_order(path, ids, {"spoof": np.asarray(is_spoof, dtype=bool)}, competition)
    out = pd.DataFrame({cfg["id_column"]: _public_ids(df["_id"], cfg),
                        cfg["label_column"]: encode_labels(df["spoof"], cfg)})
    write_csv_atomic(out, path, header=cfg["header"])
    return path


def write_score_submission(path, ids, scores, competition) -> Path:
    """Scores (higher = more bona fide), scored by EER and the other threshold-free metrics."""
    path, competition = Path(path), competition_of(competition)
    cfg = competition.format
    df = _in_test_order(path, ids, {"score": _finite(path, ids, scores)}, competition)
    out = pd.DataFrame({cfg["id_column"]: _public_ids(df["_id"], cfg), cfg["score_column"]: df["score"]})
    write_csv_atomic(out, path, header=cfg["header"])
    return path


def write_asvspoof5_scores(path, ids, scores, competition) -> Path:
    """ASVspoof 5 score file: TSV, header filename<TAB>cm-score (what `antispoof evaluate` reads)."""
    path, competition = Path(path), competition_of(competition)
    df = _in_test_order(path, ids, {"score": _finite(path, ids, scores)}, competition)
    out = pd.DataFrame({ASVSPOOF5_COLUMNS[0]: _public_ids(df["_id"], competition.format),
                        ASVSPOOF5_COLUMNS[1]: df["score"]})
    write_csv_atomic(out, path, sep="\t")
    return path


def write_segment_submission(path, regions: pd.DataFrame, competition) -> Path:
    """Spoofed regions: one row per region (utt_id, start, end in seconds); clips without any
    spoofed region have no row, so only unknown ids and malformed regions are refused. Always
    written with its header (also for a header-less competition): the header is what tells a
    regions file from a label file with a score column."""
    path, competition = Path(path), competition_of(competition)
    missing = [c for c in ("utt_id", *SEGMENT_COLUMNS) if c not in regions.columns]
    if missing:
        fail(path, f"regions lack column(s) {', '.join(missing)}; nothing written")
    ids = _checked_ids(path, regions["utt_id"], competition.ids, allow_missing=True, allow_repeats=True)
    start, end = regions["start"].to_numpy(float), regions["end"].to_numpy(float)
    bad = ~(np.isfinite(start) & np.isfinite(end) & (start >= 0) & (end > start))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        fail(path, f"region {start[i]}-{end[i]} s of '{ids.iloc[i]}' is not 0 <= start < end; nothing written")
    out = pd.DataFrame({competition.format["id_column"]: _public_ids(ids, competition.format),
                        "start": start, "end": end})
    write_csv_atomic(out, path)
    return path
