"""Submissions: the local leaderboard scorer (writers come later).

A submission is a CSV with an id column and a hard `label` column (competition 0/1,
1 = spoof by default) and/or a `score` column (higher = more bona fide). The column names
and the 0/1 mapping come from an optional `<data_dir>/competition.json`, so an imported
competition keeps its own format (e.g. `speech_name`). The scorer refuses anything a real
leaderboard would refuse, with one line naming the file, instead of scoring a partial join.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from antispoof.data.manifest import LABELS, fail, first_row, read_manifest
from antispoof.metrics import binary_scores, bonafide_mask, compute_eer, utterance_metrics

COMPETITION_DEFAULTS = {
    "id_column": "utt_id",
    "label_column": "label",
    "score_column": "score",
    "positive": "spoof",
    "positive_value": 1,
    "negative_value": 0,
}
GROUP_COLUMNS = ("attack", "language")


def load_competition(data_dir) -> dict:
    """Submission format of a data set: competition.json over the defaults."""
    path = Path(data_dir) / "competition.json"
    cfg = dict(COMPETITION_DEFAULTS)
    if not path.exists():
        return cfg
    try:
        given = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        fail(path, f"invalid JSON ({err})")
    if not isinstance(given, dict):
        fail(path, "expected a JSON object")
    unknown = sorted(set(given) - set(cfg))
    if unknown:
        fail(path, f"unknown key(s) {', '.join(unknown)}; known: {', '.join(cfg)}")
    cfg.update(given)
    if cfg["positive"] not in LABELS:
        fail(path, f"positive must be bonafide or spoof, not {cfg['positive']!r}")
    if str(cfg["positive_value"]) == str(cfg["negative_value"]):
        fail(path, "positive_value and negative_value must differ")
    return cfg


def _read_submission(path: Path, cfg: dict) -> pd.DataFrame:
    """The submission as strings (ids like '007' must survive), with its id column checked."""
    if not path.is_file():
        fail(path, "file not found")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        fail(path, f"malformed CSV ({str(err).splitlines()[0]})")
    id_col = cfg["id_column"]
    if id_col not in df.columns:
        fail(path, f"missing id column '{id_col}'; found {', '.join(map(str, df.columns))}")
    if cfg["label_column"] not in df.columns and cfg["score_column"] not in df.columns:
        fail(path, f"needs a '{cfg['label_column']}' and/or a '{cfg['score_column']}' column; "
                    f"found {', '.join(map(str, df.columns))}")
    ids = df[id_col].str.strip()
    if (ids == "").any():
        fail(path, f"empty {id_col}", row=first_row(ids == ""))
    if ids.duplicated().any():
        row = first_row(ids.duplicated())
        fail(path, f"duplicate {id_col} '{ids.iloc[row - 1]}'", row=row)
    df[id_col] = ids
    return df


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


def _scores(path: Path, df: pd.DataFrame, cfg: dict) -> np.ndarray:
    column = cfg["score_column"]
    values = pd.to_numeric(df[column].str.strip(), errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(values)
    if bad.any():
        i = first_row(bad) - 1
        fail(path, f"{df[cfg['id_column']].iloc[i]}: {column} '{df[column].iloc[i]}' is not a "
                    f"finite number", row=int(df["_row"].iloc[i]))
    return values


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
    return out


def score_submission(submission_csv, data_dir) -> dict:
    """Leaderboard numbers of a submission against `<data_dir>/solution.csv`.

    Hard labels give f1 / precision / recall / accuracy (positive class from
    competition.json, spoof by default); scores give EER, minDCF, actDCF, Cllr, best F1 and
    F1 at the EER threshold, plus EER per attack / language where solution.csv has them.
    """
    path, data_dir = Path(submission_csv), Path(data_dir)
    cfg = load_competition(data_dir)
    solution = read_manifest(data_dir / "solution.csv", "solution")
    df = _read_submission(path, cfg)
    df["_row"] = np.arange(1, len(df) + 1)
    df = _align(path, df, solution, cfg["id_column"])
    truth_bona = bonafide_mask(solution["label"])
    result = {"n": int(len(solution)), "n_bonafide": int(truth_bona.sum()),
              "n_spoof": int((~truth_bona).sum())}
    if cfg["label_column"] in df.columns:
        truth = truth_bona if cfg["positive"] == "bonafide" else ~truth_bona
        result.update(binary_scores(truth, _predicted_positive(path, df, cfg)))
    if cfg["score_column"] in df.columns:
        if truth_bona.all() or not truth_bona.any():
            fail(data_dir / "solution.csv", "needs both bonafide and spoof rows to score a 'score' column")
        result.update(_score_metrics(_scores(path, df, cfg), solution, cfg["positive"]))
    return result
