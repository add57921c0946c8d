"""Metrics against naive oracles written from the definitions, closed forms and hand examples.

The oracles below loop over candidate thresholds / sorted positions one at a time; they
share no code with antispoof.metrics, so a vectorisation slip shows up as a disagreement.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from antispoof import metrics as M
from antispoof.submit import scorer
from antispoof.schema import ManifestError

P, CMISS, CFA = 0.05, 1.0, 10.0
NORM = min(CMISS * (1 - P), CFA * P)


# ---- naive oracles ----------------------------------------------------------------------

def oracle_threshold_det(bona, spoof):
    """EER and minDCF over every distinct threshold t, rule: score < t is rejected."""
    candidates = sorted(set(bona.tolist()) | set(spoof.tolist())) + [math.inf]
    best_gap, eer, best_cost = math.inf, None, math.inf
    for t in candidates:
        frr = np.count_nonzero(bona < t) / bona.size
        far = np.count_nonzero(spoof >= t) / spoof.size
        if abs(frr - far) < best_gap:
            best_gap, eer = abs(frr - far), (frr + far) / 2
        best_cost = min(best_cost, CMISS * (1 - P) * frr + CFA * P * far)
    return eer, best_cost / NORM


def oracle_position_det(bona, spoof):
    """The package's DET: reject the k lowest of (score, bona fide first) for k = 0..N."""
    trials = sorted([(s, 0) for s in bona.tolist()] + [(s, 1) for s in spoof.tolist()])
    nb, ns = len(bona), len(spoof)
    bona_rej = spoof_rej = 0
    points = [(0.0, 1.0)]
    for _, is_spoof in trials:
        if is_spoof:
            spoof_rej += 1
        else:
            bona_rej += 1
        points.append((bona_rej / nb, (ns - spoof_rej) / ns))
    gap, eer, cost = math.inf, None, math.inf
    for frr, far in points:
        if abs(frr - far) < gap:
            gap, eer = abs(frr - far), (frr + far) / 2
        cost = min(cost, CMISS * (1 - P) * frr + CFA * P * far)
    return eer, cost / NORM


def oracle_act_dcf(bona, spoof):
    beta = CMISS * (1 - P) / (CFA * P)
    t = -math.log(beta)
    miss = sum(1 for s in bona if s < t) / len(bona)
    fa = sum(1 for s in spoof if s >= t) / len(spoof)
    return (CMISS * (1 - P) * miss + CFA * P * fa) / NORM


def oracle_cllr(bona, spoof):
    tar = sum(math.log2(1 + math.exp(-s)) for s in bona) / len(bona)
    non = sum(math.log2(1 + math.exp(s)) for s in spoof) / len(spoof)
    return (tar + non) / 2


def oracle_best_f1(scores, spoof_truth):
    best = 0.0
    for t in sorted(set(scores.tolist())) + [math.inf]:
        pred = scores < t
        tp = np.count_nonzero(pred & spoof_truth)
        fp = np.count_nonzero(pred & ~spoof_truth)
        fn = np.count_nonzero(~pred & spoof_truth)
        if tp:
            best = max(best, 2 * tp / (2 * tp + fp + fn))
    return best


def gaussian_scores(seed, n_bona, n_spoof, decimals):
    rng = np.random.default_rng(seed)
    bona = np.round(rng.normal(1.5, 1.0, n_bona), decimals)
    spoof = np.round(rng.normal(-0.5, 1.3, n_spoof), decimals)
    return bona, spoof


# ---- utterance metrics ------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1])
def test_eer_and_min_dcf_agree_with_threshold_oracle_on_20k_tied_scores(seed):
    bona, spoof = gaussian_scores(seed, 12000, 8000, decimals=3)
    assert np.unique(np.r_[bona, spoof]).size < bona.size + spoof.size - 1000  # many ties
    eer, min_dcf = oracle_threshold_det(bona, spoof)
    assert M.compute_eer(bona, spoof)[0] == pytest.approx(eer, abs=1e-3)
    assert M.min_dcf(bona, spoof)[0] == pytest.approx(min_dcf, abs=1e-3)


