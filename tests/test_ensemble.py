"""Ensembles: voting and tie maths, normalisation, thresholds, features, fold-output loading,
honest cross-fitting (no held-out label reaches a fit), and the vote / stack runs end to end
on a small synthetic project whose every file must round-trip through the scorer."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from antispoof import metrics as M
from antispoof.submit import scorer
from antispoof.commands.cli import main as cli
from antispoof.data.manifest import save_segments
from antispoof.ensemble import crossfit
from antispoof.ensemble.features import segment_statistics
from antispoof.ensemble.normalise import Normaliser
from antispoof.ensemble.segments import clip_regions, regions_table
from antispoof.ensemble.stack import LightGBMStack, LogisticFusion
from antispoof.ensemble.tables import EnsembleWarning, load_ensemble
from antispoof.ensemble.thresholds import eer_threshold, f1_threshold, prior_weights
from antispoof.ensemble.vote import (HardVote, SingleModel, SoftVote, majority_score, majority_threshold,
                                     search_weights, weighted_mean)
from antispoof.commands.ensemble import ensemble_config, main as ensemble_main, run
from antispoof.inference.fold_scale import FoldScale
from antispoof.runs import write_table
from antispoof.schema import ManifestError
from antispoof.submit.scorer import region_frames

# ---- a synthetic project: data set + fold outputs of three detectors -----------------------------

HOP10 = 0.01
MODELS = {"alpha": (0.02, 2.0), "beta": (0.16, 1.0), "gamma": (0.16, 0.0)}  # hop, signal strength


def _clips(rng, n, prefix, groups):
    durations = rng.choice([0.64, 0.96, 1.28, 1.6], size=n)
    labels = np.where(rng.random(n) < 0.5, "bonafide", "spoof")
    kind = np.where((labels == "spoof") & (rng.random(n) < 0.5), "partial", np.where(labels == "spoof", "tts", "bonafide"))
    segs = {}
    for i in range(n):
        frames = int(round(durations[i] / HOP10))
        seg = np.full(frames, 0 if labels[i] == "spoof" else 1, dtype=np.int8)
        if kind[i] == "partial":
            seg[:] = 1
            seg[frames // 4: frames // 2] = 0
        segs[f"{prefix}{i:03d}"] = seg
    return pd.DataFrame({"utt_id": [f"{prefix}{i:03d}" for i in range(n)], "path": "audio/x.flac",
                         "duration": durations, "label": labels, "attack": np.where(labels == "spoof", "A1", "-"),
                         "language": rng.choice(["en", "fr"], size=n), "kind": kind,
                         "group": [f"g{g}" for g in groups]}), segs


def _seg_scores(rng, labels10, hop, signal):
    k = int(round(hop / HOP10))
    pooled = np.minimum.reduceat(labels10, np.arange(0, labels10.size, k)).astype(float)
    return (signal * (pooled - 0.5) + rng.normal(0, 1, pooled.size)).astype(np.float32)


def _table(rng, frame, segs, hop, signal, with_label):
    rows = []
    for u, lab in zip(frame["utt_id"], frame["label"]):
        seg = _seg_scores(rng, segs[u], hop, signal)
        utt = float(signal * (lab == "bonafide") + rng.normal(0, 1))
        rows.append({"utt_id": u, "score": utt, "score_utt": utt, "score_seg_min": float(seg.min()),
                     "seg_scores": seg, "seg_hop_s": hop, "label": lab if with_label else None})
    table = pd.DataFrame(rows)
    return table if with_label else table.drop(columns="label")


def make_project(root, folds=(0, 1, 2), models=MODELS, seed=0):
    """data/synth (train/test/solution, segment labels) and folds/synth/<model>/fold<k>/ outputs."""
    rng = np.random.default_rng(seed)
    data = root / "data" / "synth"
    data.mkdir(parents=True)
    train, train_segs = _clips(rng, 108, "tr", np.arange(108) // 3)
    test, test_segs = _clips(rng, 40, "te", np.arange(40))
    train.to_csv(data / "train.csv", index=False)
    test[["utt_id", "path", "duration"]].to_csv(data / "test.csv", index=False)
    test[["utt_id", "label", "attack", "language", "kind"]].to_csv(data / "solution.csv", index=False)
    save_segments(data / "train_segments.npz", train_segs)
    save_segments(data / "solution_segments.npz", test_segs)
    out = root / "folds" / "synth"
    out.mkdir(parents=True)
    train_fold = (np.arange(108) // 3) % 3
    pd.DataFrame({"utt_id": train["utt_id"], "fold": train_fold, "label": train["label"],
                  "group": train["group"]}).to_csv(out / "folds.csv", index=False)
    for name, (hop, signal) in models.items():
        for k in folds:
            d = out / name / f"fold{k}"
            d.mkdir(parents=True)
            part = train[train_fold == k]
            write_table(_table(rng, part, train_segs, hop, signal, True), d / "oof.parquet")
            write_table(_table(rng, test, test_segs, hop, signal, False), d / "test.parquet")
            (d / "metrics.json").write_text("{}")
    return data


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # submissions/ and folds/ relative to the project
    make_project(tmp_path)
    return tmp_path


def config(project, *extra):
    # configs/ is found relative to the repository; the test runs elsewhere, so pass the file path
    from pathlib import Path

    default = Path(__file__).resolve().parents[1] / "configs" / "ensemble" / "default.yaml"
    return ensemble_config(str(default), str(project / "data" / "synth"), None,
                           [f"output_root={project / 'folds'}", f"submission.dir={project / 'submissions'}",
                            "progress=false", "vote.trials=50", "stack.lightgbm.n_estimators=60",
                            "stack.early_stopping_rounds=10", "stack.lightgbm.min_child_samples=5", *extra])


# ---- voting maths -------------------------------------------------------------------------------

def test_weighted_mean_normalises_the_weights():
    s = np.array([[1.0, 3.0], [2.0, 0.0]])
    assert weighted_mean(s, [1, 3]) == pytest.approx([2.5, 0.5])
    assert weighted_mean(s, [2, 6]) == pytest.approx(weighted_mean(s, [1, 3]))


def test_weight_search_prefers_the_informative_model_and_equal_weights_on_ties():
    rng = np.random.default_rng(1)
    bona = rng.random(400) < 0.5
    good = bona * 2.0 + rng.normal(0, 0.5, 400)
    noise = rng.normal(0, 1, 400)
    w, value = search_weights(np.column_stack([noise, good]), bona, "eer", trials=100, seed=0)
    assert w[1] > 0.8
    assert value >= -M.compute_eer(good[bona], good[~bona])[0], "each model alone is a candidate"
    same = np.column_stack([good, good, good])
    w, _ = search_weights(same, bona, "eer", trials=20, seed=0)
    assert w == pytest.approx(np.full(3, 1 / 3)), "identical models: equal weights (first candidate) win"


def test_majority_vote_odd_count():
    # 3 models, thresholds 0: votes for bona fide 3, 2, 1, 0
    s = np.array([[1.0, 1, 1], [1, 1, -1], [1, -1, -1], [-1, -1, -1]])
    score = majority_score(s, np.zeros(3))
    spoof = score < majority_threshold(3)
    assert spoof.tolist() == [False, False, True, True]
    assert np.all(np.diff(score) < 0)


def test_majority_vote_even_split_goes_to_the_mean_margin():
    t = np.array([0.0, 0.0, 1.0, 1.0])
    # two bona fide votes, two spoof votes in each row; the mean margin decides
    s = np.array([[3.0, 0.1, 0.9, 0.5],     # margins 3, .1, -.1, -.5 -> mean > 0 -> bona fide
                  [0.1, 0.1, 0.0, -2.0],    # margins .1, .1, -1, -3 -> mean < 0 -> spoof
                  [0.5, 0.5, 0.5, 0.5]])    # margins .5, .5, -.5, -.5 -> exactly 0 -> bona fide
    spoof = majority_score(s, t) < majority_threshold(4)
    assert spoof.tolist() == [False, True, False]
    # a 3-1 majority is never overturned by margins, however large
    s = np.array([[1e9, -1e9, -1e9, -1e9], [-1e9, 1e-9, 1 + 1e-9, 1 + 1e-9]])
    score = majority_score(s, t)
    assert (score < majority_threshold(4)).tolist() == [True, False]
    assert 1 < score[0] < 2 and 3 < score[1] < 4, "the margin term stays inside its vote count"


def test_hard_votes_use_common_or_own_thresholds(project):
    cfg = config(project, "vote.model_rule=eer")
    ens = load_ensemble(cfg.dataset, cfg.output_root)
    rows = np.ones(len(ens.oof), dtype=bool)
    hard, strict = HardVote(cfg, False).fit(ens, rows), HardVote(cfg, True).fit(ens, rows)
    assert len(set(hard.model_thresholds)) == 1 and len(set(strict.model_thresholds)) == 3
    s = np.column_stack([hard.normalisers[n].transform(ens.models[n].oof["score"]) for n in ens.names])
    for j in range(3):
        assert strict.model_thresholds[j] == pytest.approx(eer_threshold(s[:, j], ens.oof["label"]))
    assert hard.threshold == strict.threshold == majority_threshold(3)


# ---- normalisation -----------------------------------------------------------------------------

@pytest.fixture
def oof_scores():
    rng = np.random.default_rng(2)
    bona = rng.random(300) < 0.3
    return rng.normal(0, 2, 300) + 3 * bona, bona


def test_rank_is_in_unit_interval_and_monotone(oof_scores):
    s, bona = oof_scores
    n = Normaliser("rank").fit(s, bona)
    grid = np.linspace(s.min() - 5, s.max() + 5, 500)
    out = n.transform(grid)
    assert out.min() >= 0 and out.max() <= 1 and np.all(np.diff(out) >= 0)
    assert n.transform(s).mean() == pytest.approx(0.5, abs=0.01)


def test_zscore_has_zero_mean_unit_std_on_oof(oof_scores):
    s, bona = oof_scores
    z = Normaliser("zscore").fit(s, bona).transform(s)
    assert z.mean() == pytest.approx(0, abs=1e-9) and z.std() == pytest.approx(1, abs=1e-9)


def test_logistic_calibration_is_monotone_and_an_llr(oof_scores):
    s, bona = oof_scores
    n = Normaliser("logistic").fit(s, bona)
    grid = np.linspace(-10, 10, 200)
    assert np.all(np.diff(n.transform(grid)) > 0)
    # the LLR excludes the OOF prior: bona fide (30 %) vs spoof are equally likely where it is 0
    from sklearn.linear_model import LogisticRegression
    lr = LogisticRegression(C=1e4).fit(s.reshape(-1, 1), bona)
    assert n.transform([1.0])[0] == pytest.approx(lr.decision_function([[1.0]])[0] - np.log(0.3 / 0.7), abs=0.3)
    arrays = [s[:5], s[5:5], s[5:12]]
    assert np.concatenate(n.transform_arrays(arrays)) == pytest.approx(n.transform(s[:12]))


def test_normalisation_never_changes_a_single_model_eer(oof_scores):
    s, bona = oof_scores
    eer = M.compute_eer(s[bona], s[~bona])[0]
    for method in ("rank", "zscore", "logistic", "none"):
        t = Normaliser(method).fit(s, bona).transform(s)
        assert M.compute_eer(t[bona], t[~bona])[0] == pytest.approx(eer, abs=0.01), method


# ---- thresholds --------------------------------------------------------------------------------

def brute_force_f1(scores, labels, weights):
    best = (-1, None)
    for t in sorted(set(scores)) + [max(scores) + 1]:
        spoof_pred = scores < t
        truth = labels == "spoof"
        tp = weights[spoof_pred & truth].sum()
        fp = weights[spoof_pred & ~truth].sum()
        fn = weights[~spoof_pred & truth].sum()
        f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
        if f1 > best[0] + 1e-12:
            best = (f1, t)
    return best


def test_f1_threshold_matches_a_brute_force_oracle_and_metrics():
    scores = np.array([0.1, 0.2, 0.3, 0.35, 0.4, 0.6, 0.7, 0.8, 0.9, 0.95])
    labels = np.array(["spoof", "spoof", "bonafide", "spoof", "spoof", "bonafide", "spoof", "bonafide",
                       "bonafide", "bonafide"])
    got = f1_threshold(scores, labels)
    f1, cut = brute_force_f1(scores, labels, np.ones(10))
    assert got["f1"] == pytest.approx(f1)
    # the chosen cut separates the same clips as the oracle's
    assert ((scores < got["threshold"]) == (scores < cut)).all()
    assert got["threshold"] == pytest.approx(M.best_f1_threshold(scores, labels)["threshold"])
    assert got["f1"] == pytest.approx(M.best_f1_threshold(scores, labels)["f1"])


def test_prior_reweighting_moves_the_threshold_the_right_way():
    rng = np.random.default_rng(3)
    labels = np.where(rng.random(2000) < 0.5, "bonafide", "spoof")
    scores = rng.normal(0, 1, 2000) + 1.0 * (labels == "bonafide")
    w = prior_weights(labels, 0.2)
    assert np.sum(w * (labels == "spoof")) / w.sum() == pytest.approx(0.2)
    base = f1_threshold(scores, labels)["threshold"]
    rare, common = f1_threshold(scores, labels, 0.2)["threshold"], f1_threshold(scores, labels, 0.8)["threshold"]
    assert rare < base < common, "more expected spoofs -> call more clips spoof"
    f1, cut = brute_force_f1(scores[:200], labels[:200], prior_weights(labels[:200], 0.3))
    got = f1_threshold(scores[:200], labels[:200], 0.3)
    assert got["f1"] == pytest.approx(f1)
    assert ((scores[:200] < got["threshold"]) == (scores[:200] < cut)).all()


def test_eer_threshold_is_the_metrics_one():
    rng = np.random.default_rng(4)
    labels = np.where(rng.random(100) < 0.5, "bonafide", "spoof")
    scores = rng.normal(0, 1, 100) + (labels == "bonafide")
    bona = labels == "bonafide"
    assert eer_threshold(scores, labels) == M.compute_eer(scores[bona], scores[~bona])[1]


# ---- features and regions ----------------------------------------------------------------------

def test_segment_statistics_on_a_hand_made_clip():
    clips = [np.array([1, -1, -1, 1, -1, -1, -1, 1.0]), np.array([-2.0]), np.array([3.0, 3.0]), np.array([])]
    f = segment_statistics(clips, 0.02, 0.0, quantiles=[0.5])
    assert f.loc[0, "seg_below"] == pytest.approx(5 / 8)
    assert f.loc[0, "longest_run_s"] == pytest.approx(3 * 0.02)
    assert f.loc[0, "transitions"] == 4
    assert f.loc[0, "seg_mean"] == pytest.approx(-0.25) and f.loc[0, "seg_max"] == 1
    assert f.loc[0, "seg_std"] == pytest.approx(np.std(clips[0])) and f.loc[0, "seg_q50"] == -1
    assert (f.loc[1, "longest_run_s"], f.loc[1, "transitions"], f.loc[1, "seg_below"]) == (pytest.approx(0.02), 0, 1)
    assert (f.loc[2, "longest_run_s"], f.loc[2, "seg_below"]) == (0, 0)
    assert f.loc[3].isna().all(), "a clip without segments has missing features, not zeros"


def test_regions_merge_drop_and_fall_back_to_the_lowest_segment():
    s = np.array([1, -1, -1, 1, -1, -1, -1, 1.0])
    assert clip_regions(s, 0.02, 0.0, 0.16) == [(0.02, 0.06), (0.08, 0.14)]
    assert clip_regions(s, 0.02, 0.0, 0.16, merge_gap_s=0.02) == [(0.02, 0.14)]
    assert clip_regions(s, 0.02, 0.0, 0.16, min_region_s=0.05) == [(0.08, 0.14)]
    assert clip_regions(np.array([3.0, 2.0, 4.0]), 0.16, 0.0, 0.4) == [(0.16, 0.32)]
    assert clip_regions(s, 0.02, 0.0, 0.12) == [(0.02, 0.06), (0.08, 0.12)], "cut at the clip's end"
    table = regions_table(["a", "b"], [s, s], 0.02, 0.0, [0.16, 0.16], [True, False])
    assert table["utt_id"].tolist() == ["a", "a"], "only clips called spoof get regions"


def test_region_frames_invert_regions_on_the_10ms_grid():
    labels = np.ones(100, dtype=np.int8)
    labels[10:25] = 0
    labels[60:61] = 0
    regions = pd.DataFrame(clip_regions(labels.astype(float) - 0.5, 0.01, 0.0, 1.0), columns=["start", "end"])
    assert (region_frames(regions, 100) == labels).all()


# ---- loading fold outputs ----------------------------------------------------------------------

def test_load_averages_test_scores_over_folds_and_aligns_oof(project):
    ens = load_ensemble(str(project / "data" / "synth"), project / "folds")
    assert ens.names == ["alpha", "beta", "gamma"] and ens.folds == [0, 1, 2]
    assert len(ens.oof) == 108 and ens.oof["fold"].tolist() == sorted(ens.oof["fold"])
    tables = [pd.read_parquet(project / "folds/synth/beta" / f"fold{k}" / "test.parquet") for k in range(3)]
    raw = [t.set_index("utt_id").loc[ens.test["utt_id"], "score"].to_numpy() for t in tables]
    on_one_scale = [(s - np.median(s)) / (np.subtract(*np.percentile(s, [75, 25])) / 1.349) for s in raw]
    assert ens.align == "test"
    assert ens.models["beta"].test["score"].to_numpy() == pytest.approx(np.mean(on_one_scale, axis=0))
    unaligned = load_ensemble(str(project / "data" / "synth"), project / "folds", align="none")
    assert unaligned.models["beta"].test["score"].to_numpy() == pytest.approx(np.mean(raw, axis=0))
    fold0 = ens.oof["fold"] == 0
    assert np.corrcoef(ens.models["beta"].oof["score"][fold0], unaligned.models["beta"].oof["score"][fold0])[0, 1] \
        == pytest.approx(1.0), "each fold model's OOF scores move by its own affine map"
    seg = np.mean([t.set_index("utt_id").loc["te005", "seg_scores"] for t in tables], axis=0)
    assert ens.models["beta"].test.set_index("utt_id").loc["te005", "seg_scores"] == pytest.approx(seg)
    for t in ens.models.values():
        assert (t.oof["utt_id"] == ens.oof["utt_id"]).all() and (t.test["utt_id"] == ens.test["utt_id"]).all()
        assert "label" not in t.test.columns


def test_stacker_scores_each_fold_models_test_features_then_averages(project):
    cfg = config(project)
    ens = load_ensemble(cfg.dataset, cfg.output_root)
    for k in ens.folds:
        view = ens.fold_view(k)
        own = pd.read_parquet(project / f"folds/synth/beta/fold{k}/test.parquet").set_index("utt_id")
        own = FoldScale.fit(own).apply(own)
        assert view.models["beta"].test["score"].to_numpy() == pytest.approx(own.loc[ens.test["utt_id"], "score"])
        assert view.oof is ens.oof and ens.models["beta"].test is not view.models["beta"].test
    fitted = LightGBMStack(cfg).fit(ens, np.ones(len(ens.oof), dtype=bool))
    per_fold = [fitted.model.predict(fitted.features(ens.fold_view(k), "test"), raw_score=True) for k in ens.folds]
    assert fitted.score(ens, "test") == pytest.approx(np.mean(per_fold, axis=0))
    averaged = LightGBMStack(config(project, "stack.test_features=averaged")).fit(ens, np.ones(len(ens.oof), dtype=bool))
    assert averaged.score(ens, "test") == pytest.approx(
        fitted.model.predict(fitted.features(ens, "test"), raw_score=True))


def test_uneven_fold_sets_use_the_common_folds_with_a_warning(project):
    for name in ("beta", "gamma"):
        (project / "folds/synth" / name / "fold2" / "metrics.json").unlink()  # unfinished fold
    with pytest.warns(EnsembleWarning, match=r"fewer folds: beta \[0, 1\], gamma \[0, 1\].*finished, \[0, 1\]"):
        ens = load_ensemble(str(project / "data" / "synth"), project / "folds")
    assert ens.folds == [0, 1] and set(ens.oof["fold"]) == {0, 1} and len(ens.oof) == 72
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # folds chosen by the caller: nothing left out to warn about
        narrowed = load_ensemble(str(project / "data" / "synth"), project / "folds", folds=[0, 1])
    assert narrowed.folds == [0, 1]
    narrowed = load_ensemble(str(project / "data" / "synth"), project / "folds", ["alpha"], folds=[0, 2])
    assert narrowed.folds == [0, 2] and set(narrowed.oof["fold"]) == {0, 2} and len(narrowed.oof) == 72
    with pytest.raises(ManifestError, match=r"fold\(s\) \[2\] asked for.*are \[0, 1\]"):
        run("vote", config(project, "folds=[1,2]"))
    (project / "folds/synth/alpha/fold1/metrics.json").unlink()
    with pytest.warns(EnsembleWarning), pytest.raises(ManifestError, match=r"share \[0\]; name others"):
        run("vote", config(project))


def test_clear_errors_for_missing_experiments_and_ids(project):
    data = str(project / "data" / "synth")
    with pytest.raises(ManifestError, match="no experiments found"):
        load_ensemble(data, project / "nowhere")
    with pytest.raises(ManifestError, match="delta: no such experiment"):
        load_ensemble(data, project / "folds", ["alpha", "delta"])
    (project / "folds/synth/delta/fold0").mkdir(parents=True)
    with pytest.raises(ManifestError, match="delta: no finished folds"):
        load_ensemble(data, project / "folds", ["delta"])
    with pytest.warns(EnsembleWarning, match="delta: no finished folds, skipped"):
        assert "delta" not in load_ensemble(data, project / "folds").names
    (project / "folds/synth/delta/fold0").rmdir()
    path = project / "folds/synth/gamma/fold1/test.parquet"
    write_table(pd.read_parquet(path).iloc[1:], path)
    with pytest.raises(ManifestError, match="fold1/test.parquet: test ids differ") as err:
        load_ensemble(data, project / "folds")
    assert "\n" not in str(err.value)


# ---- honest cross-fitting: no held-out label reaches a fit ----------------------------------------

def _garble_fold(ens, fold):
    flipped = ens.oof["label"].where(ens.oof["fold"] != fold,
                                     ens.oof["label"].map({"bonafide": "spoof", "spoof": "bonafide"}))
    ens.oof = ens.oof.assign(label=flipped)


SYSTEMS = {"stack": LightGBMStack, "logreg": LogisticFusion, "soft": SoftVote,
           "hard": lambda cfg: HardVote(cfg, False), "strictness": lambda cfg: HardVote(cfg, True),
           "single": lambda cfg: SingleModel("beta", cfg)}


@pytest.mark.parametrize("system", SYSTEMS)
def test_a_fold_is_predicted_without_its_own_labels(project, system):
    cfg = config(project)
    ens = load_ensemble(cfg.dataset, cfg.output_root)
    assert all("label" not in m.oof for m in ens.models.values()), "labels only in ens.oof"
    before = crossfit.cross_fit(ens, SYSTEMS[system](cfg))
    _garble_fold(ens, 0)
    after = crossfit.cross_fit(ens, SYSTEMS[system](cfg))
    fold0 = (ens.oof["fold"] == 0).to_numpy()
    assert after.oof[fold0] == pytest.approx(before.oof[fold0], abs=0, rel=0), "fold 0 saw its own labels"
    assert (after.oof_spoof[fold0] == before.oof_spoof[fold0]).all()
    assert not np.allclose(after.oof[~fold0], before.oof[~fold0]), "the other folds did learn from fold 0"


def test_fits_only_ever_see_the_other_folds(project):
    cfg = config(project)
    ens = load_ensemble(cfg.dataset, cfg.output_root)
    seen = []

    class Spy(LightGBMStack):
        def fit(self, ens, rows):
            seen.append(set(ens.oof.loc[rows, "fold"]))
            return super().fit(ens, rows)

    crossfit.cross_fit(ens, Spy(cfg))
    assert seen == [{1, 2}, {0, 2}, {0, 1}, {0, 1, 2}]


def test_inner_segment_thresholds_never_see_the_inner_validation_clip(project, monkeypatch):
    """Inside one fit, each inner split's segment thresholds come from its inner training rows:
    every clip of the fit is left out of exactly one of them (the split that scores it)."""
    from antispoof.ensemble import stack

    cfg = config(project)
    ens = load_ensemble(cfg.dataset, cfg.output_root)
    seen, fitted = [], stack.seg_thresholds
    monkeypatch.setattr(stack, "seg_thresholds", lambda ens, rows: seen.append(rows.copy()) or fitted(ens, rows))
    rows = (ens.oof["fold"] != 0).to_numpy()
    LightGBMStack(cfg).fit(ens, rows)
    *inner, final = seen
    assert len(inner) == cfg.stack.inner_folds and (final == rows).all()
    left_out = sum((rows & ~m).astype(int) for m in inner)
    assert (left_out[rows] == 1).all() and not any((m & ~rows).any() for m in inner)


# ---- end to end: submissions round-trip through the scorer ------------------------------------------

def _cli_score(path, data, capsys):
    assert cli(["score", str(path), "--data", str(data)]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("kind", ["vote", "stack"])
def test_run_writes_submissions_that_round_trip_through_the_scorer(project, kind, capsys):
    cfg = config(project, f"report.figures={kind == 'vote'}")  # the figures once: they are slow to draw
    with warnings.catch_warnings():
        warnings.simplefilter("error", EnsembleWarning)
        result = run(kind, cfg)
    data, files = project / "data" / "synth", result["files"]
    chosen = result["outcomes"][result["chosen"]]
    assert result["chosen"] == {"vote": "vote:soft", "stack": "stack:lightgbm"}[kind]
    solution = pd.read_csv(data / "solution.csv").set_index("utt_id").loc[result["ensemble"].test["utt_id"]]
    truth_spoof = (solution["label"] == "spoof").to_numpy()

    labels = _cli_score(files["f1"], data, capsys)
    assert labels["f1"] == pytest.approx(M.binary_scores(truth_spoof, chosen.test_spoof)["f1"])
    scores = _cli_score(files["eer"], data, capsys)
    bona = ~truth_spoof
    assert scores["eer"] == pytest.approx(M.compute_eer(chosen.test[bona], chosen.test[~bona])[0])
    tsv = _cli_score(files["asvspoof5"], data, capsys)
    assert tsv["eer"] == scores["eer"]
    keys = project / "keys.tsv"
    solution.reset_index().rename(columns={"utt_id": "filename", "label": "cm-label"}).to_csv(keys, sep="\t", index=False)
    assert scorer.evaluate_files(files["asvspoof5"], keys)["eer"] == pytest.approx(scores["eer"])
    segments = _cli_score(files["segments"], data, capsys)
    assert segments["utterance_f1"] == pytest.approx(labels["f1"]), "regions exactly on the clips labelled spoof"
    assert 0 <= segments["segment_f1"] <= 1
    assert 0 <= segments["region_f1"] <= 1 and 0 <= segments["event_f1"] <= 1, "time and event figures too"
    assert 0 <= result["segments"]["range_eer"] <= 1
    calibration = M.calibration.load(files["calibration"])
    assert files["calibration"].name == f"{kind}_synth_calibration.json" and calibration.slope > 0
    assert calibration.info["system"] == result["chosen"] and set(calibration.metrics) == {"oof", "test"}
    assert np.array_equal(calibration.apply(chosen.test) < calibration.info["threshold"], chosen.test_spoof), \
        "the threshold on the LLR scale gives the submitted labels"

    table = result["table"].set_index("system")
    assert set(table.index) >= {"alpha", "beta", "gamma", f"{result['chosen']} *"}
    assert table.loc[f"{result['chosen']} *", "test EER %"] == f"{100 * scores['eer']:.2f}"
    oof_eer = table["OOF EER %"].astype(float)
    assert oof_eer["alpha"] < oof_eer["gamma"], "the informative model ranks first"
    report = files["report"].read_text()
    assert "Results: OOF vs hidden test" in report and "EER % per attack" in report
    assert "## Calibration" in report and "Cllr" in report
    for png in ("det", "hist", "timelines"):
        path = project / "submissions" / f"{kind}_synth_{png}.png"
        assert path.stat().st_size > 1000 if kind == "vote" else not path.exists()
        assert (f"({path.name})" in report) == (kind == "vote")
    summary = json.loads(files["summary"].read_text())
    assert summary["submitted"] == result["chosen"] and summary["folds"] == [0, 1, 2]
    assert summary["systems"][result["chosen"]]["calibration"]["slope"] == calibration.slope
    if kind == "stack":
        fusion = summary["systems"]["fusion:logreg"]["fitted"]
        weights = fusion["coefficients"]
        assert weights["alpha"] > abs(weights["gamma"]), "the informative model weighs most"


def test_the_ensemble_step_reads_each_input_once(project, monkeypatch):
    """A dozen systems are scored, figures drawn and segments thresholded, yet every data set file
    (solution.csv included) is read once; each fold's prediction table too."""
    from collections import Counter
    from pathlib import Path

    reads, real_csv, real_parquet, real_load = Counter(), pd.read_csv, pd.read_parquet, np.load

    def counted(real):
        def read(source, *args, **kwargs):
            name = Path(source if isinstance(source, (str, Path)) else source.name).resolve()
            reads[str(name.relative_to(project.resolve()))] += 1
            return real(source, *args, **kwargs)
        return read

    monkeypatch.setattr(pd, "read_csv", counted(real_csv))
    monkeypatch.setattr(pd, "read_parquet", counted(real_parquet))
    monkeypatch.setattr(np, "load", counted(real_load))
    result = run("vote", config(project, "report.figures=true", "report.timelines=2"))
    assert len(result["outcomes"]) > 5 and result["segments"]
    data = "data/synth/"
    for name in ("solution.csv", "test.csv", "train.csv", "solution_segments.npz", "train_segments.npz"):
        assert reads[data + name] == 1, f"{name} read {reads[data + name]} times: {dict(reads)}"
    tables = {k: v for k, v in reads.items() if k.endswith(".parquet")}
    assert tables and set(tables.values()) == {1}, tables


