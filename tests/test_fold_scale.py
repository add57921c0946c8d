"""inference.fold_scale: fold models put on one scale from their own unlabelled test scores."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from antispoof.commands.cli import main as cli
from antispoof.inference.fold_scale import IDENTITY, FoldScale, fold_scales
from antispoof.runs import write_table
from antispoof.schema import ManifestError


def _table(scores, utt=None):
    return pd.DataFrame({"utt_id": utt or [f"u{i}" for i in range(len(scores))], "score": scores,
                         "score_utt": 2 * np.asarray(scores) + 1})


@pytest.mark.parametrize("slope, offset", [(1.0, 0.0), (0.01, -3.0), (40.0, 250.0)])
def test_two_fold_models_that_differ_by_an_affine_map_agree_once_aligned(slope, offset):
    rng = np.random.default_rng(1)
    test, oof = rng.standard_t(3, 300), rng.normal(0.5, 2, 80)
    own = FoldScale.fit(_table(test))
    drifted = FoldScale.fit(_table(slope * test + offset))
    a = own.apply(_table(oof))
    b = drifted.apply(_table(slope * oof + offset))
    np.testing.assert_allclose(a["score"], b["score"], atol=1e-9)
    np.testing.assert_allclose(a["score_utt"], b["score_utt"], atol=1e-9)


def test_the_reference_gets_median_zero_and_unit_normal_spread_and_order_is_kept():
    rng = np.random.default_rng(2)
    test = rng.normal(7, 3, 2001)
    mapped = FoldScale.fit(_table(test)).apply(_table(test))["score"].to_numpy()
    assert np.median(mapped) == pytest.approx(0, abs=1e-12)
    q1, q3 = np.percentile(mapped, [25, 75])
    assert (q3 - q1) == pytest.approx(1.349)
    assert np.array_equal(np.argsort(mapped, kind="stable"), np.argsort(test, kind="stable")), "monotone"


def test_segments_and_other_columns_are_left_alone_and_a_constant_reference_does_not_divide_by_zero():
    table = _table([1.0, 1.0, 1.0]).assign(seg_scores=[np.arange(3.0)] * 3)
    scale = FoldScale.fit(table)
    out = scale.apply(table)
    assert np.isfinite(out["score"]).all() and (out["score"] == 0).all()
    assert all(np.array_equal(s, np.arange(3.0)) for s in out["seg_scores"])
    assert IDENTITY.apply(table).equals(table) and scale.to_dict()["score"]["spread"] == 1.0


def test_fold_scales_reads_each_folds_test_table_and_refuses_an_unknown_mode(tmp_path):
    for k, shift in ((0, 0.0), (1, 10.0)):
        (tmp_path / f"fold{k}").mkdir()
        write_table(_table(list(np.linspace(-1, 1, 9) + shift)), tmp_path / f"fold{k}" / "test.parquet")
    folds = {k: tmp_path / f"fold{k}" for k in (0, 1)}
    scales = fold_scales(folds)
    assert scales[0].to_dict()["score"]["centre"] == pytest.approx(0)
    assert scales[1].to_dict()["score"]["centre"] == pytest.approx(10)
    assert fold_scales(folds, "none") == {0: IDENTITY, 1: IDENTITY}
    with pytest.raises(ManifestError, match="align_folds must be one of test, none"):
        fold_scales(folds, "rank")


def test_predict_refuses_a_threshold_that_is_neither_a_number_nor_competition(capsys):
    with pytest.raises(SystemExit):
        cli(["predict", "--experiment", "x", "--audio", "a.wav", "--threshold", "strict"])
    assert "expected an LLR (a number) or 'competition'" in capsys.readouterr().err


def test_predict_refuses_a_prior_outside_zero_and_one(capsys):
    with pytest.raises(SystemExit):
        cli(["predict", "--experiment", "x", "--audio", "a.wav", "--p-spoof", "1.5"])
    assert "expected a probability between 0 and 1" in capsys.readouterr().err
