"""ensemble.pooling: utterance scores pooled from segment scores, the rule chosen on OOF."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from antispoof.ensemble.crossfit import cross_fit
from antispoof.ensemble.pooling import PooledModel, check_rules, lowest_mean, pool, pooling_systems, softmin_pool
from antispoof.ensemble.tables import Ensemble, ModelTables
from antispoof.metrics.detection import compute_eer

CFG = OmegaConf.create({"normalise": {"method": "zscore", "calibration_c": 1e4},
                        "threshold": {"rule": "eer", "prior": None},
                        "pooling": {"enabled": True, "rules": ["utterance", "min", "lowest_25", "softmin_1", "mean"]}})


def test_pooling_rules_against_their_definitions():
    s = np.array([3.0, -2.0, 0.5, 1.0, -1.0, 4.0, 2.0, 0.0])
    assert pool(s, "min") == -2.0 and pool(s, "mean") == pytest.approx(s.mean())
    assert lowest_mean(s, 0.25) == pytest.approx(-1.5), "ceil(25 % of 8) = 2 lowest"
    assert lowest_mean(s, 0.01) == -2.0 and lowest_mean(s, 1.0) == pytest.approx(s.mean())
    assert pool(s, "lowest_25") == lowest_mean(s, 0.25)
    assert softmin_pool(s, 1e-4) == pytest.approx(-2.0) and softmin_pool(s, 1e8) == pytest.approx(s.mean())
    w = np.exp(-s / 2.0)
    assert pool(s, "softmin_0.5", spread=4.0) == pytest.approx(np.dot(w, s) / w.sum()), "tau = t x spread"
    assert s.min() <= softmin_pool(s, 0.7) <= s.mean()
    assert np.isnan(pool([np.nan], "min"))
    with pytest.raises(ValueError, match="unknown pooling rule 'max'"):
        check_rules(["utterance", "max"])


def _ensemble(partial: bool, n=240, folds=3, seed=0) -> Ensemble:
    """One model, 3 folds. partial=True: spoofs differ from bona fide in two segments only and the
    utterance score is noise; partial=False: the utterance score separates, segments are noise."""
    rng = np.random.default_rng(seed)
    bona = rng.random(n) < 0.5
    seg = [rng.normal(0, 1, 20) for _ in range(n)]
    if partial:
        for s, b in zip(seg, bona):
            if not b:
                s[rng.integers(0, 18):][:2] -= 3.0
        utt = rng.normal(0, 1, n)
    else:
        utt = np.where(bona, 1.5, -1.5) + rng.normal(0, 1, n)
    fold = np.arange(n) % folds
    seg = [s + k for s, k in zip(seg, fold)]  # fold model k scores segments k higher, its test clips too
    ids = [f"u{i:03d}" for i in range(n)]
    oof = pd.DataFrame({"utt_id": ids, "fold": fold, "label": np.where(bona, "bonafide", "spoof"),
                        "group": ids, "duration": 4.0})
    table = pd.DataFrame({"utt_id": ids, "score": utt, "seg_scores": seg})
    test_ids = [f"t{i:03d}" for i in range(60)]
    by_fold = {k: pd.DataFrame({"utt_id": test_ids, "score": rng.normal(0, 1, 60) * (k + 1),
                                "seg_scores": [rng.normal(k, 1, 20) for _ in range(60)]}) for k in range(folds)}
    test = pd.DataFrame({"utt_id": test_ids, "score": np.mean([t["score"] for t in by_fold.values()], axis=0)})
    models = {"m": ModelTables("m", list(range(folds)), 0.2, table, test, by_fold)}
    return Ensemble("ds", Path("."), list(range(folds)), oof, pd.DataFrame({"utt_id": test_ids}), models)


def test_a_partial_spoof_set_picks_a_low_pooling_and_beats_the_utterance_score():
    ens = _ensemble(partial=True)
    outcome = cross_fit(ens, PooledModel("m", CFG, CFG.pooling.rules))
    assert outcome.fitted.rule in {"min", "lowest_25", "softmin_1"}
    bona = ens.bonafide
    pooled = compute_eer(outcome.oof[bona], outcome.oof[~bona])[0]
    utterance = ens.models["m"].oof["score"].to_numpy()
    assert pooled < 0.2 < compute_eer(utterance[bona], utterance[~bona])[0]
    assert outcome.test.shape == (60,) and np.isfinite(outcome.test).all()


def test_whole_clip_evidence_keeps_the_utterance_score_and_a_rule_is_chosen_without_its_fold():
    ens = _ensemble(partial=False)
    system = PooledModel("m", CFG, CFG.pooling.rules)
    assert cross_fit(ens, system).fitted.rule == "utterance"
    held = ens.oof["fold"].to_numpy() == 0
    before = system.fit(ens, ~held)
    ens.oof.loc[held, "label"] = "spoof"  # the held-out fold's labels cannot change its rule
    after = system.fit(ens, ~held)
    assert before.rule == after.rule == "utterance" and before.threshold == after.threshold


def test_pooled_oof_scores_are_put_on_each_fold_models_scale():
    ens = _ensemble(partial=True)
    scores = PooledModel("m", CFG, ["min"])._scores(ens)
    # fold model k's test segments are centred at k: unaligned, fold 2's OOF minimum would sit 2 higher
    by_fold = [np.median(scores.oof["min"][ens.oof["fold"].to_numpy() == k]) for k in range(3)]
    assert max(by_fold) - min(by_fold) < 1.0


def test_pooling_rows_exist_only_when_enabled():
    ens = _ensemble(partial=True)
    assert [s.name for s in pooling_systems(CFG, ens)] == ["pool:m"]
    assert pooling_systems(OmegaConf.merge(CFG, {"pooling": {"enabled": False}}), ens) == []
