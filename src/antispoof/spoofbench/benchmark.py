"""SpoofBench: the default benchmark, built offline from real recordings and real synthesizers.

Three steps, each deterministic for a seed:

1. plan     - join recordings into bona fide utterances, pick them per split (test = unseen
              speakers), decide which spoofs each yields and draw every clip's channel
              (`spoofbench/plan.py`, `spoofbench/utterances.py`).
2. render   - one task per *family* (an utterance and every clip derived from it), in a
              process pool with a progress bar (`spoofbench/render.py`); each finished family is
              recorded on disk, so an interrupted build resumes where it stopped.
3. assemble - conditions, train.csv / test.csv / solution.csv / segment labels / data card,
              then the shortcut probe.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import shutil
import signal
import time
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from antispoof.data.audio import SR, AudioError, write_audio
from antispoof.data.layout import check_free, is_free, staging_dir, swap_in, write_dataset
from antispoof.data.sounds import noise_beds
from antispoof.locks import output_lock
from antispoof.spoofbench import sources as src
from antispoof.spoofbench.attacks import ATTACKS, SynthesisError, check_tools, set_render_cache
from antispoof.spoofbench.plan import ClipPlan, condition_of, configured_attacks, generation_of, make_plan
from antispoof.spoofbench.render import Renderer, segment_labels
from antispoof.spoofbench.utterances import join_utterances
from antispoof.utils import write_json_atomic

# Bump when planning or rendering changes what a configuration produces: finished work of older
# builds is then redone. 3 = SpoofBench v2 (utterances, word-level partial spoofs, channel profiles);
# 4 = v3 (neural attacks, weighted attack draws, a generation column).
BUILDER_VERSION = 4


def _row(plan: ClipPlan, duration: float, segments: np.ndarray) -> dict:
    first = plan.pieces[0].source
    languages = sorted({p.source.language for p in plan.pieces})
    channel = plan.channel
    attack = "+".join(plan.attacks) or "bonafide"
    return {
        "utt_id": plan.utt_id, "path": f"audio/{plan.utt_id}.flac", "duration": round(duration, 4),
        "label": plan.label, "split": plan.split, "kind": plan.kind,
        "attack": attack, "generation": generation_of(attack), "language": "+".join(languages),
        "speaker": plan.group, "group": plan.group, "source": first.corpus,
        "spoof_share": round(float(1 - segments.mean()), 4), "channel": f"{channel['profile']}/{channel['codec']}",
    }


_WORKER: Renderer | None = None


def _init_worker(cfg_yaml: str, audio_dir: str, beds: list[str], render_cache: str | None):
    """A render worker. It leaves Ctrl-C to the parent (it reaches the whole process group), which
    stops the pool; SIGTERM (the pool stopping, or a scheduler) ends it at once, as by default: no
    Python clean-up runs in a worker that may hold the pool's locks. A write it had in flight leaves
    a temporary file, which the next build removes (render_all)."""
    global _WORKER
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the command's handler, inherited through fork
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    set_render_cache(render_cache)
    _WORKER = Renderer(OmegaConf.create(cfg_yaml), Path(audio_dir), beds)


def _render_family(args: tuple[int, list[ClipPlan], str]) -> None:
    """Render one family and record its manifest rows, segment labels and left-out clips on disk."""
    index, plans, done_dir = args
    key = _family_key(plans)  # before rendering: a concatenation drops the pieces that do not fit
    rows, skipped, segments = [], [], {}
    for plan in plans:
        try:
            wave, mask = _WORKER.render(plan)
        except (AudioError, SynthesisError) as err:
            skipped.append(f"{plan.kind} {plan.utt_id}: {err}")
            continue
        write_audio(_WORKER.audio_dir / f"{plan.utt_id}.flac", wave)
        seg = segment_labels(mask)
        segments[plan.utt_id] = seg.tolist()
        rows.append(_row(plan, len(wave) / SR, seg))
    write_json_atomic(Path(done_dir) / f"{index:06d}.json", {"plan": key, "rows": rows,
                                                            "skipped": skipped, "segments": segments})
    _WORKER.forget()


def _family_key(family: list[ClipPlan]) -> str:
    """What a record was rendered from: a record whose plan differs (the code changed) is redone."""
    return hashlib.sha256(json.dumps([(p.utt_id, p.kind, p.attacks, p.channel) for p in family],
                                     sort_keys=True).encode()).hexdigest()[:16]


def _is_done(record: Path, family: list[ClipPlan]) -> bool:
    if not record.exists():
        return False
    try:
        return json.loads(record.read_text(encoding="utf-8")).get("plan") == _family_key(family)
    except (OSError, ValueError):
        return False  # a torn or foreign record: render again


def _cost(family: list[ClipPlan]) -> float:
    """Rough render cost of a family from its attacks' declared costs (the channel and a bona fide
    clip cost about as much as a cheap attack)."""
    return sum(max([ATTACKS[a].cost for a in plan.attacks], default=0.0) + 0.1 for plan in family)


def _plan_hash(cfg: DictConfig) -> str:
    keys = {k: v for k, v in OmegaConf.to_container(cfg, resolve=True).items() if k not in ("probe", "out_dir", "render_cache")}
    keys["builder_version"] = BUILDER_VERSION
    return hashlib.sha256(json.dumps(keys, sort_keys=True).encode()).hexdigest()[:10]


def render_all(families, cfg: DictConfig, out_dir: Path, beds: list[str], workers: int | None) -> tuple[list, list, dict]:
    """Render every family not yet done (resume), in parallel, with a progress bar."""
    done_dir = out_dir / ".work" / _plan_hash(cfg)
    for stale in (out_dir / ".work").glob("*"):
        if stale != done_dir:  # records of another configuration or builder version
            shutil.rmtree(stale)
    done_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "audio").mkdir(exist_ok=True)
    for torn in [*done_dir.glob(".*"), *(out_dir / "audio").glob(".*")]:  # writes of a killed worker
        torn.unlink()
    todo = [(i, fam, str(done_dir)) for i, fam in enumerate(families) if not _is_done(done_dir / f"{i:06d}.json", fam)]
    if len(todo) < len(families):
        print(f"resuming: {len(families) - len(todo)} of {len(families)} families already rendered")
    workers = workers or os.cpu_count() or 1
    cache = cfg.get("render_cache")
    init = (OmegaConf.to_yaml(cfg), str(out_dir / "audio"), beds, str(cache) if cache else None)
    # Costliest families first keeps the pool busy to the end.
    todo.sort(key=lambda t: -_cost(t[1]))
    if todo:
        ctx = mp.get_context("spawn" if os.name == "nt" else "fork")
        with ctx.Pool(workers, initializer=_init_worker, initargs=init) as pool:
            for _ in tqdm(pool.imap_unordered(_render_family, todo, chunksize=1), total=len(todo),
                          desc="rendering clip families", unit="family", smoothing=0.05):
                pass
    rows, skipped, segments = [], [], {}
    for i in range(len(families)):
        done = json.loads((done_dir / f"{i:06d}.json").read_text(encoding="utf-8"))
        rows += done["rows"]
        skipped += done["skipped"]
        segments.update({k: np.asarray(v, np.int8) for k, v in done["segments"].items()})
    return rows, skipped, segments


# ---- assemble ------------------------------------------------------------------------------

# Metadata columns of train.csv and solution.csv (data/layout.py writes the data set files).
METADATA = ["attack", "kind", "generation", "condition", "language", "speaker", "group", "source", "spoof_share", "channel"]


def add_conditions(rows: list[dict], unseen_attacks) -> list[dict]:
    """Every clip's condition (antispoof.metrics.conditions); a language is seen if training has it."""
    train_languages = {lang for r in rows if r["split"] == "train" for lang in r["language"].split("+")}
    for r in rows:
        r["condition"] = condition_of(r["language"], r["label"], r["kind"], r["attack"], train_languages,
                                      set(unseen_attacks))
    return rows


