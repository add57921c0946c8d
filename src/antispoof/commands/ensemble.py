"""The ensemble step: what `python ensemble/vote.py` and `python ensemble/stack.py` run, end to end.

load every experiment's fold outputs -> cross-fit each system (every model alone, the
votes, or the fusions and the stacker) -> write the submissions (antispoof.submit.writer, the
competition format and test ids read once) -> score them with the local leaderboard scorer
(antispoof.submit.scorer) -> calibrate every system's score to an LLR on its cross-fitted OOF scores
(the submitted one's written as <name>_calibration.json) -> print the results table -> write the report.

The top layer below the CLI: it joins the ensemble (scores and decisions) to the submission
writers and the scorer, so neither side imports the other.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from antispoof import signals
from antispoof.config import load_config
from antispoof.console import close_progress_bars, quiet_third_party
from antispoof.ensemble import report as R
from antispoof.ensemble import saved
from antispoof.ensemble.crossfit import Outcome, cross_fit
from antispoof.ensemble.pooling import pooling_systems
from antispoof.ensemble.segments import fit_segment_threshold, fuse_segments, regions_table
from antispoof.ensemble.stack import FittedFusion, LightGBMStack, LogisticFusion
from antispoof.ensemble.tables import Ensemble, load_ensemble
from antispoof.ensemble.vote import SingleModel, SoftVote, vote_systems
from antispoof.metrics.calibration import Calibration, calibrate, summary_row
from antispoof.metrics.calibration import save as save_calibration
from antispoof.metrics.detection import binary_scores, compute_eer
from antispoof.metrics.localisation import range_eer
from antispoof.schema import ManifestError, fail
from antispoof.submit.scorer import Truth, score_predictions, score_submission
from antispoof.submit.writer import (Competition, write_asvspoof5_scores, write_label_submission, write_score_submission,
                                  write_segment_submission)
from antispoof.utils import write_json_atomic

KINDS = ("vote", "stack")


def ensemble_config(config: str = "ensemble/default", dataset: str | None = None,
                    experiments: list[str] | None = None, overrides: list[str] | None = None) -> DictConfig:
    """The ensemble config with the command line's --dataset / --experiments and key=value overrides."""
    cfg = load_config(config, overrides)
    if dataset:
        cfg.dataset = dataset
    if experiments:
        cfg.experiments = list(experiments)
    return cfg


def systems_for(kind: str, cfg: DictConfig, ens: Ensemble) -> list:
    """Every model alone, then the ensemble systems; the submitted one is the first of those."""
    singles = [SingleModel(name, cfg) for name in ens.names]
    pooled = pooling_systems(cfg, ens)  # rows of their own after the ensembles, never submitted
    if kind == "vote":
        return singles + vote_systems(cfg) + pooled
    if kind == "stack":
        return singles + [LightGBMStack(cfg), LogisticFusion(cfg), SoftVote(cfg)] + pooled
    raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")


def run_systems(ens: Ensemble, systems: list, progress: bool = True) -> dict[str, Outcome]:
    bar = tqdm(systems, desc="cross-fitting", unit="system", disable=not progress)
    outcomes = {}
    for system in bar:
        bar.set_postfix_str(system.name)
        outcomes[system.name] = cross_fit(ens, system)
    return outcomes


# ---- submissions --------------------------------------------------------------------------------

def segment_regions(cfg: DictConfig, ens: Ensemble, soft, chosen: Outcome) -> dict:
    """Fused test segment scores, the OOF segment threshold and the regions of the clips called spoof."""
    fused_oof, hop = fuse_segments(ens, "oof", None, soft.normalisers, soft.weights, soft.names)
    threshold = fit_segment_threshold(ens, fused_oof, hop, cfg.segments.threshold)
    fused_test, _ = fuse_segments(ens, "test", None, soft.normalisers, soft.weights, soft.names)
    regions = regions_table(ens.test["utt_id"], fused_test, hop, threshold, ens.test["duration"],
                            chosen.test_spoof, cfg.segments.merge_gap_s, cfg.segments.min_region_s)
    return {"fused": fused_test, "hop": hop, "threshold": threshold, "regions": regions}


