"""`antispoof predict`: score new audio with an experiment's fold models or with a saved ensemble.

    antispoof predict --experiment whisper_base_mhfa --data mini --output-root folds/demo --audio clips/
    antispoof predict --ensemble demo_vote --audio clips/ more.txt one.wav

list the files (FILE | DIR | LIST) -> the audio check (data.clip_check: a file that fails is one
line on stderr and a row of failed.csv; the others are still scored) -> windows, every fold model
(antispoof.inference.engine) -> per experiment, each window's scores averaged over its fold models with the
test tables' own rule (ensemble.tables.average_test) -> the experiment's scores as they are, or the
saved ensemble's system over them (ensemble.saved: the weights, normalisers, trees and thresholds
that made the submission) -> per file: the utterance score, its LLR (the stored calibration), the
hard label at the saved threshold, and the spoofed regions of a file labelled spoof.

A file no longer than the window gets its test-table score (to float rounding; a head on a frozen
encoder to the fp16 rounding of states computed in other batches, about 1e-5). A longer one gets the LOWEST
of its window scores: a spoofed stretch spoils the recording, as a spoofed segment spoils a clip
(the min-over-segments rule of SELCNN-MTL); its segment scores are stitched over the whole file
(averaged where windows overlap) and its regions come from them. The LLR of a long file is the
calibration applied to that minimum, which the calibration (fitted on single clips) never saw, so
read it as the evidence of its least bona fide window.

Thresholds: by default a file is spoof when its LLR is below the Bayes threshold of a stated spoof
prior (`--p-spoof`, default 0.05 with the ASVspoof 5 DCF's costs Cmiss 1, Cfa 10: -log(0.95 / 0.5)
= -0.64), for an experiment and an ensemble alike, so the label means the same whatever the
source. `--threshold competition` labels as a submission does instead: an ensemble at the OOF
threshold it was fitted with (F1-optimal on OOF, tuned to the benchmark's class balance, not to new
audio), an experiment at its calibration's OOF F1 threshold; `--threshold X` sets an LLR threshold.
Each fold model's scores are put on its experiment's common scale (inference.fold_scale, as the
calibration and the ensemble were fitted) before they are averaged. Regions: runs of segment
scores below the segment threshold (an ensemble's is saved with it; an experiment's is the EER point
of its OOF segment scores against the training set's 10 ms labels, recomputed here from its fold
outputs), only in files labelled spoof (at least the lowest segment), as in the submissions.
Outputs, each written atomically, in predictions/<name>/ by default: scores.csv, regions.csv
(file,start,end in seconds), regions.rttm (`SPEAKER <file> 1 <start> <duration> <NA> <NA> spoof
<NA> <NA>`) and failed.csv (the files that could not be scored and why). Files are scored in chunks
of CHUNK_FILES whose rows go to disk as they finish (commands.predict_output): memory holds one
chunk, and a killed run resumes after its last finished chunk. One run writes a folder at a time
(antispoof.locks).
"""
from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from antispoof.config import data_dir as resolve_data_dir
from antispoof.data.audio import SR
from antispoof.data.clip_check import check_clips, default_limits
from antispoof.data.manifest import load_segments, read_manifest
from antispoof.ensemble import saved as saved_ensembles
from antispoof.ensemble.segments import clip_regions
from antispoof.ensemble.tables import Ensemble, ModelTables, average_test
from antispoof.ensemble.thresholds import fit_threshold
from antispoof.inference.engine import FoldModels, Scorer, WindowPlan, grid_seconds, list_audio, score_files, stitch
from antispoof.inference.fold_scale import FoldScale, fold_scales
from antispoof.metrics import calibration
from antispoof.metrics.detection import P_SPOOF, bayes_threshold
from antispoof.metrics.segments import pool_segment_labels
from antispoof.runs import calibration_path, dataset_dir, read_predictions
from antispoof.schema import fail
from antispoof.train.calibration import calibrate_experiment, is_current
from antispoof.commands.predict_output import PARTIAL, SCORE_COLUMNS, ChunkStore, finish, shard_folder
from antispoof.locks import output_lock

COMPETITION = "competition"  # --threshold competition: the submission's own rule
MAX_SECONDS = 4 * 3600.0  # the audio check's limit here: longer files are windowed, not refused
CHUNK_FILES = 256  # files scored, and their rows written, at a time (memory holds one chunk)


# ---- fold averages and files --------------------------------------------------------------------

def window_tables(by_fold: dict[int, pd.DataFrame], window_ids, scales: dict[int, FoldScale]
                  ) -> tuple[pd.DataFrame, dict[int, pd.DataFrame]]:
    """Every fold model's window table in `window_ids` order on the common scale, and their average
    (the test tables' rule)."""
    aligned = {k: scales[k].apply(t.drop(columns="label", errors="ignore").set_index("utt_id").loc[list(window_ids)])
               for k, t in by_fold.items()}
    return average_test(list(aligned.values())), aligned


