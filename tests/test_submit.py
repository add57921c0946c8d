"""The local leaderboard scorer: metrics on CSV round trips, and every refusal."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from antispoof import metrics as M
from antispoof.data.manifest import ManifestError
from antispoof.submit import score_submission

# 4 bona fide, 6 spoof from two attacks, two languages
SOLUTION = pd.DataFrame({
    "utt_id": [f"{i:03d}" for i in range(10)],
    "label": ["bonafide"] * 4 + ["spoof"] * 6,
    "attack": ["-"] * 4 + ["A01", "A01", "A01", "A02", "A02", "A02"],
    "language": ["en", "en", "fr", "fr", "en", "en", "fr", "fr", "en", "fr"],
})
SCORES = np.array([2.0, 1.5, 0.2, 1.0, -1.0, -2.0, -1.5, 0.5, 1.2, -0.3])


@pytest.fixture
def data_dir(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    SOLUTION.to_csv(d / "solution.csv", index=False)
    return d


def write(tmp_path, df, name="sub.csv"):
    path = tmp_path / name
    df.to_csv(path, index=False)
    return path


def submission(**columns):
    return pd.DataFrame({"utt_id": SOLUTION["utt_id"], **columns})


def test_hard_labels_give_f1_precision_recall_accuracy(tmp_path, data_dir):
    # predicted spoof (1) for rows 2, 4, 5, 6, 7: tp 4, fp 1 (row 2), fn 2 (rows 8, 9)
    pred = [0, 0, 1, 0, 1, 1, 1, 1, 0, 0]
    got = score_submission(write(tmp_path, submission(label=pred)), data_dir)
    assert got["precision"] == pytest.approx(4 / 5)
    assert got["recall"] == pytest.approx(4 / 6)
    assert got["f1"] == pytest.approx(2 * 4 / (2 * 4 + 1 + 2))
    assert got["accuracy"] == pytest.approx(7 / 10)
    assert (got["n"], got["n_bonafide"], got["n_spoof"]) == (10, 4, 6)
    assert "eer" not in got


def test_scores_give_the_utterance_metrics(tmp_path, data_dir):
    got = score_submission(write(tmp_path, submission(score=SCORES)), data_dir)
    ref = M.utterance_metrics(SCORES, SOLUTION["label"])
    for key in ("eer", "min_dcf", "act_dcf", "cllr", "best_f1", "f1_at_eer"):
        assert got[key] == pytest.approx(ref[key]), key
    assert "f1" not in got
    json.dumps(got)  # the CLI prints it


def test_group_eers_pool_all_bonafide_per_attack_and_split_languages(tmp_path, data_dir):
    got = score_submission(write(tmp_path, submission(score=SCORES)), data_dir)
    bona = SCORES[:4]
    assert got["eer_by_attack"]["A01"] == 0.0  # A01 spoofs all score below every bona fide
    assert got["eer_by_attack"]["A02"] == pytest.approx(M.compute_eer(bona, SCORES[7:])[0])
    assert got["eer_by_attack"]["A02"] > 0
    assert set(got["eer_by_attack"]) == {"A01", "A02"}
    en = (SOLUTION["language"] == "en").to_numpy()
    spoof = (SOLUTION["label"] == "spoof").to_numpy()
    assert got["eer_by_language"]["en"] == pytest.approx(
        M.compute_eer(SCORES[en & ~spoof], SCORES[en & spoof])[0])
    assert set(got["eer_by_language"]) == {"en", "fr"}


def test_group_without_bonafide_is_skipped(tmp_path, data_dir):
    sol = SOLUTION.copy()
    sol.loc[8, "language"] = "de"  # a spoof-only language
    sol.to_csv(data_dir / "solution.csv", index=False)
    got = score_submission(write(tmp_path, submission(score=SCORES)), data_dir)
    assert set(got["eer_by_language"]) == {"en", "fr"}


def test_both_columns_row_order_and_float_labels(tmp_path, data_dir):
    pred = [0, 0, 1, 0, 1, 1, 1, 1, 0, 0]
    ordered = score_submission(write(tmp_path, submission(label=pred, score=SCORES)), data_dir)
    shuffled = submission(label=[f"{p}.0" for p in pred], score=SCORES).sample(frac=1, random_state=0)
    got = score_submission(write(tmp_path, shuffled, "shuffled.csv"), data_dir)
    assert got == ordered
    assert {"f1", "eer"} <= set(got)


def test_competition_json_renames_columns_and_flips_the_positive_class(tmp_path, data_dir):
    (data_dir / "competition.json").write_text(json.dumps({
        "id_column": "speech_name", "label_column": "is_real", "positive": "bonafide",
        "positive_value": "yes", "negative_value": "no"}))
    pred = ["yes", "yes", "no", "yes", "no", "no", "no", "no", "yes", "yes"]
    sub = pd.DataFrame({"speech_name": SOLUTION["utt_id"], "is_real": pred})
    got = score_submission(write(tmp_path, sub), data_dir)
    # bona fide positive: tp 3, fp 2 (rows 8, 9), fn 1 (row 2)
    assert got["precision"] == pytest.approx(3 / 5)
    assert got["recall"] == pytest.approx(3 / 4)
    assert got["accuracy"] == pytest.approx(7 / 10)


def test_ids_keep_leading_zeros(tmp_path, data_dir):
    # "007" must not become 7 and then miss the solution's "007"
    got = score_submission(write(tmp_path, submission(score=SCORES)), data_dir)
    assert got["n"] == 10


def refused(tmp_path, data_dir, text, pattern):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ManifestError, match=pattern) as err:
        score_submission(path, data_dir)
    message = str(err.value)
    assert message.startswith(str(path)) and "\n" not in message
    return message


def csv_text(df):
    return df.to_csv(index=False)


def test_refuses_missing_ids_with_count_and_example(tmp_path, data_dir):
    text = csv_text(submission(score=SCORES).drop(index=[3, 7]))
    refused(tmp_path, data_dir, text, "2 of 10 ids missing, e.g. '003'")


def test_refuses_extra_ids(tmp_path, data_dir):
    df = pd.concat([submission(score=SCORES), pd.DataFrame({"utt_id": ["zzz"], "score": [0.0]})])
    refused(tmp_path, data_dir, csv_text(df), "1 id.*not in the solution, e.g. 'zzz'")


def test_refuses_duplicate_ids_naming_the_row(tmp_path, data_dir):
    df = submission(score=SCORES)
    df.loc[5, "utt_id"] = "002"
    refused(tmp_path, data_dir, csv_text(df), "row 6: duplicate utt_id '002'")


def test_refuses_label_values_outside_the_competition_pair(tmp_path, data_dir):
    df = submission(label=[0, 0, 1, 0, 1, 2, 1, 1, 0, 0])
    refused(tmp_path, data_dir, csv_text(df), "row 6: 005: label '2' is not 1 or 0")


def test_refuses_non_numeric_scores_naming_the_row_of_the_file(tmp_path, data_dir):
    df = submission(score=SCORES.astype(object)).iloc[::-1]
    df.loc[4, "score"] = "high"  # 5th id, 6th data row of the reversed file
    refused(tmp_path, data_dir, csv_text(df), "row 6: 004: score 'high' is not a finite number")


def test_refuses_a_file_without_label_or_score(tmp_path, data_dir):
    refused(tmp_path, data_dir, csv_text(submission(prob=SCORES)), "needs a 'label' and/or a 'score'")


def test_refuses_a_file_without_the_id_column(tmp_path, data_dir):
    df = submission(score=SCORES).rename(columns={"utt_id": "id"})
    refused(tmp_path, data_dir, csv_text(df), "missing id column 'utt_id'")


@pytest.mark.parametrize("text", ["utt_id,score\n000,1\n001,1,2,3\n", ""])
def test_refuses_unparsable_csv(tmp_path, data_dir, text):
    refused(tmp_path, data_dir, text, "malformed CSV")


def test_refuses_bad_competition_json(tmp_path, data_dir):
    (data_dir / "competition.json").write_text('{"id_colum": "x"}')
    with pytest.raises(ManifestError, match="competition.json: unknown key"):
        score_submission(write(tmp_path, submission(score=SCORES)), data_dir)