def write_submissions(cfg: DictConfig, ens: Ensemble, chosen: Outcome, segments: dict, stem: str,
                      truth: Truth) -> dict[str, Path]:
    out, ids = Path(cfg.submission.dir), ens.test["utt_id"]
    competition = Competition(truth.competition, ids.to_numpy())  # test.csv's ids, as the ensemble read them
    files = {"f1": write_label_submission(out / f"{stem}_f1.csv", ids, chosen.test_spoof, competition),
             "eer": write_score_submission(out / f"{stem}_eer.csv", ids, chosen.test, competition)}
    if cfg.submission.asvspoof5:
        files["asvspoof5"] = write_asvspoof5_scores(out / f"{stem}_asvspoof5.tsv", ids, chosen.test, competition)
    files["segments"] = write_segment_submission(out / f"{stem}_segments.csv", segments["regions"], competition)
    return files


# ---- results --------------------------------------------------------------------------------------

def has_solution(ens: Ensemble) -> bool:
    return (ens.data_dir / "solution.csv").is_file()


def oof_metrics(ens: Ensemble, o: Outcome) -> dict:
    bona = ens.bonafide
    return {"eer": compute_eer(o.oof[bona], o.oof[~bona])[0], "f1": binary_scores(~bona, o.oof_spoof)["f1"]}


def test_metrics(ens: Ensemble, outcomes: dict[str, Outcome], chosen: str, files: dict[str, Path],
                 truth: Truth | None) -> dict[str, dict]:
    """Hidden-test numbers from the local scorer: the files for the submitted system, else in memory."""
    if truth is None:
        return {}
    ids = ens.test["utt_id"]
    scored = {name: score_predictions(ids, ens.data_dir, scores=o.test, is_spoof=o.test_spoof, source=name,
                                      truth=truth)
              for name, o in outcomes.items()}
    from_files = {**score_submission(files["eer"], ens.data_dir, truth),
                  **score_submission(files["f1"], ens.data_dir, truth)}
    scored[chosen] = from_files
    return scored


def calibrations(cfg: DictConfig, ens: Ensemble, outcomes: dict[str, Outcome],
                 truth: Truth | None) -> dict[str, Calibration]:
    """Each system's linear score -> LLR map (metrics.calibration), fitted on its cross-fitted OOF
    scores (the "after" OOF numbers cross-fitted again by fold) and applied to its test scores;
    its decision threshold moved to the LLR scale, so the hard labels stay the same."""
    test_bona = R.solution_parts(truth.hidden()[0], ens.test["utt_id"]) if truth else None
    out = {}
    for name, o in outcomes.items():
        info = {"system": name, "kind": "model" if name in ens.names else "ensemble", "dataset": ens.dataset,
                "experiments": ens.names, "folds": ens.folds, "fitted_on": "the system's cross-fitted OOF scores",
                "applies_to": "the system's test score (fitted on every OOF clip)"}
        cal, _, _ = calibrate(o.oof, ens.oof["label"].to_numpy(), ens.oof["fold"].to_numpy(), o.test, test_bona,
                              info=info)
        majority = getattr(o.fitted, "model_thresholds", None) is not None  # hard votes decide by majority
        cal.info.update({"threshold": cal.threshold(o.threshold), "score_threshold": o.threshold,
                         "threshold_rule": "majority" if majority else cfg.threshold.rule})
        out[name] = cal
    return out


def calibration_table(cals: dict[str, Calibration], chosen: str) -> pd.DataFrame:
    return pd.DataFrame([{"system": f"{n} *" if n == chosen else n, **summary_row(c)} for n, c in cals.items()])


def segment_range_eer(ens: Ensemble, segments: dict, truth: Truth) -> float:
    """Range-based EER (in time) of the fused test segment scores against the hidden 10 ms labels."""
    hidden = truth.hidden()[1]
    return range_eer(dict(zip(ens.test["utt_id"], segments["fused"])), hidden, segments["hop"])[0]


def _pct(x) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.2f}"


def _f1(x) -> str:
    return "-" if x is None else f"{x:.3f}"


