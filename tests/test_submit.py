"""The local leaderboard scorer: metrics on CSV round trips, and every refusal."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from antispoof import metrics as M
from antispoof.schema import ManifestError
from antispoof.submit.scorer import score_submission

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


# ---- writers: every format round-trips through `antispoof score` ------------------------------------

from antispoof.commands.cli import main as cli  # noqa: E402
from antispoof.data.manifest import load_segments, load_split  # noqa: E402
from antispoof.submit.scorer import region_frames  # noqa: E402
from antispoof.submit.writer import (write_asvspoof5_scores, write_label_submission,  # noqa: E402
                                  write_score_submission, write_segment_submission)


def cli_score(path, data, capsys):
    assert cli(["score", str(path), "--data", str(data)]) == 0
    return json.loads(capsys.readouterr().out)


def regions_of(labels_10ms):
    """(start, end) of every spoofed run of 10 ms labels."""
    edges = np.flatnonzero(np.diff(np.r_[0, labels_10ms == 0, 0].astype(int)))
    return [(a * 0.01, b * 0.01) for a, b in zip(edges[::2], edges[1::2])]


def test_every_format_round_trips_through_antispoof_score_on_tiny(tiny, tmp_path, capsys):
    test = load_split(tiny, "test", check_files=False)  # the test reads the hidden labels to check
    hidden = load_segments(tiny / "solution_segments.npz", test)
    rng = np.random.default_rng(0)
    scores = rng.normal(size=len(test)) + 2 * (test["label"] == "bonafide").to_numpy()
    order = rng.permutation(len(test))  # writers put rows in test.csv order whatever they are given
    ids = test["utt_id"].to_numpy()[order]

    labels_csv = write_label_submission(tmp_path / "x_f1.csv", ids, scores[order] < 1.0, tiny)
    got = cli_score(labels_csv, tiny, capsys)
    truth = (test["label"] == "spoof").to_numpy()
    assert got["f1"] == pytest.approx(M.binary_scores(truth, scores < 1.0)["f1"])
    assert pd.read_csv(labels_csv, dtype=str)["utt_id"].tolist() == test["utt_id"].tolist()

    scores_csv = write_score_submission(tmp_path / "x_eer.csv", ids, scores[order], tiny)
    eer = cli_score(scores_csv, tiny, capsys)["eer"]
    assert eer == pytest.approx(M.utterance_metrics(scores, test["label"])["eer"])

    tsv = write_asvspoof5_scores(tmp_path / "x.tsv", ids, scores[order], tiny)
    assert tsv.read_text().splitlines()[0] == "filename\tcm-score"
    assert cli_score(tsv, tiny, capsys)["eer"] == eer
    keys = tmp_path / "keys.tsv"
    test[["utt_id", "label"]].set_axis(["filename", "cm-label"], axis=1).to_csv(keys, sep="\t", index=False)
    assert cli(["evaluate", "--scores", str(tsv), "--keys", str(keys)]) == 0
    assert json.loads(capsys.readouterr().out)["eer"] == pytest.approx(eer)

    truth_regions = pd.DataFrame([(u, a, b) for u in test["utt_id"] for a, b in regions_of(hidden[u])],
                                 columns=["utt_id", "start", "end"])
    assert len(truth_regions) >= (test["label"] == "spoof").sum()
    oracle = cli_score(write_segment_submission(tmp_path / "x_seg.csv", truth_regions, tiny), tiny, capsys)
    assert oracle["segment_f1"] == 1.0 and oracle["utterance_f1"] == 1.0
    half = truth_regions.iloc[::2]
    partial = cli_score(write_segment_submission(tmp_path / "x_half.csv", half, tiny), tiny, capsys)
    assert partial["segment_precision"] == 1.0 and partial["segment_recall"] < 1.0


def test_region_frames_use_frame_centres():
    regions = pd.DataFrame({"start": [0.02, 0.5], "end": [0.05, 0.7]})
    frames = region_frames(regions, 60)
    assert np.flatnonzero(frames == 0).tolist() == [2, 3, 4, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59]


@pytest.fixture
def competition(data_dir):
    """The scorer fixture plus a test.csv, which the writers check ids against."""
    pd.DataFrame({"utt_id": SOLUTION["utt_id"], "path": "a.flac", "duration": 1.0}).to_csv(
        data_dir / "test.csv", index=False)
    np.savez(data_dir / "solution_segments.npz",
             **{u: np.full(100, 1 if lab == "bonafide" else 0, dtype=np.int8)
                for u, lab in zip(SOLUTION["utt_id"], SOLUTION["label"])})
    return data_dir


def test_headerless_competition_round_trips(tmp_path, competition):
    (competition / "competition.json").write_text(json.dumps({"header": False, "positive": "bonafide",
                                                              "positive_value": "real", "negative_value": "fake"}))
    spoof = SCORES < 0
    path = write_label_submission(tmp_path / "l.csv", SOLUTION["utt_id"], spoof, competition)
    assert path.read_text().splitlines()[0] == "000,real"
    got = score_submission(path, competition)
    assert got["f1"] == pytest.approx(M.binary_scores(SOLUTION["label"] == "bonafide", ~spoof)["f1"])
    path = write_score_submission(tmp_path / "s.csv", SOLUTION["utt_id"], SCORES, competition)
    assert score_submission(path, competition)["eer"] == pytest.approx(M.compute_eer(SCORES[:4], SCORES[4:])[0])
    regions = pd.DataFrame({"utt_id": ["004", "005"], "start": [0.0, 0.2], "end": [1.0, 0.6]})
    path = write_segment_submission(tmp_path / "r.csv", regions, competition)
    assert path.read_text().splitlines()[0] == "utt_id,start,end", "a regions file always has its header"
    got = score_submission(path, competition)
    # bona fide is the positive class here: 400 bona fide frames, all kept; 860 frames not marked spoof
    assert got["n_regions"] == 2 and got["segment_recall"] == 1.0
    assert got["segment_precision"] == pytest.approx(400 / 860)


def test_competition_json_header_must_be_boolean(tmp_path, competition):
    (competition / "competition.json").write_text('{"header": "no"}')
    with pytest.raises(ManifestError, match="header must be true or false"):
        write_label_submission(tmp_path / "l.csv", SOLUTION["utt_id"], SCORES < 0, competition)


@pytest.mark.parametrize("ids, pattern", [
    (SOLUTION["utt_id"].iloc[:-2], "2 of 10 test ids missing, e.g. '008'; nothing written"),
    ([*SOLUTION["utt_id"].iloc[:-1], "zzz"], "1 of 10 test ids missing.*"),
    ([*SOLUTION["utt_id"], "zzz"], "1 id.*not in test.csv, e.g. 'zzz'"),
    ([*SOLUTION["utt_id"].iloc[:-1], "000"], "duplicate id '000'"),
])
def test_writers_refuse_ids_that_do_not_match_test_csv(tmp_path, competition, ids, pattern):
    path = tmp_path / "sub.csv"
    for write in (write_label_submission, write_score_submission, write_asvspoof5_scores):
        with pytest.raises(ManifestError, match=pattern) as err:
            write(path, ids, np.zeros(len(ids)), competition)
        assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)
        assert not path.exists()


def test_writers_refuse_non_finite_scores(tmp_path, competition):
    scores = SCORES.copy()
    scores[3] = np.nan
    with pytest.raises(ManifestError, match="score of '003' is not a finite number"):
        write_score_submission(tmp_path / "s.csv", SOLUTION["utt_id"], scores, competition)


def test_segment_writer_and_scorer_refuse_bad_regions(tmp_path, competition):
    bad = pd.DataFrame({"utt_id": ["004", "zzz"], "start": [0.1, 0.0], "end": [0.2, 0.1]})
    with pytest.raises(ManifestError, match="1 id.*not in test.csv, e.g. 'zzz'"):
        write_segment_submission(tmp_path / "r.csv", bad, competition)
    with pytest.raises(ManifestError, match="region 0.3-0.2 s of '004'"):
        write_segment_submission(tmp_path / "r.csv", pd.DataFrame({"utt_id": ["004"], "start": [0.3], "end": [0.2]}),
                                 competition)
    refused(tmp_path, competition, "utt_id,start,end\n004,0.1,0.2\nzzz,0,1\n", "1 id.*not in the solution, e.g. 'zzz'")
    refused(tmp_path, competition, "utt_id,start,end\n004,0.5,0.2\n", "row 1: 004: region 0.5-0.2 s")
    refused(tmp_path, competition, "utt_id,start,end\n004,a,0.2\n", "row 1: 004: start 'a' is not a finite number")


def test_segment_scores_count_frames_and_clips(tmp_path, competition):
    # every spoof clip (004-009) fully marked except 009; one bona fide clip (000) half marked
    rows = [(u, 0.0, 1.0) for u in ["004", "005", "006", "007", "008"]] + [("000", 0.0, 0.5)]
    path = write_segment_submission(tmp_path / "r.csv", pd.DataFrame(rows, columns=["utt_id", "start", "end"]),
                                    competition)
    got = score_submission(path, competition)
    # frames: tp 500, fp 50, fn 100 (clip 009)
    assert got["segment_precision"] == pytest.approx(500 / 550)
    assert got["segment_recall"] == pytest.approx(500 / 600)
    # clips: tp 5, fp 1, fn 1
    assert got["utterance_f1"] == pytest.approx(10 / 12)
    assert got["n_regions"] == 6