def per_file(windows: pd.DataFrame, scores: np.ndarray, segments: list[np.ndarray], hop: float):
    """utt_id -> (lowest window score, segment scores stitched on the file's grid)."""
    out = {}
    offsets = (windows["start"].to_numpy() / (hop * SR)).round().astype(int)
    for utt_id, rows in windows.groupby("utt_id", sort=False).indices.items():
        out[utt_id] = (float(np.min(scores[rows])), stitch([(offsets[i], segments[i]) for i in rows]))
    return out


def oof_segment_threshold(exp: FoldModels, rule: str = "eer") -> float:
    """An experiment's segment threshold: the `rule` point of its pooled OOF segment scores
    against the training set's 10 ms labels at its hop (what the ensemble fits for its fused scores)."""
    data = Path(exp.cfg.data.dir)
    train = read_manifest(data / "train.csv", "train", check_files=False)
    labels = load_segments(data / "train_segments.npz", train)
    scores, truth = [], []
    for k in exp.folds:
        oof = read_predictions(exp.exp_dir / f"fold{k}", "oof", ["utt_id", "seg_scores"])
        for utt, s in zip(oof["utt_id"], oof["seg_scores"]):
            lab = pool_segment_labels(labels[utt], exp.hop)
            n = min(lab.size, len(s))
            scores.append(np.asarray(s[:n], float))
            truth.append(lab[:n])
    return fit_threshold(np.concatenate(scores), np.concatenate(truth), rule)


def experiment_calibration(exp_dir: Path, exp: FoldModels) -> calibration.Calibration:
    """The experiment's calibration.json; where training could not write it, the same fit from the
    OOF of its finished folds, made now and kept in memory (`antispoof calibrate` saves it)."""
    path = calibration_path(exp_dir)
    if path.is_file():
        return calibration.load(path)
    _warn(f"{path}: not found; fitted now on the OOF scores of folds {exp.folds} (`antispoof calibrate "
          f"--experiments {exp_dir.name}` saves it)")
    return calibrate_experiment(exp_dir, exp.cfg.data.dir, write=False)


# ---- the two sources of scores --------------------------------------------------------------------

@dataclass
class Source:
    """What scores the windows and decides: an experiment's fold models or a saved ensemble."""

    name: str
    experiments: list[FoldModels]
    calibration: calibration.Calibration
    segment_threshold: float
    scales: dict[str, dict[int, FoldScale]]  # experiment -> fold -> its map to the common scale
    merge_gap_s: float = 0.0
    min_region_s: float = 0.0
    saved: saved_ensembles.SavedEnsemble | None = None

    def window_scores(self, scored) -> tuple[np.ndarray, list[np.ndarray], float]:
        """Each window's utterance score, its segment scores and their hop."""
        if self.saved is None:
            exp = self.experiments[0]
            averaged, _ = window_tables(scored.tables[exp.name], scored.windows["window_id"], self.scales[exp.name])
            return averaged["score"].to_numpy(float), list(averaged["seg_scores"]), exp.hop
        ens = window_ensemble(self.saved, self.experiments, scored, self.scales)
        fused, hop = self.saved.segments(ens)
        return self.saved.score(ens), fused, hop

    def is_spoof(self, score: float, llr: float, threshold: float | str) -> bool:
        """An LLR below `threshold`; with COMPETITION the submission's rule (an ensemble's saved
        OOF threshold on its score, an experiment's OOF F1 threshold on the LLR)."""
        if threshold != COMPETITION:
            return llr < float(threshold)
        if self.saved is not None:
            return score < self.saved.threshold
        return llr < float(self.calibration.info["llr_thresholds"]["f1"])


def window_ensemble(saved, experiments: list[FoldModels], scored, scales) -> Ensemble:
    """The windows as an Ensemble's test part: every model's fold-averaged table and each fold
    model's own (the stacker scores those), in the experiments' saved order."""
    models = {}
    for exp in experiments:
        averaged, aligned = window_tables(scored.tables[exp.name], scored.windows["window_id"], scales[exp.name])
        models[exp.name] = ModelTables(exp.name, exp.folds, exp.hop, pd.DataFrame(), averaged.reset_index(),
                                       {k: t.reset_index() for k, t in aligned.items()})
    test = scored.windows.rename(columns={"utt_id": "file", "window_id": "utt_id"})[["utt_id", "duration"]]
    st = saved.state
    return Ensemble(st["dataset"], Path(st["data_dir"]), saved.folds, pd.DataFrame(), test.reset_index(drop=True),
                    models)


