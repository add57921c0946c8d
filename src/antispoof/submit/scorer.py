"""The local leaderboard scorer: scores every file antispoof.submit.writer writes, as a real leaderboard would.

  * a label and/or score CSV in the competition's format (competition.json, data/layout.py: its
    columns, label values, header or not, ids with their extension):
    F1 / precision / recall / accuracy of the labels; EER, minDCF, actDCF, Cllr, best F1 and
    EER per attack and language of the scores;
  * an ASVspoof 5 score TSV (`filename<TAB>cm-score`), scored as a score column;
  * a spoofed-regions file (`<id>,start,end`), scored against the hidden 10 ms labels;
  * ASVspoof 5 score and key TSVs (`antispoof evaluate`): eer, min_dcf, act_dcf, cllr.
One reader takes every CSV and TSV as strings. Anything a real leaderboard would refuse fails
with one line naming the file (and row), instead of a partial join. Hidden solution files are
read only to score: here, by `antispoof train` for a fold's test metrics, and by
`antispoof compare`; no model or ensemble fit ever sees them.
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pandas as pd

from antispoof.data.layout import ASVSPOOF5_COLUMNS, SEGMENT_COLUMNS, encode_labels, load_competition
from antispoof.data.manifest import load_solution, read_manifest
from antispoof.metrics.conditions import eer_by_condition, f1_by_condition
from antispoof.metrics.detection import (act_dcf, binary_scores, bonafide_mask, cllr, compute_eer, min_dcf,
                                         utterance_metrics)
from antispoof.metrics.localisation import region_scores
from antispoof.schema import LABELS, SEGMENT_HOP_S, fail, first_row, read_text_table, require_columns

GROUP_COLUMNS = ("attack", "language")


class Truth:
    """A data set's answers, each file read at most once however many systems are scored against
    them (the ensemble scores a dozen): competition.json, solution.csv and, for segments and
    hidden-test reports, the test split joined with it and solution_segments.npz."""

    def __init__(self, data_dir, test: pd.DataFrame | None = None):
        self.data_dir = Path(data_dir)
        self._test = test  # test.csv as the caller read it, if it did
        self._hidden = None

    @functools.cached_property
    def competition(self) -> dict:
        return load_competition(self.data_dir)

    @functools.cached_property
    def solution(self) -> pd.DataFrame:
        return read_manifest(self.data_dir / "solution.csv", "solution")

    def hidden(self, needed_for: str | None = None) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
        """data.manifest.load_solution, from the solution.csv read here."""
        if self._hidden is None:
            known = self.solution if (self.data_dir / "solution.csv").is_file() else None
            self._hidden = load_solution(self.data_dir, needed_for, known, self._test)
        return self._hidden


# ---- reading submissions ----------------------------------------------------------------

def _read_strings(path: Path, sep: str = ",", header: bool = True) -> pd.DataFrame:
    """Every CSV or TSV the scorer reads, as strings (ids like '007' must survive)."""
    return read_text_table(path, sep=sep, dtype=str, keep_default_na=False, header=0 if header else None)


def _name_headerless(path: Path, df: pd.DataFrame, cfg: dict) -> pd.DataFrame:
    """Column names of a header-less file, by position: id, then label and/or score.

    With two columns the second is the label when every value is one of the competition's
    two label values, otherwise the score.
    """
    if df.shape[1] == 3:
        return df.set_axis([cfg["id_column"], cfg["label_column"], cfg["score_column"]], axis=1)
    if df.shape[1] != 2:
        fail(path, f"a header-less submission needs 2 or 3 columns, found {df.shape[1]}")
    second = df.iloc[:, 1]
    is_label = (_matches(second, cfg["positive_value"]) | _matches(second, cfg["negative_value"])).all()
    return df.set_axis([cfg["id_column"], cfg["label_column"] if is_label else cfg["score_column"]], axis=1)


def _has_regions_header(path: Path, cfg: dict) -> bool:
    """A regions file keeps its `<id>,start,end` header whatever the competition's header setting."""
    if not path.is_file():
        return False
    with open(path, encoding="utf-8", errors="replace") as f:
        first = f.readline().strip().split(",")
    return [c.strip() for c in first] == [cfg["id_column"], *SEGMENT_COLUMNS]