def results_table(ens: Ensemble, outcomes: dict[str, Outcome], scored: dict[str, dict], chosen: str) -> pd.DataFrame:
    rows = []
    for name, o in outcomes.items():
        oof, test = oof_metrics(ens, o), scored.get(name, {})
        by_condition = {f"test {c} %": _pct(v) for c, v in test.get("eer_by_condition", {}).items() if c != "pooled"}
        rows.append({"system": f"{name} *" if name == chosen else name,
                     "OOF EER %": _pct(oof["eer"]), "OOF F1": _f1(oof["f1"]),
                     "test EER %": _pct(test.get("eer")), **by_condition, "test F1": _f1(test.get("f1")),
                     "test best F1": _f1(test.get("best_f1")), "test minDCF": _f1(test.get("min_dcf")),
                     "threshold": f"{o.threshold:.4g}"})
    return pd.DataFrame(rows).fillna("-")


def fitted_summary(o: Outcome, ens: Ensemble) -> dict:
    """What the final system learned, for the summary JSON (weights, trees, thresholds)."""
    out = {"threshold": o.threshold, "eer_threshold": o.eer_threshold}
    f = o.fitted
    if getattr(f, "model_thresholds", None) is not None:
        out["model_thresholds"] = dict(zip(f.names, map(float, f.model_thresholds)))
    elif hasattr(f, "weights"):
        out["weights"] = dict(zip(f.names, map(float, f.weights)))
    if isinstance(f, FittedFusion):  # weights on the standardised utterance scores, then the bias
        regression = f.model[-1]
        out["coefficients"] = dict(zip(ens.names, map(float, regression.coef_[0])))
        out["intercept"] = float(regression.intercept_[0])
    if hasattr(f, "rule"):  # a pooled model: the rule its OOF chose
        out["pooling"] = f.rule
    if hasattr(f, "n_trees"):
        out["n_trees"] = f.n_trees
        importance = pd.Series(f.model.booster_.feature_importance("gain"), index=f.model.booster_.feature_name())
        out["top_features"] = [[k, float(v)] for k, v in importance.nlargest(10).items()]  # by gain
    return out


# ---- report -----------------------------------------------------------------------------------

def _figures(cfg, ens, outcomes, chosen, segments, stem, truth) -> dict[str, Path]:
    out = Path(cfg.submission.dir)
    oof_bona = ens.bonafide
    systems = {name: {"oof": (o.oof, oof_bona)} for name, o in outcomes.items()}
    hist = {"OOF": (outcomes[chosen].oof, oof_bona)}
    figures = {}
    if truth:
        solution, hidden_segments = truth.hidden()
        test_bona = R.solution_parts(solution, ens.test["utt_id"])
        for name, o in outcomes.items():
            systems[name]["test"] = (o.test, test_bona)
        hist["hidden test"] = (outcomes[chosen].test, test_bona)
    figures["DET curves"] = R.plot_det(systems, out / f"{stem}_det.png")
    figures["Score histograms"] = R.plot_histograms(chosen, hist, outcomes[chosen].threshold,
                                                    cfg.report.histogram_bins, out / f"{stem}_hist.png")
    if truth and cfg.report.timelines:
        position = {u: i for i, u in enumerate(ens.test["utt_id"])}
        by_clip = dict(tuple(segments["regions"].groupby("utt_id")))
        context = solution.set_index("utt_id")
        clips = [{"utt_id": u, "labels": hidden_segments[u], "scores": segments["fused"][position[u]],
                  "hop": segments["hop"], "kind": context.loc[u].get("kind", ""),
                  "regions": list(zip(by_clip[u]["start"], by_clip[u]["end"])) if u in by_clip else []}
                 for u in R.pick_timeline_clips(solution, cfg.report.timelines)]
        figures["Segment timelines (hidden test)"] = R.plot_timelines(clips, segments["threshold"],
                                                                      out / f"{stem}_timelines.png")
    return figures