def test_det_reproduces_package_tie_rule_exactly_under_heavy_ties():
    bona, spoof = gaussian_scores(2, 3000, 2000, decimals=1)
    eer, min_dcf = oracle_position_det(bona, spoof)
    assert M.compute_eer(bona, spoof)[0] == pytest.approx(eer, abs=1e-12)
    assert M.min_dcf(bona, spoof)[0] == pytest.approx(min_dcf, abs=1e-12)


def test_act_dcf_and_cllr_agree_with_loops():
    bona, spoof = gaussian_scores(3, 5000, 5000, decimals=2)
    assert M.act_dcf(bona, spoof)[0] == pytest.approx(oracle_act_dcf(bona, spoof), abs=1e-12)
    assert M.act_dcf(bona, spoof)[1] == pytest.approx(-math.log(1.9))
    assert M.cllr(bona, spoof) == pytest.approx(oracle_cllr(bona, spoof), abs=1e-9)


def test_hand_computed_example():
    bona, spoof = np.array([0.9, 0.7, 0.4]), np.array([0.8, 0.3, 0.1])
    # rejecting 0.1, 0.3, 0.4: FRR = FAR = 1/3; lowest accepted score 0.7
    assert M.compute_eer(bona, spoof) == pytest.approx((1 / 3, 0.7))
    # best cost: reject 0.1, 0.3 -> 0.95 * 0 + 0.5 * 1/3, normalised by 0.5
    assert M.min_dcf(bona, spoof) == pytest.approx((1 / 3, 0.4))
    # LLRs at the Bayes threshold -0.642: one bona fide miss, one spoof acceptance
    dcf, _ = M.act_dcf([2.0, -1.0], [-2.0, 0.0])
    assert dcf == pytest.approx((0.95 * 0.5 + 0.5 * 0.5) / 0.5)
    assert M.cllr([0.0, 0.0], [0.0]) == pytest.approx(1.0)


def test_perfect_separation_gives_zero_errors_and_a_separating_threshold():
    bona, spoof = np.linspace(1, 2, 50), np.linspace(-2, 0.5, 70)
    eer, thr = M.compute_eer(bona, spoof)
    assert eer == 0.0 and min(bona) >= thr > max(spoof)
    assert M.min_dcf(bona, spoof)[0] == 0.0
    assert M.cllr(bona * 50, spoof * 50 - 50) < 1e-6


def test_identical_distributions_give_eer_near_half_and_min_dcf_near_one():
    rng = np.random.default_rng(4)
    bona, spoof = rng.normal(size=20000), rng.normal(size=20000)
    assert M.compute_eer(bona, spoof)[0] == pytest.approx(0.5, abs=0.02)
    assert M.min_dcf(bona, spoof)[0] == pytest.approx(1.0, abs=0.05)


def test_swapped_classes_are_not_symmetric():
    bona, spoof = gaussian_scores(5, 2000, 2000, decimals=6)
    assert M.compute_eer(bona, spoof)[0] < 0.3 < M.compute_eer(spoof, bona)[0]


def test_eer_and_min_dcf_are_invariant_to_order_and_monotone_maps():
    bona, spoof = gaussian_scores(6, 3000, 1000, decimals=2)
    rng = np.random.default_rng(0)
    ref = (M.compute_eer(bona, spoof)[0], M.min_dcf(bona, spoof)[0])
    shuffled = (rng.permutation(bona), rng.permutation(spoof))
    assert (M.compute_eer(*shuffled)[0], M.min_dcf(*shuffled)[0]) == pytest.approx(ref)
    mapped = (np.exp(bona), np.exp(spoof))
    assert (M.compute_eer(*mapped)[0], M.min_dcf(*mapped)[0]) == pytest.approx(ref)


def test_eer_threshold_reproduces_the_eer_with_the_less_than_rule():
    bona, spoof = gaussian_scores(7, 4000, 3000, decimals=8)
    eer, thr = M.compute_eer(bona, spoof)
    frr, far = np.mean(bona < thr), np.mean(spoof >= thr)
    assert (frr + far) / 2 == pytest.approx(eer, abs=1e-12)