def test_the_ensemble_beats_noise_and_uses_the_informative_model(project):
    cfg = config(project, "vote.trials=200", "normalise.method=zscore")  # weights on one scale
    ens = load_ensemble(cfg.dataset, cfg.output_root)
    soft = crossfit.cross_fit(ens, SoftVote(cfg))
    weights = dict(zip(soft.fitted.names, soft.fitted.weights))
    assert weights["alpha"] > weights["gamma"]
    bona = ens.bonafide
    assert M.compute_eer(soft.oof[bona], soft.oof[~bona])[0] < 0.3


def test_entry_point_prints_one_line_errors(project, capsys):
    from pathlib import Path

    default = Path(__file__).resolve().parents[1] / "configs" / "ensemble" / "default.yaml"
    code = ensemble_main("vote", ["--config", str(default), "--dataset", str(project / "data" / "synth"),
                                  f"output_root={project / 'nowhere'}"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("ensemble/vote.py: error: ") and "no experiments found" in err
    assert "\n" not in err
    code = ensemble_main("stack", ["--config", str(default), "--dataset", str(project / "data" / "synth"),
                                   f"output_root={project / 'folds'}", "progress=false",
                                   "stack.lightgbm.num_leaves=1"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err, "LightGBM's own refusal is one line too"
    assert err == ("ensemble/stack.py: error: stack.lightgbm: LightGBM refused the settings: "
                   "Check failed: (num_leaves) > (1)")
    from antispoof.commands.ensemble import parse_args
    args = parse_args("vote", ["--experiments", "a", "b", "vote.mode=hard", "--dataset", "mini", "seed=1"])
    assert args.experiments == ["a", "b"] and args.overrides == ["vote.mode=hard", "seed=1"]


def test_entry_points_run_as_scripts():
    """`python ensemble/vote.py` and `stack.py` as the user runs them: help, and a one-line error."""
    import subprocess
    import sys

    for script in ("ensemble/vote.py", "ensemble/stack.py"):
        shown = subprocess.run([sys.executable, script, "--help"], capture_output=True, text=True)
        assert shown.returncode == 0 and "--experiments" in shown.stdout
    bad = subprocess.run([sys.executable, "ensemble/vote.py", "vote.mdoe=hard"], capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "ensemble/vote.py: error: configs/ensemble/default.yaml: unknown config key 'vote.mdoe' "
        "(did you mean vote.mode?); write +vote.mdoe=... to add a new key"]