def _sections(cfg, ens, table, scored, files, seg_scores, chosen, warnings_seen) -> list[tuple[str, str]]:
    setup = (f"Data set `{ens.dataset}`; experiments: {', '.join(ens.names)}; folds {ens.folds} "
             f"({len(ens.oof)} OOF clips, {len(ens.test)} test clips). Normalisation `{cfg.normalise.method}`, "
             f"threshold rule `{cfg.threshold.rule}` (prior {cfg.threshold.prior}). Submitted: `{chosen}` (*).\n\n"
             "OOF columns are cross-fitted: each OOF fold is scored by the system fitted on the other folds, "
             "its F1 at that system's own threshold. Test columns come from the local scorer; the submitted "
             "row from the written files. `test best F1` uses the test labels' own best threshold (a ceiling).")
    if warnings_seen:
        setup += "\n\nWarnings: " + "; ".join(warnings_seen)
    sections = [("Setup", setup), ("Results: OOF vs hidden test", table.to_markdown(index=False))]
    files_md = "\n".join(f"- `{p}`" for p in files.values())
    if seg_scores:
        files_md += ("\n\nSegments file: frame F1 {segment_f1:.3f} (precision {segment_precision:.3f}, recall "
                     "{segment_recall:.3f}); utterance F1 from regions {utterance_f1:.3f}.").format(**seg_scores)
        files_md += (" In time: region F1 {region_f1:.3f} (precision {region_precision:.3f}, recall "
                     "{region_recall:.3f}); events matched at IoU >= {event_iou:g}: F1 {event_f1:.3f}; range-based "
                     "EER of the fused segment scores {range_eer:.4f}.").format(**seg_scores)
    sections.append(("Submission files", files_md))
    for key, heading in (("eer_by_condition", "EER % per condition (hidden test; spoof conditions against the "
                                               "bona fide clips of seen languages)"),
                         ("f1_by_condition", "F1 x 100 per condition (hidden test, hard labels)"),
                         ("eer_by_attack", "EER % per attack (hidden test)"),
                         ("eer_by_language", "EER % per language (hidden test)")):
        groups = R.group_table(scored, key)
        if not groups.empty:
            sections.append((heading, groups.to_markdown(floatfmt=".1f")))
    return sections


def run(kind: str, cfg: DictConfig, warnings_seen: list[str] | None = None) -> dict:
    """The whole ensemble step; returns the table, the file paths and the scores."""
    ens = load_ensemble(cfg.dataset, cfg.output_root, cfg.experiments, cfg.get("folds"),
                        cfg.normalise.get("align_folds", "test"))
    if len(ens.folds) < 2:
        fail(Path(cfg.output_root) / ens.dataset, f"cross-fitting needs at least 2 folds finished by every "
             f"experiment, the {len(ens.names)} found share {ens.folds}; name others with --experiments")
    systems = systems_for(kind, cfg, ens)
    chosen = systems[len(ens.names)].name
    outcomes = run_systems(ens, systems, cfg.progress)
    soft = outcomes["vote:soft"].fitted
    segments = segment_regions(cfg, ens, soft, outcomes[chosen])
    stem = cfg.submission.name.format(kind=kind, dataset=ens.dataset)
    answers = Truth(ens.data_dir, ens.test_manifest)  # each data set file read once, when first needed
    files = write_submissions(cfg, ens, outcomes[chosen], segments, stem, answers)
    truth = answers if has_solution(ens) else None
    scored = test_metrics(ens, outcomes, chosen, files, truth)
    seg_scores = score_submission(files["segments"], ens.data_dir, truth) if truth else {}
    if seg_scores:
        seg_scores["range_eer"] = segment_range_eer(ens, segments, truth)
    cals = calibrations(cfg, ens, outcomes, truth)
    files["calibration"] = save_calibration(cals[chosen], Path(cfg.submission.dir) / f"{stem}_calibration.json")
    # the fitted system itself, so `antispoof predict --ensemble` re-applies what scored the test clips
    files["model"] = saved.save(Path(cfg.submission.dir) / f"{stem}{saved.MODEL_SUFFIX}", kind, ens, cfg.output_root,
                                outcomes[chosen], soft, {"threshold": segments["threshold"],
                                                         "merge_gap_s": cfg.segments.merge_gap_s,
                                                         "min_region_s": cfg.segments.min_region_s},
                                files["calibration"])
    table = results_table(ens, outcomes, scored, chosen)
    figures = _figures(cfg, ens, outcomes, chosen, segments, stem, truth) if cfg.report.figures else {}
    sections = _sections(cfg, ens, table, scored, files, seg_scores, chosen, warnings_seen or [])
    sections.insert(2, ("Calibration: LLR = slope x score + offset, fitted on OOF (before -> after; OOF "
                        "cross-fitted by fold, test from the fit on every OOF clip)",
                        calibration_table(cals, chosen).to_markdown(index=False)))
    files["report"] = R.write_report(Path(cfg.submission.dir) / f"{stem}_report.md",
                                     f"{kind.capitalize()} ensemble on {ens.dataset}", sections, figures)
    summary = {"kind": kind, "dataset": ens.dataset, "experiments": ens.names, "folds": ens.folds,
               "submitted": chosen, "config": OmegaConf.to_container(cfg, resolve=True),
               "segment_threshold": segments["threshold"], "segments": seg_scores,
               "systems": {name: {"oof": oof_metrics(ens, o), "fitted": fitted_summary(o, ens),
                                  "calibration": cals[name].to_dict(),
                                  "test": {k: v for k, v in scored.get(name, {}).items()
                                           if not isinstance(v, dict)}}
                           for name, o in outcomes.items()}}
    files["summary"] = Path(cfg.submission.dir) / f"{stem}_summary.json"
    write_json_atomic(files["summary"], json.loads(json.dumps(summary, default=_plain)))
    return {"table": table, "files": files, "scored": scored, "segments": seg_scores, "outcomes": outcomes,
            "ensemble": ens, "chosen": chosen, "calibration": calibration_table(cals, chosen)}


