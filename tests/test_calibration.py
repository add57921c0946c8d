"""Linear calibration to LLRs: oracle recovery on Gaussian scores, monotonicity, the JSON file, and
an experiment's calibration.json fitted on its finished folds' OOF scores."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from antispoof import metrics as M
from antispoof.commands.cli import main as cli
from antispoof.metrics import calibration as C
from antispoof.commands.report import report
from antispoof.runs import write_table
from antispoof.schema import ManifestError
from antispoof.train.calibration import calibrate_experiment, calibration_rows, is_current, read_calibration


def gaussian_scores(n=20000, seed=0):
    """Raw scores 3x + 5 with x ~ N(+1, 1) bona fide, N(-1, 1) spoof: the true LLR of x is 2x,
    so of the raw score it is (2/3) s - 10/3."""
    rng = np.random.default_rng(seed)
    x = np.r_[rng.normal(1, 1, n), rng.normal(-1, 1, n)]
    labels = np.r_[np.full(n, "bonafide"), np.full(n, "spoof")]
    return 3 * x + 5, labels


@pytest.mark.parametrize("prior", [0.5, None, 0.2])
def test_fit_recovers_the_true_llr_of_two_gaussians_for_any_prior(prior):
    raw, labels = gaussian_scores()
    cal = C.fit(raw, labels, prior)
    assert cal.slope == pytest.approx(2 / 3, abs=0.03)
    assert cal.offset == pytest.approx(-10 / 3, abs=0.12)
    assert cal.prior == (C.effective_prior() if prior is None else prior)
    assert (cal.n_bonafide, cal.n_spoof) == (20000, 20000)


def test_calibration_lowers_cllr_and_actdcf_to_near_the_true_llr_values():
    raw, labels = gaussian_scores()
    bona = labels == "bonafide"
    cal, oof_llr, _ = C.calibrate(raw, labels, folds=np.arange(raw.size) % 3)
    before, after = cal.metrics["oof"]["before"], cal.metrics["oof"]["after"]
    assert before["cllr"] > 1.5 and after["cllr"] < 0.55, "raw scores are far from LLRs"
    true_llr = (2 / 3) * raw - 10 / 3
    assert after["cllr"] == pytest.approx(M.cllr(true_llr[bona], true_llr[~bona]), abs=0.005)
    assert after["act_dcf"] < before["act_dcf"]
    assert after["min_dcf"] == pytest.approx(before["min_dcf"], abs=0.01)
    assert cal.metrics["oof"]["cross_fitted"] is True
    assert C.effective_prior() == pytest.approx(0.95 / 1.45)
    # the effective prior's Bayes threshold is act_dcf's: -logit(pi) = -log(beta)
    assert -np.log(C.effective_prior() / (1 - C.effective_prior())) == pytest.approx(M.bayes_threshold())


def test_calibration_is_monotone_so_the_eer_and_min_dcf_do_not_move():
    rng = np.random.default_rng(1)
    raw = np.r_[rng.gamma(2.0, 1.0, 300), rng.gamma(1.2, 1.0, 200)]  # skewed, not LLRs
    labels = np.r_[np.ones(300, int), np.zeros(200, int)]
    cal = C.fit(raw, labels)
    llr = cal.apply(raw)
    assert cal.slope > 0 and np.all(np.diff(llr[np.argsort(raw)]) >= 0)
    b = labels == 1
    assert M.compute_eer(llr[b], llr[~b])[0] == M.compute_eer(raw[b], raw[~b])[0]
    assert M.min_dcf(llr[b], llr[~b])[0] == pytest.approx(M.min_dcf(raw[b], raw[~b])[0])


def test_backward_scores_get_no_evidence_and_separable_ones_a_finite_map():
    raw, labels = gaussian_scores(2000)
    backwards = C.fit(-raw, labels)
    assert backwards.slope == 0.0 and abs(backwards.offset) < 1e-3, "slope >= 0: never an inverted ranking"
    separable = C.fit([3.0, 2.0, 1.0, -1.0, -2.0], ["bonafide"] * 3 + ["spoof"] * 2)
    assert np.isfinite(separable.slope) and 0 < separable.slope < 100


def test_fit_refuses_one_class_and_bad_priors():
    with pytest.raises(ValueError, match="both classes"):
        C.fit([0.1, 0.2], ["spoof", "spoof"])
    with pytest.raises(ValueError, match="prior"):
        C.fit([0.1, 0.2], ["spoof", "bonafide"], prior=1.0)
    with pytest.raises(ValueError, match="NaN"):
        C.fit([0.1, np.nan], ["spoof", "bonafide"])


def test_save_load_round_trip_and_one_line_errors(tmp_path):
    raw, labels = gaussian_scores(500)
    cal, _, test_llr = C.calibrate(raw, labels, test_scores=raw[::100], test_labels=labels[::100],
                                   info={"system": "x", "folds": [0, 1]})
    path = C.save(cal, tmp_path / "sub" / "calibration.json")
    back = C.load(path)
    assert back == cal and json.loads(path.read_text())["kind"] == "linear"
    assert np.array_equal(back.apply(raw[::100]), test_llr)
    assert set(back.metrics) == {"oof", "test"} and back.info["system"] == "x"
    assert back.info["bayes_threshold"] == pytest.approx(M.bayes_threshold())
    assert not list(path.parent.glob(".*")), "atomic write leaves no temporary file"
    for text, problem in (("{", "malformed calibration"), ('{"kind": "linear", "slope": 1}', "malformed"),
                          ('{"kind": "isotonic"}', "not a linear calibration"), ("[1]", "not a linear")):
        path.write_text(text)
        with pytest.raises(ManifestError, match=problem) as err:
            C.load(path)
        assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)
    with pytest.raises(ManifestError, match="file not found"):
        C.load(tmp_path / "none.json")


def test_threshold_moves_to_the_llr_scale_with_the_same_decisions():
    raw, labels = gaussian_scores(500)
    cal = C.fit(raw, labels)
    assert np.array_equal(raw < 4.2, cal.apply(raw) < cal.threshold(4.2))


# ---- an experiment's calibration.json -----------------------------------------------------------

def _experiment(root, folds=(0, 1), seed=0):
    """folds/<ds>/exp/fold<k>/ with oof.parquet (120 clips each), test.parquet (50 clips), metrics.json;
    data/<ds>/solution.csv with the test labels."""
    rng = np.random.default_rng(seed)
    test_ids = [f"te{i:02d}" for i in range(50)]
    test_bona = np.arange(50) < 25
    data = root / "data" / "ds"
    data.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"utt_id": test_ids, "path": "a.flac", "duration": 1.0}).to_csv(data / "test.csv", index=False)
    pd.DataFrame({"utt_id": test_ids, "label": np.where(test_bona, "bonafide", "spoof")}).to_csv(
        data / "solution.csv", index=False)
    exp = root / "folds" / "ds" / "exp"
    for k in folds:
        d = exp / f"fold{k}"
        d.mkdir(parents=True)
        bona = rng.random(120) < 0.5
        oof = pd.DataFrame({"utt_id": [f"tr{k}_{i:03d}" for i in range(120)],
                            "score": 4 * (bona + rng.normal(0, 0.7, 120)) - 1,
                            "label": np.where(bona, "bonafide", "spoof"),
                            "seg_scores": [np.zeros(3, np.float32)] * 120})
        write_table(oof, d / "oof.parquet")
        test = pd.DataFrame({"utt_id": test_ids[::-1], "score": (4 * (test_bona + rng.normal(0, 0.7, 50)) - 1)[::-1]})
        write_table(test, d / "test.parquet")
        (d / "metrics.json").write_text(json.dumps({"fold": k, "epochs": 1, "seconds_per_epoch": 1.0,
                                                    "n_parameters": 1, "oof": {"eer": 0.1}, "test": {}}))
    return exp, data


def test_experiment_calibration_fits_on_concatenated_oof_and_averages_test_over_folds(tmp_path):
    exp, data = _experiment(tmp_path)
    cal = calibrate_experiment(exp, data, align="none")
    assert read_calibration(exp) == cal and (exp / "calibration.json").is_file()
    assert cal.n_bonafide + cal.n_spoof == 240 and cal.info["folds"] == [0, 1]
    oof = pd.concat([pd.read_parquet(exp / f"fold{k}" / "oof.parquet") for k in (0, 1)])
    direct = C.fit(oof["score"], oof["label"])
    assert (cal.slope, cal.offset) == (direct.slope, direct.offset), "the fit sees every OOF clip once"
    tests = [pd.read_parquet(exp / f"fold{k}" / "test.parquet").set_index("utt_id")["score"] for k in (0, 1)]
    mean = (tests[0] + tests[1].loc[tests[0].index]) / 2
    solution = pd.read_csv(data / "solution.csv").set_index("utt_id").loc[mean.index, "label"]
    assert cal.metrics["test"]["before"]["cllr"] == pytest.approx(C.quality(mean, solution)["cllr"])
    assert cal.metrics["test"]["after"]["cllr"] == pytest.approx(C.quality(cal.apply(mean), solution)["cllr"])
    assert cal.metrics["test"]["after"]["cllr"] < cal.metrics["test"]["before"]["cllr"]
    assert cal.info["threshold"] == pytest.approx(M.bayes_threshold()) and set(cal.info["llr_thresholds"]) == {"eer", "f1"}
    assert is_current(cal, exp)
    (exp / "fold2").mkdir()
    (exp / "fold2" / "metrics.json").write_text("{}")
    assert not is_current(cal, exp), "a fold finished since the fit"


def test_each_folds_own_map_shows_when_fold_models_disagree_in_scale(tmp_path):
    exp, data = _experiment(tmp_path)
    path = exp / "fold1" / "oof.parquet"
    write_table(pd.read_parquet(path).assign(score=lambda t: 3 * t["score"]), path)  # fold 1's model: 3x the scale
    cal = calibrate_experiment(exp, data, align="none")
    by_fold = {int(k): m for k, m in cal.info["by_fold"].items()}
    own = C.fit(pd.read_parquet(path)["score"], pd.read_parquet(path)["label"])
    assert (by_fold[1]["slope"], by_fold[1]["offset"]) == (own.slope, own.offset)
    assert by_fold[0]["slope"] / by_fold[1]["slope"] == pytest.approx(3, rel=0.3)
    assert max(m["cllr"] for m in by_fold.values()) < cal.metrics["oof"]["after"]["cllr"], \
        "one map for both scales is worse than each fold's own"
    row = calibration_rows([exp]).iloc[0]
    assert row["slope by fold"] == " ".join(f"{by_fold[k]['slope']:.3g}" for k in (0, 1))


def _drift(exp, fold, slope, offset):
    """Fold `fold`'s model scores everything (OOF and test alike) on its own scale."""
    for name in ("oof.parquet", "test.parquet"):
        path = exp / f"fold{fold}" / name
        write_table(pd.read_parquet(path).assign(score=lambda t: slope * t["score"] + offset), path)