def _read_submission(path: Path, cfg: dict) -> pd.DataFrame:
    """The submission as strings (ids like '007' must survive), with its id column checked.

    An ASVspoof 5 TSV (.tsv) is read as a score submission: filename -> id, cm-score -> score.
    """
    if path.suffix.lower() == ".tsv":
        df = _read_strings(path, sep="\t")
        require_columns(path, df, ASVSPOOF5_COLUMNS)
        clash = [c for c in (cfg["id_column"], cfg["score_column"]) if c in df.columns and c not in ASVSPOOF5_COLUMNS]
        if clash:  # renaming would give two columns of one name
            fail(path, f"column '{clash[0]}' beside {', '.join(ASVSPOOF5_COLUMNS)}: which one is meant?")
        df = df.rename(columns=dict(zip(ASVSPOOF5_COLUMNS, (cfg["id_column"], cfg["score_column"]))))
    else:
        header = cfg["header"] or _has_regions_header(path, cfg)
        df = _read_strings(path, header=header)
        if not header:
            df = _name_headerless(path, df, cfg)
    id_col = cfg["id_column"]
    if id_col not in df.columns:
        fail(path, f"missing id column '{id_col}'; found {', '.join(map(str, df.columns))}")
    ids = df[id_col].str.strip()
    if (ids == "").any():
        fail(path, f"empty {id_col}", row=first_row(ids == ""))
    df[id_col] = _without_extension(path, ids, cfg)
    df["_row"] = np.arange(1, len(df) + 1)
    return df


def _without_extension(path: Path, ids: pd.Series, cfg: dict) -> pd.Series:
    """The competition's ids back to utt_ids: its id_extension (e.g. `.wav`) removed, and an id
    without it refused, as the competition's own scorer would not find that file."""
    extension = cfg["id_extension"]
    if not extension:
        return ids
    lacking = ~ids.str.endswith(extension)
    if lacking.any():
        row = first_row(lacking)
        fail(path, f"{cfg['id_column']} '{ids.iloc[row - 1]}' does not end in '{extension}'", row=row)
    return ids.str[: -len(extension)]


def _check_utterance_columns(path: Path, df: pd.DataFrame, cfg: dict) -> None:
    id_col = cfg["id_column"]
    if cfg["label_column"] not in df.columns and cfg["score_column"] not in df.columns:
        fail(path, f"needs a '{cfg['label_column']}' and/or a '{cfg['score_column']}' column; "
                    f"found {', '.join(c for c in map(str, df.columns) if c != '_row')}")
    if df[id_col].duplicated().any():
        row = first_row(df[id_col].duplicated())
        fail(path, f"duplicate {id_col} '{df[id_col].iloc[row - 1]}'", row=row)


def _align(path: Path, df: pd.DataFrame, solution: pd.DataFrame, id_col: str) -> pd.DataFrame:
    """Submission rows in solution order; every solution id exactly once, nothing else."""
    wanted, given = set(solution["utt_id"]), set(df[id_col])
    missing, extra = sorted(wanted - given), sorted(given - wanted)
    if missing:
        fail(path, f"{len(missing)} of {len(wanted)} ids missing, e.g. '{missing[0]}'")
    if extra:
        fail(path, f"{len(extra)} id(s) not in the solution, e.g. '{extra[0]}'")
    return df.set_index(id_col).loc[solution["utt_id"]].reset_index()


def _matches(values: pd.Series, target) -> np.ndarray:
    """values == target as text, or as numbers when both are numeric ('1.0' means 1)."""
    text = values.str.strip()
    hit = (text == str(target).strip()).to_numpy()
    try:
        number = float(target)
    except (TypeError, ValueError):
        return hit
    return hit | (pd.to_numeric(text, errors="coerce") == number).to_numpy()


def _predicted_positive(path: Path, df: pd.DataFrame, cfg: dict) -> np.ndarray:
    column = cfg["label_column"]
    pos, neg = _matches(df[column], cfg["positive_value"]), _matches(df[column], cfg["negative_value"])
    bad = ~(pos | neg)
    if bad.any():
        i = first_row(bad) - 1
        fail(path, f"{df[cfg['id_column']].iloc[i]}: {column} '{df[column].iloc[i]}' is not "
                    f"{cfg['positive_value']} or {cfg['negative_value']}", row=int(df["_row"].iloc[i]))
    return pos