def test_min_dcf_never_exceeds_one_and_act_dcf_punishes_miscalibration():
    bona, spoof = gaussian_scores(8, 3000, 3000, decimals=3)
    assert M.min_dcf(bona, spoof)[0] <= 1.0
    assert M.act_dcf(bona + 20, spoof + 20)[0] > M.act_dcf(bona, spoof)[0]
    assert M.min_dcf(bona + 20, spoof + 20)[0] == pytest.approx(M.min_dcf(bona, spoof)[0])


@pytest.mark.parametrize("bona, spoof", [([], [1.0]), ([1.0], []), ([np.nan, 1.0], [0.0])])
def test_refuses_empty_classes_and_nan(bona, spoof):
    with pytest.raises(ValueError):
        M.compute_eer(bona, spoof)


def test_vectorised_eer_is_fast_on_a_million_scores():
    rng = np.random.default_rng(9)
    bona, spoof = rng.normal(1, 1, 500_000), rng.normal(-1, 1, 500_000)
    eer, _ = M.compute_eer(bona, spoof)
    assert eer == pytest.approx(0.1587, abs=0.003)  # Phi(-1) for unit-variance classes 2 apart


# ---- F1 ---------------------------------------------------------------------------------

def test_f1_at_threshold_hand_example():
    scores = [0.1, 0.2, 0.3, 0.8, 0.9]
    labels = ["spoof", "spoof", "bonafide", "spoof", "bonafide"]
    # spoof predicted for 0.1, 0.2, 0.3: tp 2, fp 1, fn 1
    r = M.f1_at_threshold(scores, labels, 0.5)
    assert (r["precision"], r["recall"], r["f1"]) == pytest.approx((2 / 3, 2 / 3, 2 / 3))
    assert r["accuracy"] == pytest.approx(3 / 5)
    # bona fide positive, predicted for 0.8, 0.9: tp 1, fp 1, fn 1
    r = M.f1_at_threshold(scores, labels, 0.5, positive="bonafide")
    assert (r["precision"], r["recall"], r["f1"]) == pytest.approx((0.5, 0.5, 0.5))
    # a score equal to the threshold is bona fide
    assert M.f1_at_threshold([0.5], ["spoof"], 0.5)["recall"] == 0.0


def test_best_f1_threshold_matches_oracle_and_reproduces_itself():
    bona, spoof = gaussian_scores(10, 1500, 1000, decimals=2)
    scores = np.r_[bona, spoof]
    labels = np.array(["bonafide"] * bona.size + ["spoof"] * spoof.size)
    best = M.best_f1_threshold(scores, labels)
    assert best["f1"] == pytest.approx(oracle_best_f1(scores, labels == "spoof"), abs=1e-12)
    again = M.f1_at_threshold(scores, labels, best["threshold"])
    assert again["f1"] == pytest.approx(best["f1"], abs=1e-12)
    # bona fide as positive: same search on flipped scores and labels
    flipped = M.best_f1_threshold(scores, labels, positive="bonafide")
    assert flipped["f1"] == pytest.approx(oracle_best_f1(-scores, labels == "bonafide"), abs=1e-12)
    again = M.f1_at_threshold(scores, labels, flipped["threshold"], positive="bonafide")
    assert again["f1"] == pytest.approx(flipped["f1"], abs=1e-12)


def test_f1_refuses_mismatched_lengths():
    with pytest.raises(ValueError, match="2 scores but 3 labels"):
        M.f1_at_threshold([0.1, 0.2], ["spoof"] * 3, 0.5)


def test_best_f1_threshold_lies_between_the_classes_when_separable():
    best = M.best_f1_threshold([0.0, 1.0, 3.0, 4.0], ["spoof", "spoof", "bonafide", "bonafide"])
    assert best["f1"] == 1.0 and 1.0 < best["threshold"] <= 3.0


def test_labels_may_be_segment_style_integers_but_not_anything_else():
    assert M.bonafide_mask([1, 0, 1]).tolist() == [True, False, True]
    with pytest.raises(ValueError, match="unknown label"):
        M.bonafide_mask(["bonafide", "fake"])
    with pytest.raises(ValueError):
        M.bonafide_mask([2, 0])