def _plain(x):
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return str(x)


# ---- command line -------------------------------------------------------------------------------

def parse_args(kind: str, argv=None):
    import argparse

    what = {"vote": "soft / hard / strictness voting", "stack": "LightGBM stacking (nested CV)"}[kind]
    parser = argparse.ArgumentParser(prog=f"ensemble/{kind}.py",
                                     description=f"{what} over every experiment's fold outputs; writes "
                                                 "submissions/<name>_{f1,eer,segments}.csv, an ASVspoof 5 TSV "
                                                 "and a report, and prints OOF and hidden-test scores.")
    parser.add_argument("--config", default="ensemble/default", help="configs/ensemble/<name>.yaml or a path")
    parser.add_argument("--dataset", help="mini, full or a data set folder (default: the config's)")
    parser.add_argument("--experiments", nargs="+", help="experiment names (default: every finished one)")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. normalise.method=rank vote.mode=hard")
    args = parser.parse_args(argv)
    if args.experiments:  # `--experiments a b key=value`: nargs="+" also swallows the overrides
        args.overrides = [e for e in args.experiments if "=" in e] + args.overrides
        args.experiments = [e for e in args.experiments if "=" not in e]
    return args


def main(kind: str, argv=None) -> int:
    """Entry point of ensemble/vote.py and ensemble/stack.py: one-line errors, warnings and a table."""
    import sys
    import warnings

    args = parse_args(kind, argv)
    quiet_third_party()
    seen: list[str] = []

    def show(message, category, *_args, **_kwargs):
        seen.append(str(message))
        print(f"warning: {message}", file=sys.stderr)

    warnings.showwarning = show
    try:
        with signals.sigterm_interrupts():
            cfg = ensemble_config(args.config, args.dataset, args.experiments, args.overrides)
            result = run(kind, cfg, seen)
    except KeyboardInterrupt:
        signum = signals.note_interrupt()
        close_progress_bars()
        print(signals.message(f"ensemble/{kind}.py"), file=sys.stderr)
        return 128 + signum
    except (ManifestError, FileNotFoundError, ValueError) as err:
        close_progress_bars()
        print(f"ensemble/{kind}.py: error: {err}", file=sys.stderr)
        return 2
    print(result["table"].to_markdown(index=False))
    print("\ncalibration (Cllr, actDCF before -> after):")
    print(result["calibration"].to_markdown(index=False))
    if result["segments"]:
        s = result["segments"]
        print(f"segments: frame F1 {s['segment_f1']:.3f}, utterance F1 from regions {s['utterance_f1']:.3f}, "
              f"region F1 (time) {s['region_f1']:.3f}, event F1 {s['event_f1']:.3f}, range EER {s['range_eer']:.4f}")
    for name, path in result["files"].items():
        print(f"{name}: {path}")
    return 0