def _numbers(path: Path, df: pd.DataFrame, column: str, id_col: str) -> np.ndarray:
    values = pd.to_numeric(df[column].str.strip(), errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(values)
    if bad.any():
        i = first_row(bad) - 1
        fail(path, f"{df[id_col].iloc[i]}: {column} '{df[column].iloc[i]}' is not a "
                    f"finite number", row=int(df["_row"].iloc[i]))
    return values


# ---- scoring ----------------------------------------------------------------------------

def _group_eers(scores: np.ndarray, solution: pd.DataFrame, column: str) -> dict:
    """EER per value of a metadata column, for groups where it is defined.

    For `attack`, as in ASVspoof, each attack's spoofs are scored against all bona fide
    trials (bona fide rows rarely carry an attack); other columns split both classes.
    """
    values = solution[column].astype(str).str.strip().to_numpy()
    present = (solution[column].notna() & (values != "")).to_numpy()
    bona = bonafide_mask(solution["label"])
    out = {}
    for group in sorted(set(values[present & ~bona])):
        in_group = present & (values == group)
        bona_rows = bona if column == "attack" else bona & in_group
        if bona_rows.any():
            out[group] = compute_eer(scores[bona_rows], scores[~bona & in_group])[0]
    return out


def _score_metrics(scores: np.ndarray, solution: pd.DataFrame, positive: str) -> dict:
    m = utterance_metrics(scores, solution["label"].to_numpy(), positive)
    out = {k: m[k] for k in ("eer", "eer_threshold", "min_dcf", "act_dcf", "cllr", "f1_at_eer",
                             "best_f1", "best_f1_threshold")}
    for column in GROUP_COLUMNS:
        if column in solution.columns:
            out[f"eer_by_{column}"] = _group_eers(scores, solution, column)
    if "condition" in solution.columns:
        out["eer_by_condition"] = eer_by_condition(scores, solution["label"], solution["condition"])
    return out


def _utterance_rows(path: Path, df: pd.DataFrame, truth: Truth) -> tuple[pd.DataFrame, pd.DataFrame]:
    """An utterance submission checked and in solution order, with the solution beside it."""
    cfg = truth.competition
    _check_utterance_columns(path, df, cfg)
    solution = truth.solution
    return _align(path, df, solution, cfg["id_column"]), solution


def _score_utterances(path: Path, df: pd.DataFrame, truth: Truth) -> dict:
    df, solution = _utterance_rows(path, df, truth)
    cfg, data_dir = truth.competition, truth.data_dir
    truth_bona = bonafide_mask(solution["label"])
    result = {"n": int(len(solution)), "n_bonafide": int(truth_bona.sum()),
              "n_spoof": int((~truth_bona).sum())}
    if cfg["label_column"] in df.columns:
        truth = truth_bona if cfg["positive"] == "bonafide" else ~truth_bona
        predicted = _predicted_positive(path, df, cfg)
        result.update(binary_scores(truth, predicted))
        if "condition" in solution.columns:
            result["f1_by_condition"] = f1_by_condition(truth, predicted, solution["condition"])
    if cfg["score_column"] in df.columns:
        if truth_bona.all() or not truth_bona.any():
            fail(data_dir / "solution.csv", "needs both bonafide and spoof rows to score a 'score' column")
        scores = _numbers(path, df, cfg["score_column"], cfg["id_column"])
        result.update(_score_metrics(scores, solution, cfg["positive"]))
    return result


def region_frames(regions: pd.DataFrame, n_frames: int, hop_s: float = SEGMENT_HOP_S) -> np.ndarray:
    """10 ms labels (1 = bona fide, 0 = spoof) of a clip from its spoofed regions.

    A frame is spoofed when its centre lies in [start, end): regions on the 10 ms grid map
    back to exactly the frames they were made from.
    """
    frames = np.ones(n_frames, dtype=np.int8)
    for start, end in zip(regions["start"], regions["end"]):
        first = int(np.ceil(round(start / hop_s - 0.5, 6)))
        stop = int(np.ceil(round(end / hop_s - 0.5, 6)))
        frames[max(first, 0): max(stop, 0)] = 0
    return frames


def _score_segments(path: Path, df: pd.DataFrame, truth: Truth) -> dict:
    """Frame-level (10 ms, point-based) and derived utterance-level F1 of a spoofed-regions file, and
    its time-based region_* and IoU-matched event_* precision / recall / F1 (metrics.localisation)."""
    cfg = truth.competition
    id_col = cfg["id_column"]
    test, hidden = truth.hidden("to score segments")
    extra = sorted(set(df[id_col]) - set(test["utt_id"]))
    if extra:
        fail(path, f"{len(extra)} id(s) not in the solution, e.g. '{extra[0]}'")
    df = df.assign(start=_numbers(path, df, "start", id_col), end=_numbers(path, df, "end", id_col))
    bad = (df["start"] < 0) | (df["end"] <= df["start"])
    if bad.any():
        i = first_row(bad) - 1
        fail(path, f"{df[id_col].iloc[i]}: region {df['start'].iloc[i]}-{df['end'].iloc[i]} s is not "
                    f"0 <= start < end", row=int(df["_row"].iloc[i]))
    by_id = dict(tuple(df.groupby(id_col)))
    empty = df.iloc[:0]
    pred = {u: region_frames(by_id.get(u, empty), hidden[u].size) for u in test["utt_id"]}
    truth_bona = np.concatenate([hidden[u] == 1 for u in test["utt_id"]])
    pred_bona = np.concatenate([pred[u] == 1 for u in test["utt_id"]])
    flip = cfg["positive"] == "spoof"
    frame = binary_scores(truth_bona ^ flip, pred_bona ^ flip)
    utt_truth = bonafide_mask(test["label"])
    utt_pred = np.array([bool(pred[u].all()) for u in test["utt_id"]])
    result = {"n": int(len(test)), "n_regions": int(len(df)), "n_frames": int(truth_bona.size)}
    result.update({f"segment_{k}": v for k, v in frame.items()})
    result.update({f"utterance_{k}": v for k, v in binary_scores(utt_truth ^ flip, utt_pred ^ flip).items()})
    spans = {u: g[["start", "end"]].to_numpy(float) for u, g in by_id.items()}  # in seconds, spoof positive
    result.update(region_scores(spans, {u: hidden[u] for u in test["utt_id"]}))
    return result


def score_submission(submission_csv, data_dir, truth: Truth | None = None) -> dict:
    """Leaderboard numbers of a submission against `<data_dir>/solution.csv`.

    Hard labels give f1 / precision / recall / accuracy (positive class from
    competition.json, spoof by default); scores (a CSV score column or an ASVspoof 5 TSV)
    give EER, minDCF, actDCF, Cllr, best F1 and F1 at the EER threshold, plus EER per
    attack / language / condition where solution.csv has them (F1 per condition for hard labels); a regions file (start, end columns) gives
    segment_* (10 ms frames, pooled) and utterance_* (a clip with a region is spoof) scores, and
    region_* (seconds, spoof positive), range_frr / range_far and event_* (IoU >= 0.5) figures.
    `truth`: the data set's answers as already read (Truth(data_dir) otherwise).
    """
    path, truth = Path(submission_csv), truth or Truth(data_dir)
    df = _read_submission(path, truth.competition)
    if all(c in df.columns for c in SEGMENT_COLUMNS):
        return _score_segments(path, df, truth)
    return _score_utterances(path, df, truth)


def submission_scores(submission_csv, data_dir, truth: Truth | None = None) -> pd.Series:
    """A score submission's scores (higher = more bona fide, as every score column here) by
    utt_id, read and checked exactly as scoring it would (for paired comparisons)."""
    path, truth = Path(submission_csv), truth or Truth(data_dir)
    cfg = truth.competition
    df = _read_submission(path, cfg)
    if cfg["score_column"] not in df.columns:
        fail(path, f"no '{cfg['score_column']}' column: a comparison needs scores (a <name>_eer.csv or an "
                   "ASVspoof 5 TSV), not hard labels")
    df, solution = _utterance_rows(path, df, truth)
    return pd.Series(_numbers(path, df, cfg["score_column"], cfg["id_column"]), index=solution["utt_id"].to_numpy())


def score_predictions(ids, data_dir, scores=None, is_spoof=None, source: str = "<in memory>",
                      truth: Truth | None = None) -> dict:
    """What score_submission would say about these predictions, without writing a file.

    The ensemble uses it for the rows it does not submit (single models, other vote modes);
    the values go through the same text conversion as a file, so the numbers are identical.
    """
    truth = truth or Truth(data_dir)
    cfg = truth.competition
    columns = {cfg["id_column"]: np.asarray(ids, dtype=str)}
    if is_spoof is not None:
        columns[cfg["label_column"]] = encode_labels(is_spoof, cfg).astype(str)
    if scores is not None:
        columns[cfg["score_column"]] = [repr(float(s)) for s in scores]
    df = pd.DataFrame(columns).astype(str)
    df["_row"] = np.arange(1, len(df) + 1)
    return _score_utterances(Path(source), df, truth)


# ---- ASVspoof 5 score / key files -------------------------------------------------------

_ALIASES = {"trial_anon": "filename", "cm_label": "cm-label"}


def _read_tsv(path, column: str) -> pd.DataFrame:
    """A headed TSV as strings, with a unique non-empty `filename` and the given column."""
    path = Path(path)
    df = _read_strings(path, sep="\t")
    df = df.rename(columns={k: v for k, v in _ALIASES.items() if v not in df.columns})
    require_columns(path, df, ("filename", column))
    names = df["filename"]  # matched exactly, as the official package does
    for bad, problem in ((names == "", "empty filename"), (names.duplicated(), "duplicate filename")):
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            fail(path, f"{problem} '{names.iloc[i]}'", row=i + 1)
    return df


def _first_bad(path, df, bad, column: str, expected: str):
    bad = np.asarray(bad, dtype=bool)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        fail(path, f"{df['filename'].iloc[i]}: bad {column} '{df[column].iloc[i]}' ({expected})", row=i + 1)


def _refuse_unmatched(path, names: pd.Series, unmatched: np.ndarray, problem: str):
    if unmatched.any():
        fail(path, f"{int(unmatched.sum())} filename(s) {problem}, e.g. '{names[unmatched].iloc[0]}'")


def evaluate_files(scores_tsv, keys_tsv) -> dict:
    """eer, min_dcf, act_dcf, cllr (fractions) from ASVspoof 5 score and key TSV files.

    Every malformed input raises a one-line ManifestError naming the file and row/filename,
    because a metric quietly computed on a partial join is worse than no metric.
    """
    scores_df, keys_df = _read_tsv(scores_tsv, "cm-score"), _read_tsv(keys_tsv, "cm-label")
    values = pd.to_numeric(scores_df["cm-score"], errors="coerce").to_numpy(dtype=float)
    _first_bad(scores_tsv, scores_df, ~np.isfinite(values), "cm-score", "expected a finite number")
    labels = keys_df["cm-label"]
    if not labels.isin(LABELS).all():  # strip only when needed: it costs seconds on 1e6 rows
        labels = labels.str.strip()
    _first_bad(keys_tsv, keys_df, ~labels.isin(LABELS), "cm-label", "expected bonafide or spoof")
    scored, keyed = scores_df["filename"], keys_df["filename"]
    key_of_score = pd.Index(keyed).get_indexer(scored)
    _refuse_unmatched(scores_tsv, keyed, pd.Index(scored).get_indexer(keyed) < 0,
                      f"of {keys_tsv} have no score")
    _refuse_unmatched(scores_tsv, scored, key_of_score < 0, f"have a score but no key in {keys_tsv}")
    is_bona = (labels == "bonafide").to_numpy()[key_of_score]
    if is_bona.all() or not is_bona.any():
        fail(keys_tsv, "needs both bonafide and spoof trials")
    bona, spoof = values[is_bona], values[~is_bona]
    return {"eer": compute_eer(bona, spoof)[0], "min_dcf": min_dcf(bona, spoof)[0],
            "act_dcf": act_dcf(bona, spoof)[0], "cllr": cllr(bona, spoof)}
