"""Per-condition EERs: which clips each condition is scored on, oracle values and intervals."""
from __future__ import annotations

import numpy as np
import pytest

from antispoof.metrics.conditions import (bootstrap_half_width, condition_masks, eer_by_condition,
                                  expected_half_width)
from antispoof.metrics import compute_eer


def _toy():
    """Bona fide of a seen language, three spoof conditions and an unseen-language slice."""
    conditions = ["bonafide"] * 4 + ["seen_attack"] * 2 + ["partial"] * 2 + ["unseen_language"] * 4
    labels = ["bonafide"] * 4 + ["spoof"] * 4 + ["bonafide", "bonafide", "spoof", "spoof"]
    scores = np.array([0.9, 0.8, 0.7, 0.6,    # bona fide
                       0.1, 0.2,              # seen attack: perfectly separated
                       0.75, 0.65,            # partial: interleaved with the bona fide
                       0.5, 0.4, 0.45, 0.3])  # unseen language, both classes
    return scores, labels, conditions


def test_spoof_conditions_are_scored_against_seen_language_bona_fide_only():
    _, _, conditions = _toy()
    masks = condition_masks(conditions)
    assert set(masks) == {"seen_attack", "partial", "unseen_language"}
    assert masks["seen_attack"].tolist() == [True] * 4 + [True, True] + [False] * 6
    assert masks["unseen_language"].tolist() == [False] * 8 + [True] * 4


def test_eer_by_condition_matches_the_eer_of_each_subset():
    scores, labels, conditions = _toy()
    got = eer_by_condition(scores, labels, conditions)
    bona = np.array(labels) == "bonafide"
    assert got["pooled"] == pytest.approx(compute_eer(scores[bona], scores[~bona])[0])
    assert got["seen_attack"] == 0.0
    assert got["partial"] == pytest.approx(compute_eer(scores[:4], scores[6:8])[0])
    assert 0.25 <= got["partial"] <= 0.75
    assert got["unseen_language"] == pytest.approx(compute_eer(scores[8:10], scores[10:12])[0])
    assert "unseen_attack" not in got and "concatenation" not in got


def test_a_condition_with_one_class_only_is_nan():
    got = eer_by_condition([0.1, 0.2], ["spoof", "spoof"], ["unseen_language", "unseen_language"])
    assert np.isnan(got["unseen_language"]) and np.isnan(got["pooled"])


def test_half_widths_shrink_with_more_clips_and_agree_with_the_bootstrap():
    rng = np.random.default_rng(0)
    n = 400
    bona, spoof = rng.normal(1.28, 1, n), rng.normal(-1.28, 1, n)  # true EER 10 %
    scores = np.concatenate([bona, spoof])
    labels = ["bonafide"] * n + ["spoof"] * n
    boot = bootstrap_half_width(scores, labels, n=300, seed=0)
    assert expected_half_width(n, n) == pytest.approx(boot, rel=0.35)
    assert expected_half_width(4 * n, 4 * n) == pytest.approx(expected_half_width(n, n) / 2)
    assert np.isnan(expected_half_width(0, 10)) and np.isnan(bootstrap_half_width([0.1], ["spoof"]))


def test_the_scorer_reports_every_condition_of_the_solution(tiny, tmp_path):
    import pandas as pd

    from antispoof.submit.scorer import score_submission

    solution = pd.read_csv(tiny / "solution.csv")
    rng = np.random.default_rng(0)
    scores = rng.normal(size=len(solution)) + (solution.label == "bonafide") * 1.0
    pd.DataFrame({"utt_id": solution.utt_id, "score": scores}).to_csv(tmp_path / "s.csv", index=False)
    got = score_submission(tmp_path / "s.csv", tiny)["eer_by_condition"]
    want = eer_by_condition(scores, solution.label, solution.condition)
    assert got.keys() == want.keys() and {"pooled", "seen_classical", "seen_neural", "partial"} <= set(got)
    assert all(got[k] == pytest.approx(want[k]) for k in got)
    labels = (scores < 0.5).astype(int)  # 1 = spoof
    pd.DataFrame({"utt_id": solution.utt_id, "label": labels}).to_csv(tmp_path / "l.csv", index=False)
    f1 = score_submission(tmp_path / "l.csv", tiny)["f1_by_condition"]
    spoof = (solution.label == "spoof").to_numpy()
    seen = condition_masks(solution.condition)["seen_classical"]
    tp = (labels[seen] & spoof[seen]).sum()
    precision, recall = tp / labels[seen].sum(), tp / spoof[seen].sum()
    assert f1["seen_classical"] == pytest.approx(2 * precision * recall / (precision + recall))