def ensemble_source(name: str, submissions, device: torch.device) -> Source:
    saved = saved_ensembles.load(saved_ensembles.model_path(name, submissions))
    saved.check_folds()
    experiments = [FoldModels.load(saved.experiment_dir(n), saved.folds, device) for n in saved.experiments]
    for exp in experiments:
        if abs(exp.hop - saved.state["hops"][exp.name]) > 1e-9:
            fail(exp.exp_dir, f"segment hop {exp.hop} s, the ensemble was fitted on {saved.state['hops'][exp.name]} s")
    seg = saved.state["segments"]
    scales = {e.name: fold_scales({k: e.exp_dir / f"fold{k}" for k in e.folds}, saved.align) for e in experiments}
    return Source(saved.path.name.removesuffix(saved_ensembles.MODEL_SUFFIX), experiments,
                  calibration.load(saved.calibration_path), float(seg["threshold"]), scales,
                  float(seg["merge_gap_s"]), float(seg["min_region_s"]), saved)


def experiment_source(name: str, data: str | None, output_root, device: torch.device) -> Source:
    exp_dir = _experiment_dir(name, data, output_root)
    exp = FoldModels.load(exp_dir, None, device)
    cal = experiment_calibration(exp_dir, exp)
    if not is_current(cal, exp_dir):
        _warn(f"{calibration_path(exp_dir)}: fitted on folds {cal.info.get('folds')}, not every finished "
              f"fold {exp.folds}; `antispoof calibrate` refits it")
    scales = fold_scales({k: exp_dir / f"fold{k}" for k in exp.folds}, cal.info.get("align_folds", "none"))
    return Source(exp_dir.name, [exp], cal, oof_segment_threshold(exp), {exp.name: scales})


def _warn(message: str) -> None:
    print(f"antispoof predict: warning: {message}", file=sys.stderr)


def _device(name: str | None) -> torch.device:
    return torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))


def _experiment_dir(name: str, data: str | None, output_root) -> Path:
    path = Path(name)
    if path.is_dir() and any(path.glob("fold*")):
        return path
    if not data:
        fail(path, "not an experiment folder; give --data (mini, full or a data set folder) to find it under "
                   f"{output_root}/<dataset>/")
    return dataset_dir(output_root, resolve_data_dir(data).name) / name


def predict(audio, experiment: str | None = None, ensemble: str | None = None, data: str | None = None,
            output_root="folds", submissions="submissions", out=None, window_s: float | None = None,
            overlap: float = 0.5, threshold: float | str | None = None, p_spoof: float = P_SPOOF,
            device: str | None = None,
            max_seconds: float = MAX_SECONDS, progress: bool = True, chunk_files: int = CHUNK_FILES,
            keep_segments: bool = False, shard: tuple[int, int] | None = None, merge: int | None = None) -> dict:
    """The whole command (see the module docstring); returns the tables and the files written
    (and, with `keep_segments`, every file's stitched segment scores, which streaming leaves out).
    `shard=(i, n)` scores every n-th chunk from the i-th (n processes or machines sharing `out`);
    `merge=n` writes the final files from n finished shards. `threshold`: an LLR, COMPETITION, or
    None for the Bayes threshold of `p_spoof` (with the ASVspoof 5 DCF's costs)."""
    if (experiment is None) == (ensemble is None):
        raise ValueError("give one of --experiment NAME or --ensemble NAME")
    if threshold is None:
        if not 0 < p_spoof < 1:
            raise ValueError(f"--p-spoof must be a probability in (0, 1), not {p_spoof}")
        threshold = bayes_threshold(p_spoof)
    inputs = list_audio([audio] if isinstance(audio, (str, Path)) else audio)
    dev = _device(device)
    source = (ensemble_source(ensemble, submissions, dev) if ensemble is not None
              else experiment_source(experiment, data, output_root, dev))
    plan = WindowPlan(float(window_s or min(e.default_window_s() for e in source.experiments)), overlap,
                      grid_seconds([e.hop for e in source.experiments]))
    out = Path(out) if out else Path("predictions") / source.name
    run = {"source": source.name, "folds": {e.name: e.folds for e in source.experiments}, "plan": plan,
           "threshold": threshold, "max_seconds": float(max_seconds), "chunk_files": int(chunk_files),
           "inputs_sha256": hashlib.sha256("\n".join(inputs["path"]).encode()).hexdigest()}
    chunks = [inputs.iloc[start: start + chunk_files] for start in range(0, len(inputs), chunk_files)]
    result = {"plan": plan, "segment_threshold": source.segment_threshold}
    if merge is not None:
        with output_lock(out, "the predictions"):
            stores = [ChunkStore(shard_folder(out, i, merge), run, existing_only=True) for i in range(merge)]
            for i, store in enumerate(stores):
                left = [k for k in range(i, len(chunks), merge) if k not in store.done_chunks()]
                if left:
                    fail(store.dir, f"shard {i}/{merge} has {len(left)} chunk(s) to go: run it with --shard {i}/{merge}")
            tables, written = finish(stores, inputs, out)
        return {**result, **tables, "files": written, "segments": {}, "segment_hop_s": None}
    folder = shard_folder(out, *shard) if shard else out / PARTIAL
    mine = list(range(shard[0], len(chunks), shard[1])) if shard else list(range(len(chunks)))
    with output_lock(out if shard is None else folder, "the predictions" if shard is None else
                     f"shard {shard[0]}/{shard[1]} of the predictions"):
        store = ChunkStore(folder, run)
        done = store.done_chunks()
        todo = [k for k in mine if k not in done]
        if len(todo) < len(mine):
            print(f"resuming: {sum(len(chunks[k]) for k in mine if k in done)} of "
                  f"{sum(len(chunks[k]) for k in mine)} files already scored in {folder}")
        kept, hop = {}, None
        n_todo = sum(len(chunks[k]) for k in todo)
        quiet = not progress or n_todo <= chunk_files  # one chunk: its own bars say enough
        bar = tqdm(total=n_todo, unit="file", desc="predicting", disable=quiet)
        for k in todo:
            scores, regions, failed, segments, hop = score_chunk(chunks[k], source, dev, plan, threshold, max_seconds,
                                                                 progress and quiet)
            store.write_chunk(k, scores, regions, failed)
            if keep_segments:
                kept.update(segments)
            bar.update(len(chunks[k]))
        bar.close()
        if shard:
            print(f"shard {shard[0]}/{shard[1]}: {len(mine)} chunk(s) scored in {folder}; once every shard has "
                  f"finished, the same command with --merge {shard[1]} writes the files")
            return {**result, "files": {}, "segments": kept, "segment_hop_s": hop}
        tables, written = finish([store], inputs, out)
    return {**result, **tables, "files": written, "segments": kept, "segment_hop_s": hop}