def test_utterance_metrics_bundle_is_consistent():
    bona, spoof = gaussian_scores(11, 800, 600, decimals=3)
    m = M.utterance_metrics(np.r_[bona, spoof], [1] * bona.size + [0] * spoof.size)
    assert m["eer"] == M.compute_eer(bona, spoof)[0]
    assert m["cllr"] == M.cllr(bona, spoof)
    assert (m["n_bonafide"], m["n_spoof"]) == (800, 600)
    assert 0 < m["f1_at_eer"] <= m["best_f1"] <= 1


# ---- segments ---------------------------------------------------------------------------

def test_pool_segment_labels_min_pools_and_keeps_partial_windows():
    assert M.pool_segment_labels([1, 1, 0, 1], 0.02).tolist() == [1, 0]
    assert M.pool_segment_labels([1, 1, 1, 1, 0], 0.04).tolist() == [1, 0]
    assert M.pool_segment_labels([1, 1, 1, 1, 1], 0.04).tolist() == [1, 1]
    assert M.pool_segment_labels([0, 1, 1], 0.01).tolist() == [0, 1, 1]
    assert M.pool_segment_labels(np.ones(64), 0.64).tolist() == [1]
    with pytest.raises(ValueError, match="multiple"):
        M.pool_segment_labels([1, 1], 0.025)


def test_rescale_segment_scores_min_pools_down_and_repeats_up():
    assert M.rescale_segment_scores([0.3, 0.6, 0.8, 0.9, 0.1], 0.02, 0.04).tolist() == [0.3, 0.8, 0.1]
    assert M.rescale_segment_scores([0.3, 0.8], 0.04, 0.02).tolist() == [0.3, 0.3, 0.8, 0.8]


def test_segment_eer_hand_example_with_truncation():
    labels = [np.array([1, 1, 0, 0, 1, 1]), np.array([1, 1, 1, 1])]  # 10 ms
    # at 20 ms: utt 0 -> [1, 0, 1], utt 1 -> [1, 1]; utt 1 has one score frame too many
    scores = [np.array([0.9, 0.2, 0.8]), np.array([0.7, 0.1, 0.5])]
    eer, thr = M.segment_eer(scores, labels, 0.02)
    # pooled bona fide [0.9, 0.8, 0.7, 0.1] vs spoof [0.2]: rejecting 0.1 gives FRR 1/4, FAR 1
    # ... rejecting 0.1 and 0.2 gives FRR 1/4, FAR 0 -> EER 1/8
    assert (eer, thr) == pytest.approx((1 / 8, 0.7))


def test_segment_eer_pools_finer_scores_by_min_and_accepts_mappings():
    labels = {"a": np.array([1, 1, 1, 1, 0, 0, 0, 0]), "b": np.array([1, 1, 1, 1, 1, 1, 1, 1])}
    # scores at 20 ms measured at 40 ms: min over pairs
    scores = {"a": np.array([0.9, 0.8, 0.5, 0.1]), "b": np.array([0.7, 0.2, 0.6, 0.9])}
    eer, _ = M.segment_eer(scores, labels, 0.04, score_resolution_s=0.02)
    # 40 ms: bona fide [0.8 (a), 0.2, 0.6 (b)], spoof [0.1 (a)] -> separable
    assert eer == 0.0
    # measured at 20 ms the spoof 0.5 sits above the bona fide 0.2 -> not separable
    assert M.segment_eer(scores, labels, 0.02)[0] > 0


def test_segment_eer_at_10ms_equals_plain_eer_on_concatenated_frames():
    rng = np.random.default_rng(12)
    labels = [rng.integers(0, 2, n) for n in (50, 80, 33)]
    scores = [lab + rng.normal(0, 0.8, lab.size) for lab in labels]
    s, l = np.concatenate(scores), np.concatenate(labels)
    assert M.segment_eer(scores, labels, 0.01) == M.compute_eer(s[l == 1], s[l == 0])