def _build_dir(target: Path, cfg: DictConfig, force: bool) -> Path:
    """Where to render: the target itself when it is free or holds this very build (resume); else,
    with `force`, a staging folder (kept between --force runs of one configuration, so it resumes
    too) that replaces the target only once complete. Without `force` another data set there
    (other settings, an import, anything else) is refused: a build never overwrites one."""
    plan = Path(".work") / _plan_hash(cfg)
    if is_free(target) or (target / plan).is_dir():
        return target
    check_free(target, force, "antispoof data")
    staging = staging_dir(target)
    if not (staging / plan).is_dir():
        shutil.rmtree(staging, ignore_errors=True)
    print(f"{target} holds another data set (other settings or builder version): building the new one in {staging}, swapped in when complete")
    return staging


def build_benchmark(cfg: DictConfig, workers: int | None = None, force: bool = False) -> Path:
    """Build (or resume) a SpoofBench preset; returns the data set folder. One build of a folder at
    a time (antispoof.locks): a second refuses in one line."""
    missing = check_tools(configured_attacks(cfg))
    if missing:
        raise SystemExit(f"missing programs {missing}: run `make setup` (it installs them with apt)")
    with output_lock(Path(cfg.out_dir), f"the {cfg.name} build"):
        return _build(cfg, workers, force)


def _build(cfg: DictConfig, workers: int | None, force: bool) -> Path:
    started = time.time()
    target = Path(cfg.out_dir)
    out_dir = _build_dir(target, cfg, force)
    out_dir.mkdir(parents=True, exist_ok=True)
    roots = [Path(r) for r in cfg.sources_roots]
    clips = src.discover(roots, cfg.corpora)
    if not clips:
        raise SystemExit(f"no bona fide recordings under {[str(r) for r in roots]}: run `make setup`")
    utterances = join_utterances(clips, cfg.utterance, cfg.seed)
    families = make_plan(cfg, utterances)
    n_clips = sum(len(f) for f in families)
    print(f"{cfg.name}: {len(clips)} recordings joined into {len(utterances)} utterances; "
          f"{n_clips} clips planned in {len(families)} families")
    rows, skipped, segments = render_all(families, cfg, out_dir, noise_beds(roots), workers)
    table = write_dataset(add_conditions(rows, cfg.attacks.unseen), segments, out_dir, METADATA)
    out_dir = swap_in(out_dir, target)  # a --force rebuild was staged beside the old data set
    from antispoof.spoofbench.card import write_card
    from antispoof.spoofbench.probe import run_probe

    probe = run_probe(out_dir, folds=cfg.probe.folds, seed=cfg.seed) if cfg.probe.enabled else None
    write_card(out_dir, cfg, table, skipped, probe, build_seconds=time.time() - started, n_recordings=len(clips),
               segments=segments)
    if probe is not None:
        low = min(probe["cv_eer"], probe.get("test_eer", 1.0))
        verdict = "OK" if low >= cfg.probe.target_eer else "BELOW TARGET: the data has a shortcut"
        print(f"shortcut probe: cross-validated EER {probe['cv_eer']:.3f}, test EER {probe.get('test_eer', float('nan')):.3f} "
              f"(target >= {cfg.probe.target_eer}) {verdict}")
    print(f"built {len(table)} clips ({len(skipped)} left out, see README.md) in {time.time() - started:.0f} s")
    return out_dir
