"""`antispoof predict` on new audio: any rate, channels and length, an unreadable file among them.

A 1-epoch SELCNN-MTL fold pair on the tiny benchmark is scored on a folder holding copies of test
clips, a stereo copy, an 8 kHz copy, a 2-minute recording and a corrupt file: test clips must get
their test tables' fold-averaged scores, the long file windows and regions, the corrupt file a row
of failed.csv. A vote over two experiments (the trained one and its twin) is saved and re-applied
to the same folder; every kind of saved system is checked on the synthetic project's tables.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from scipy.signal import resample_poly

from antispoof.commands.cli import main as cli
from antispoof.ensemble import saved
from antispoof.ensemble.crossfit import cross_fit
from antispoof.ensemble.segments import fuse_segments
from antispoof.ensemble.stack import LightGBMStack, LogisticFusion
from antispoof.ensemble.tables import load_ensemble
from antispoof.ensemble.vote import HardVote, SoftVote
from antispoof.inference.engine import WindowPlan, list_audio, stitch
from antispoof.inference.fold_scale import FoldScale
from antispoof.metrics import calibration
from antispoof.metrics import detection as M
from antispoof.commands.ensemble import ensemble_config, run
from antispoof.commands.predict import predict
from antispoof.runs import calibration_path, read_table
from antispoof.schema import ManifestError
from antispoof.train.fold import experiment_config, train_fold

FAST = ["trainer.max_epochs=1", "data.folds=3", "data.num_workers=0", "data.batch_size=8",
        "data.crop_s=2.0", "trainer.progress_every=0", "trainer.deterministic=true"]
LONG_S = 120.0


@pytest.fixture(scope="module")
def experiment(tiny, tmp_path_factory):
    """Folds 0 and 1 of selcnn_mulbs on tiny (its calibration.json refitted as each finished)."""
    root = tmp_path_factory.mktemp("predict_runs")
    cfg = experiment_config("selcnn_mulbs", str(tiny), [*FAST, f"output_root={root}"])
    for fold in (0, 1):
        train_fold(cfg, fold)
    return root / tiny.name / "selcnn_mulbs"


def fold_average(exp_dir) -> pd.Series:
    """The test tables' score, each fold model on the common scale, averaged over the fold models
    (ensemble.tables.average_test's rule)."""
    tables = [read_table(exp_dir / f"fold{k}" / "test.parquet").set_index("utt_id") for k in (0, 1)]
    return pd.concat([FoldScale.fit(t).apply(t)["score"] for t in tables], axis=1).mean(axis=1)


@pytest.fixture(scope="module")
def audio(tiny, tmp_path_factory):
    """Test clips as they are (the longest among them), a stereo and an 8 kHz copy, 2 minutes, a corrupt file."""
    folder = tmp_path_factory.mktemp("new_audio")
    test = pd.read_csv(tiny / "test.csv").sort_values("duration")
    picked = pd.concat([test.head(2), test.tail(2)])
    for row in picked.itertuples():
        shutil.copy(tiny / row.path, folder / f"{row.utt_id}.flac")
    source = picked.iloc[-1]
    wave, rate = sf.read(tiny / source.path, dtype="float32")
    sf.write(folder / "stereo.wav", np.stack([wave, wave], axis=1), rate, subtype="FLOAT")
    sf.write(folder / "eight_khz.wav", resample_poly(wave, 1, 2).astype(np.float32), 8000, subtype="PCM_16")
    parts = [sf.read(tiny / p, dtype="float32")[0] for p in test.path]
    long = np.concatenate(parts * int(np.ceil(LONG_S * rate / sum(map(len, parts)))))[: int(LONG_S * rate)]
    (folder / "long").mkdir()
    sf.write(folder / "long" / "two_minutes.flac", long, rate)
    (folder / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" * 20)
    return {"folder": folder, "test_ids": list(picked.utt_id), "stereo_of": source.utt_id}


# ---- windows, grid, inputs ------------------------------------------------------------------------

def test_windows_cover_the_file_on_the_grid_and_stitch_averages_overlaps():
    plan = WindowPlan(window_s=4.0, overlap=0.5, grid_s=0.16)
    assert plan.starts(4 * 16000) == [0], "a file no longer than the window is one window, scored whole"
    n = int(10.3 * 16000)
    starts = plan.starts(n)
    grid = int(0.16 * 16000)
    assert starts[0] == 0 and all(s % grid == 0 for s in starts) and starts == sorted(set(starts))
    assert starts[-1] + plan.length(n, starts[-1]) == n and all(plan.length(n, s) <= 4 * 16000 for s in starts)
    assert all(b - a <= 2 * 16000 for a, b in zip(starts, starts[1:])), "half a window of overlap"
    stitched = stitch([(0, np.array([1.0, 1.0, 1.0])), (2, np.array([3.0, 3.0]))])
    np.testing.assert_allclose(stitched, [1, 1, 2, 3])
    np.testing.assert_allclose(stitch([(0, np.array([1.0])), (2, np.array([5.0]))]), [1, 1, 5]), "a seam: left value"


def test_inputs_from_folders_lists_and_files(tmp_path):
    (tmp_path / "a" / "sub").mkdir(parents=True)
    for name in ("a/x.wav", "a/x.flac", "a/sub/y.flac", "a/notes.md", "z.ogg"):
        (tmp_path / name).write_bytes(b"")
    listed = tmp_path / "list.txt"
    listed.write_text("# clips\nz.ogg\n\nmissing.wav\n")
    table = list_audio([tmp_path / "a", listed])
    assert list(table.utt_id) == ["sub/y", "x.flac", "x.wav", "z", "missing"], "suffix kept only where names collide"
    assert table.path.iloc[-1] == str(tmp_path / "missing.wav"), "a listed file that is missing stays, to be reported"
    (tmp_path / "empty").mkdir()
    with pytest.raises(ManifestError, match="no audio files"):
        list_audio([tmp_path / "empty"])


# ---- an experiment --------------------------------------------------------------------------------

def test_experiment_scores_new_audio_as_its_test_tables(experiment, audio, tmp_path, capsys):
    out = tmp_path / "pred"
    code = cli(["predict", "--experiment", str(experiment), "--audio", str(audio["folder"]), "--out", str(out)])
    assert code == 0
    skipped = [line for line in capsys.readouterr().err.splitlines() if line.startswith("antispoof predict: skipped")]
    assert len(skipped) == 1 and "corrupt.wav" in skipped[0], "the unreadable file is one line"
    scores = pd.read_csv(out / "scores.csv").set_index("utt_id")
    failed = pd.read_csv(out / "failed.csv")
    assert list(failed.utt_id) == ["corrupt"] and "corrupt.wav" in failed.problem.iloc[0]
    assert scores.loc["corrupt", "status"] == "failed" and (scores.drop("corrupt").status == "ok").all()

    tables = fold_average(experiment)
    ids = audio["test_ids"]
    np.testing.assert_allclose(scores.loc[ids, "score"], tables.loc[ids], rtol=0, atol=1e-4)
    assert (scores.loc[ids, "windows"] == 1).all(), "the default window holds every clip of the data set"
    assert scores.loc["stereo", "score"] == pytest.approx(tables.loc[audio["stereo_of"]], abs=1e-4), "mixed down"
    assert scores.loc["eight_khz", "duration"] == pytest.approx(scores.loc["stereo", "duration"], abs=1e-3), \
        "resampled to 16 kHz"
    assert np.isfinite(scores.loc["eight_khz", "score"])

    cal = calibration.load(calibration_path(experiment))
    ok = scores[scores.status == "ok"]
    # scores.csv keeps 9 significant digits of the score, so the map of the written score is off
    # by up to slope x 5e-9 x |score|: an LLR near 0 needs that absolute tolerance, not a relative one
    rounding = abs(cal.slope) * 1e-8 * ok.score.abs().max()
    np.testing.assert_allclose(ok.llr, cal.apply(ok.score), rtol=1e-7, atol=rounding)
    assert cal.info["align_folds"] == "test"
    assert ((ok.llr < M.bayes_threshold(0.05)) == (ok.label == "spoof")).all(), "labels at the Bayes threshold"
    long = scores.loc["long/two_minutes"]
    assert long.duration == pytest.approx(LONG_S) and long.windows > 10


def test_a_long_file_is_windowed_and_gets_regions(experiment, audio, tmp_path):
    # everything labelled spoof (an LLR threshold above every score), so every file must get regions
    # windows without overlap here (half the work; stitching across seams), the default is 0.5
    listed = tmp_path / "files.txt"
    listed.write_text(f"{audio['folder'] / 'long' / 'two_minutes.flac'}\n{audio['folder'] / 'stereo.wav'}\n")
    result = predict(listed, experiment=str(experiment), out=tmp_path, threshold=1e9, overlap=0.0, progress=False,
                     keep_segments=True)
    scores = result["scores"].set_index("utt_id")
    assert list(scores.index) == ["two_minutes", "stereo"] and (scores.label == "spoof").all()
    segments, hop = result["segments"]["two_minutes"], result["segment_hop_s"]
    assert len(segments) * hop == pytest.approx(LONG_S, abs=2 * hop), "segment scores over the whole file"
    regions = pd.read_csv(tmp_path / "regions.csv")
    long = regions[regions.file == "two_minutes"]
    assert len(long) >= 1 and (long.start >= 0).all() and (long.end <= LONG_S + 1e-6).all()
    assert (long.end > long.start).all() and (long.start.to_numpy()[1:] >= long.end.to_numpy()[:-1]).all()
    assert set(regions.file) == {"two_minutes", "stereo"}, "every file labelled spoof has a region"
    below = segments < result["segment_threshold"]
    covered = sum(long.end - long.start)
    assert covered == pytest.approx(below.sum() * hop, abs=hop) or not below.any()
    rttm = (tmp_path / "regions.rttm").read_text().splitlines()
    assert len(rttm) == len(regions)
    first = rttm[0].split()
    assert first[0] == "SPEAKER" and first[2] == "1" and first[7] == "spoof" and first[5:7] == ["<NA>", "<NA>"]
    assert float(first[3]) == pytest.approx(regions.start.iloc[0], abs=1e-3)
    assert float(first[4]) == pytest.approx(regions.end.iloc[0] - regions.start.iloc[0], abs=1e-3)


# ---- an ensemble ------------------------------------------------------------------------------------

def _default_config() -> str:
    # configs/ is found relative to the repository; a test may run elsewhere, so pass the file path
    return str(Path(__file__).resolve().parents[1] / "configs" / "ensemble" / "default.yaml")


def _ensemble_cfg(tiny, root, subs, *extra):
    return ensemble_config(_default_config(), str(tiny), None,
                           [f"output_root={root}", f"submission.dir={subs}", "progress=false", "vote.trials=20",
                            "report.figures=false", *extra])


def test_a_saved_vote_scores_new_audio_as_its_submission(tiny, experiment, audio, tmp_path):
    twin = experiment.parent / "selcnn_mulbs_twin"
    if not twin.exists():
        shutil.copytree(experiment, twin)
    result = run("vote", _ensemble_cfg(tiny, experiment.parent.parent, tmp_path / "subs"))
    model = result["files"]["model"]
    assert model.name == f"vote_{tiny.name}_model.json"
    predicted = predict(audio["folder"], ensemble=str(model), out=tmp_path / "pred", overlap=0.0, progress=False,
                        threshold="competition")
    scores = predicted["scores"].set_index("utt_id")
    submitted = pd.read_csv(result["files"]["eer"]).set_index("utt_id")["score"]
    labels = pd.read_csv(result["files"]["f1"]).set_index("utt_id")["label"]
    ids = audio["test_ids"]
    np.testing.assert_allclose(scores.loc[ids, "score"], submitted.loc[ids], rtol=0, atol=1e-4)
    assert list(scores.loc[ids, "label"] == "spoof") == list(labels.loc[ids] == 1), "the submission's labels"
    cal = calibration.load(result["files"]["calibration"])
    rare = predict(audio["folder"], ensemble=str(model), out=tmp_path / "pred_rare", overlap=0.0, progress=False,
                   p_spoof=0.001)["scores"].set_index("utt_id")
    assert list(rare.loc[ids, "label"] == "spoof") == list(cal.apply(submitted.loc[ids]) < M.bayes_threshold(0.001)), \
        "by default: the Bayes threshold of the stated prior on the LLR"
    np.testing.assert_allclose(scores.loc[ids, "llr"], cal.apply(submitted.loc[ids]), atol=1e-3)
    assert list(predicted["failed"].utt_id) == ["corrupt"] and scores.loc["long/two_minutes", "windows"] > 10
    assert saved.model_path(f"vote_{tiny.name}", tmp_path / "subs") == model
    assert saved.model_path(str(tmp_path / "subs" / f"vote_{tiny.name}")) == model
    # by stem from the submissions folder, and refused once a fold it was fitted on has changed
    table = experiment / "fold0" / "test.parquet"
    backup = table.read_bytes()
    try:
        table.write_bytes(backup + b"\0")
        with pytest.raises(ManifestError, match="changed since"):
            predict(audio["folder"], ensemble=f"vote_{tiny.name}", submissions=tmp_path / "subs", progress=False)
    finally:
        table.write_bytes(backup)


@pytest.fixture
def synthetic(tmp_path, monkeypatch):
    from test_ensemble import make_project

    monkeypatch.chdir(tmp_path)
    make_project(tmp_path)
    return tmp_path


@pytest.mark.parametrize("system, method", [("soft", "rank"), ("hard", "zscore"), ("strictness", "none"),
                                            ("soft", "logistic"), ("fusion", "logistic"), ("stack", "logistic")])
def test_every_saved_system_gives_back_its_test_scores(synthetic, system, method):
    """Saved and loaded, each system re-applied to the test tables gives its own test scores exactly
    (rebuilt sklearn objects, LightGBM's trees from their text), and the fused segments of its vote."""
    cfg = ensemble_config(_default_config(), str(synthetic / "data" / "synth"), None,
                          [f"output_root={synthetic / 'folds'}", "vote.trials=30", f"normalise.method={method}",
                           "stack.lightgbm.n_estimators=40", "stack.early_stopping_rounds=10",
                           "stack.lightgbm.min_child_samples=5"])
    ens = load_ensemble(cfg.dataset, cfg.output_root)
    systems = {"soft": SoftVote(cfg), "hard": HardVote(cfg, False), "strictness": HardVote(cfg, True),
               "fusion": LogisticFusion(cfg), "stack": LightGBMStack(cfg)}
    outcome = cross_fit(ens, systems[system])
    soft = cross_fit(ens, SoftVote(cfg)).fitted if system != "soft" else outcome.fitted
    path = saved.save(synthetic / "subs" / f"x{saved.MODEL_SUFFIX}", "vote", ens, cfg.output_root, outcome, soft,
                      {"threshold": 0.1, "merge_gap_s": 0.0, "min_region_s": 0.0}, synthetic / "subs" / "x_cal.json")
    loaded = saved.load(path)
    loaded.check_folds()
    np.testing.assert_array_equal(loaded.score(ens), outcome.test)
    assert loaded.threshold == outcome.threshold and loaded.experiments == ens.names
    fused, hop = loaded.segments(ens)
    want, want_hop = fuse_segments(ens, "test", None, soft.normalisers, soft.weights, soft.names)
    assert hop == want_hop and all(np.array_equal(a, b) for a, b in zip(fused, want))


def test_one_line_errors(tmp_path, capsys):
    (tmp_path / "x.wav").write_bytes(b"")
    assert cli(["predict", "--ensemble", "nothing_here", "--submissions", str(tmp_path), "--audio", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("antispoof predict: error: ") and "nothing_here_model.json" in err and "\n" not in err
    assert cli(["predict", "--experiment", "no_such", "--audio", str(tmp_path)]) == 2
    assert "--data" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert cli(["predict", "--experiment", "no_such", "--audio", str(tmp_path / "empty")]) == 2
    assert "no audio files" in capsys.readouterr().err, "the audio is listed before any model is loaded"