def test_segment_eer_refuses_scores_far_longer_than_the_clip():
    with pytest.raises(ValueError, match="score frames"):
        M.segment_eer([np.zeros(40)], [np.array([1, 0] * 10)], 0.02)


def test_utterance_scores_and_eer_from_segments():
    scores = [np.array([0.9, 0.1, 0.8]), np.array([0.7, 0.6]), np.array([0.4, 0.95])]
    assert M.utterance_scores_from_segments(scores).tolist() == [0.1, 0.6, 0.4]
    assert M.utterance_scores_from_segments({"x": [3.0, -1.0]}) == {"x": -1.0}
    labels = [np.array([1, 0, 1]), np.array([1, 1]), np.array([1, 1])]
    # utterance scores: spoof 0.1, bona fide 0.6 and 0.4 -> separable
    assert M.utterance_eer_from_segments(scores, labels)[0] == 0.0
    # bona fide 0.1, 0.4 below spoof 0.6: fully inverted
    assert M.utterance_eer_from_segments(scores, ["bonafide", "spoof", "bonafide"])[0] == 1.0


# ---- score / key files ------------------------------------------------------------------

def write_tsvs(tmp_path, names, scores, labels):
    s, k = tmp_path / "scores.tsv", tmp_path / "keys.tsv"
    s.write_text("filename\tcm-score\n" + "".join(f"{n}\t{v}\n" for n, v in zip(names, scores)))
    k.write_text("filename\tcm-label\n" + "".join(f"{n}\t{v}\n" for n, v in zip(names[::-1], labels[::-1])))
    return s, k


def test_evaluate_files_round_trip(tmp_path):
    bona, spoof = gaussian_scores(13, 300, 200, decimals=4)
    scores = np.r_[bona, spoof]
    labels = ["bonafide"] * 300 + ["spoof"] * 200
    names = [f"E_{i:06d}" for i in range(500)]
    s, k = write_tsvs(tmp_path, names, scores, labels)
    got = scorer.evaluate_files(s, k)
    assert set(got) == {"eer", "min_dcf", "act_dcf", "cllr"}
    assert got["eer"] == pytest.approx(M.compute_eer(bona, spoof)[0])
    assert got["min_dcf"] == pytest.approx(M.min_dcf(bona, spoof)[0])
    assert got["act_dcf"] == pytest.approx(M.act_dcf(bona, spoof)[0])
    assert got["cllr"] == pytest.approx(M.cllr(bona, spoof))


@pytest.mark.parametrize("edit, which, pattern", [
    (lambda s, k: (s.replace("cm-score", "score"), k), "scores", "missing column"),
    (lambda s, k: (s + "E_9\t0.1\n", k), "scores", "no key.*E_9"),
    (lambda s, k: ("\n".join(s.splitlines()[:-1]) + "\n", k), "scores", "no score.*E_3"),
    (lambda s, k: (s.replace("\t0.5", "\tabc"), k), "scores", "row 2: E_1: bad cm-score 'abc'"),
    (lambda s, k: (s, k.replace("spoof", "fake", 1)), "keys", "bad cm-label 'fake'"),
    (lambda s, k: (s.replace("E_2\t", "E_0\t"), k), "scores", "row 3: duplicate filename 'E_0'"),
])
def test_evaluate_files_refuses_bad_input_naming_file_and_row(tmp_path, edit, which, pattern):
    s, k = write_tsvs(tmp_path, ["E_0", "E_1", "E_2", "E_3"], [0.9, 0.5, -0.3, -1.0],
                      ["bonafide", "bonafide", "spoof", "spoof"])
    new_s, new_k = edit(s.read_text(), k.read_text())
    s.write_text(new_s)
    k.write_text(new_k)
    with pytest.raises(ManifestError, match=pattern) as err:
        scorer.evaluate_files(s, k)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(str(s if which == "scores" else k))


def test_evaluate_files_missing_file(tmp_path):
    with pytest.raises(ManifestError, match="not found"):
        scorer.evaluate_files(tmp_path / "none.tsv", tmp_path / "keys.tsv")