def test_fold_models_on_one_scale_fit_as_if_they_had_never_drifted(tmp_path):
    exp, data = _experiment(tmp_path)
    plain = calibrate_experiment(exp, data)
    _drift(exp, 1, 5.0, 12.0)
    drifted = calibrate_experiment(exp, data, align="none")
    aligned = calibrate_experiment(exp, data)
    assert aligned.info["align_folds"] == "test" and drifted.info["align_folds"] == "none"
    after = {name: c.metrics["oof"]["after"]["cllr"] for name, c in
             (("plain", plain), ("drifted", drifted), ("aligned", aligned))}
    assert after["aligned"] == pytest.approx(after["plain"], abs=1e-9), "an affine drift is undone exactly"
    assert after["drifted"] > after["aligned"] + 0.1, "a map fitted on the other fold's scale miscalibrates"
    assert aligned.metrics["oof"]["after"]["cllr"] < aligned.metrics["oof"]["before"]["cllr"]
    assert aligned.metrics["test"]["after"]["cllr"] == pytest.approx(plain.metrics["test"]["after"]["cllr"])


def test_calibrate_command_and_report_show_before_and_after(tmp_path, capsys, monkeypatch):
    exp, data = _experiment(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert cli(["calibrate", "--data", str(data), "--experiment", "exp"]) == 0
    out = capsys.readouterr().out
    assert "OOF Cllr" in out and "test actDCF" in out and " -> " in out
    text = report("ds", tmp_path / "folds")
    assert "Calibration (calibration.json" in text and "| exp " in text.split("Calibration")[1]
    assert cli(["calibrate", "--data", str(data), "--experiments", "nothing*"]) == 2
    assert "no experiment matching 'nothing*'" in capsys.readouterr().err


def test_an_experiment_with_one_class_only_is_refused_in_one_line(tmp_path):
    exp, data = _experiment(tmp_path, folds=(0,))
    table = pd.read_parquet(exp / "fold0" / "oof.parquet").assign(label="spoof")
    write_table(table, exp / "fold0" / "oof.parquet")
    with pytest.raises(ManifestError, match="cannot calibrate: calibration needs scores of both classes"):
        calibrate_experiment(exp, data)