def score_chunk(inputs: pd.DataFrame, source: Source, device: torch.device, plan: WindowPlan,
                threshold: float | str, max_seconds: float, progress: bool):
    """One chunk of files through the audio check, the models and the decision: its score rows,
    regions, failed files, segment scores and their hop."""
    checked = check_clips(inputs["path"], replace(default_limits(), max_seconds=float(max_seconds)),
                          progress="checking audio" if progress else None)
    usable = (checked["problem"] == "").to_numpy()
    scored = score_files(inputs[usable], Scorer(source.experiments, device), plan,
                         checked["duration"][usable], progress)
    problems = dict(zip(inputs["path"], checked["problem"]))
    problems.update({r.path: r.problem for r in scored.files.itertuples() if r.problem})
    for path in inputs["path"]:
        if problems.get(path):
            print(f"antispoof predict: skipped, {problems[path]}", file=sys.stderr)
    results, hop = {}, None
    if len(scored.windows):
        scores, segments, hop = source.window_scores(scored)
        results = per_file(scored.windows, np.asarray(scores, float), segments, hop)
    info = scored.files.set_index("utt_id") if len(scored.files) else pd.DataFrame()
    rows, regions = [], []
    for r in inputs.itertuples():
        if r.utt_id not in results:
            rows.append({"utt_id": r.utt_id, "path": r.path, "duration": np.nan, "windows": 0, "score": np.nan,
                         "llr": np.nan, "label": "", "status": "failed"})
            continue
        score, seg_scores = results[r.utt_id]
        llr = float(source.calibration.apply(score))
        spoof = source.is_spoof(score, llr, threshold)
        duration = float(info.loc[r.utt_id, "duration"])
        rows.append({"utt_id": r.utt_id, "path": r.path, "duration": duration,
                     "windows": int(info.loc[r.utt_id, "windows"]), "score": score, "llr": llr,
                     "label": "spoof" if spoof else "bonafide", "status": "ok"})
        if spoof:
            regions += [(r.utt_id, a, b) for a, b in clip_regions(seg_scores, hop, source.segment_threshold, duration,
                                                                  source.merge_gap_s, source.min_region_s)]
    failed = pd.DataFrame([{"utt_id": u, "path": p, "problem": problems[p]} for u, p in zip(inputs.utt_id, inputs.path)
                           if problems.get(p)], columns=["utt_id", "path", "problem"])
    return (pd.DataFrame(rows, columns=SCORE_COLUMNS), pd.DataFrame(regions, columns=["file", "start", "end"]), failed,
            {u: s for u, (_, s) in results.items()}, hop)
