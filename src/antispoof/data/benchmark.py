"""SpoofBench: the default benchmark, built offline from real recordings and real synthesizers.

Three steps, each deterministic for a seed:

1. plan     - pick bona fide recordings, split them by speaker (test = unseen speakers),
              decide which spoofs each yields (TTS of its text, vocoded copy, partial spoof,
              concatenations) and draw every clip's channel.
2. render   - one task per *family* (a recording and every clip derived from it), in a
              process pool with a progress bar; each finished family is recorded on disk,
              so an interrupted build resumes where it stopped.
3. assemble - train.csv / test.csv / solution.csv / segment labels / data card, then the
              shortcut probe.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import shutil
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from antispoof.data import sources as src
from antispoof.data.audio import SR, AudioError, read_audio, set_level, trim_silence, write_audio
from antispoof.data.channel import ChannelSpec, apply_channel, draw_channel
from antispoof.data.layout import write_dataset
from antispoof.data.spoofers import TTS_SYSTEMS, VOCODERS, SynthesisError, check_tools
from antispoof.schema import SEGMENT_HOP_S
from antispoof.utils import rng_for, write_json_atomic

FRAME = int(SR * SEGMENT_HOP_S)
# Bump when rendering changes what a plan produces: finished work of older builds is then redone.
BUILDER_VERSION = 2


# ---- plan ----------------------------------------------------------------------------------

@dataclass
class Piece:
    """One stretch of audio inside a clip: a bona fide recording, or a spoof of it."""

    source: src.SourceClip
    attack: str = "bonafide"  # "bonafide", a TTS system or a vocoder


@dataclass
class ClipPlan:
    utt_id: str
    split: str
    kind: str  # bonafide | tts | vocoder | partial | concat
    pieces: list[Piece]
    label: str
    group: str
    channel: dict = field(default_factory=dict)

    @property
    def attacks(self) -> list[str]:
        return sorted({p.attack for p in self.pieces if p.attack != "bonafide"})


def _utt_id(seed: int, key: str) -> str:
    """Opaque ids: nothing in an id may reveal the class, the source or the attack."""
    return "sb_" + hashlib.sha256(f"{seed}/{key}".encode()).hexdigest()[:12]


def select_sources(clips: list[src.SourceClip], limit: int | None, seed: int) -> list[src.SourceClip]:
    """Round-robin over speakers (shuffled within each), so a small preset still has every speaker."""
    if not limit or limit >= len(clips):
        return clips
    by_speaker: dict[str, list[src.SourceClip]] = defaultdict(list)
    for clip in clips:
        by_speaker[clip.speaker].append(clip)
    rng = rng_for(seed, "select")
    queues = []
    for speaker in sorted(by_speaker):
        items = by_speaker[speaker]
        queues.append([items[i] for i in rng.permutation(len(items))])
    chosen, depth = [], 0
    while len(chosen) < limit:
        for queue in queues:
            if depth < len(queue) and len(chosen) < limit:
                chosen.append(queue[depth])
        depth += 1
    return chosen


def _tts_for(language: str, split: str, cfg: DictConfig, rng) -> str | None:
    """A TTS system for a language; the unseen attacks only ever speak in the test split."""
    unseen = [a for a in cfg.attacks.unseen if TTS_SYSTEMS[a].supports(language)]
    if split == "test" and unseen and rng.random() < cfg.attacks.unseen_share:
        return str(rng.choice(unseen))
    seen = [a for a in cfg.attacks.tts if TTS_SYSTEMS[a].supports(language)]
    return str(rng.choice(seen)) if seen else None


def _family_plans(clip: src.SourceClip, split: str, cfg: DictConfig) -> list[ClipPlan]:
    rng = rng_for(cfg.seed, "family", clip.clip_id)
    group = clip.speaker
    make = lambda kind, pieces, label: ClipPlan(  # noqa: E731
        _utt_id(cfg.seed, f"{clip.clip_id}/{kind}"), split, kind, pieces, label, group)
    plans = [make("bonafide", [Piece(clip)], "bonafide")]
    p = cfg.per_source
    tts = _tts_for(clip.language, split, cfg, rng) if clip.text else None
    if tts and rng.random() < p.tts:
        plans.append(make("tts", [Piece(clip, tts)], "spoof"))
    if rng.random() < p.vocoder:
        plans.append(make("vocoder", [Piece(clip, str(rng.choice(cfg.attacks.vocoders)))], "spoof"))
    if rng.random() < p.partial:
        plans.append(make("partial", [Piece(clip), Piece(clip, str(rng.choice(cfg.attacks.vocoders)))], "spoof"))
    return plans


def _concat_plan(host: list[src.SourceClip], split: str, cfg: DictConfig, texts: list[src.SourceClip]) -> ClipPlan:
    """Pieces of one speaker's recordings, some of them replaced by a vocoded or TTS version.

    A TTS piece may speak another language's text (several sources and languages in one clip).
    Bona fide-only concatenations exist too, so a splice is not by itself a sign of spoofing.
    """
    key = "+".join(c.clip_id for c in host)
    rng = rng_for(cfg.seed, "concat", key)
    c = cfg.concat
    all_bonafide = rng.random() < c.bonafide_share
    pieces = []
    for clip in host:
        if all_bonafide or rng.random() >= c.spoof_piece_prob:
            pieces.append(Piece(clip))
        elif rng.random() < 0.5 or not texts:
            pieces.append(Piece(clip, str(rng.choice(cfg.attacks.vocoders))))
        else:
            other = texts[rng.integers(len(texts))] if rng.random() < c.foreign_text_prob else clip
            other = other if other.text else clip
            system = _tts_for(other.language, split, cfg, rng)
            pieces.append(Piece(other, system) if system and other.text else Piece(clip, "voc_world"))
    if not all_bonafide and all(p.attack == "bonafide" for p in pieces):
        pieces[rng.integers(len(pieces))].attack = str(rng.choice(cfg.attacks.vocoders))
    label = "bonafide" if all(p.attack == "bonafide" for p in pieces) else "spoof"
    return ClipPlan(_utt_id(cfg.seed, f"concat/{key}"), split, "concat", pieces, label, host[0].speaker)


def _assign_channels(plans: list[ClipPlan], cfg: DictConfig) -> None:
    """Draw channels so that the share of narrowband clips is the same in both classes.

    Codec2 output is narrowband by nature; other clips of its class get fewer narrowband
    channels to compensate, otherwise bandwidth alone would hint at the class.
    """
    share = cfg.channel.narrowband_share
    for label in ("bonafide", "spoof"):
        members = [p for p in plans if p.label == label]
        forced = {p.utt_id for p in members if p.kind == "vocoder" and p.attacks == ["voc_codec2"]}
        free = [p for p in members if p.utt_id not in forced]
        quota = max(0, int(round(share * len(members))) - len(forced))
        order = rng_for(cfg.seed, "narrowband", label).permutation(len(free))
        narrow = forced | {free[i].utt_id for i in order[:quota]}
        for plan in members:
            rng = rng_for(cfg.seed, "channel", plan.utt_id)
            plan.channel = draw_channel(rng, plan.utt_id in narrow, cfg.channel).to_dict()


def make_plan(cfg: DictConfig, clips: list[src.SourceClip]) -> list[list[ClipPlan]]:
    """Families of clip plans; every clip of a family derives from the same recordings."""
    chosen = select_sources(clips, cfg.max_sources, cfg.seed)
    test_speakers = set(cfg.test_speakers)
    families: list[list[ClipPlan]] = []
    by_speaker: dict[str, list[src.SourceClip]] = defaultdict(list)
    for clip in chosen:
        by_speaker[clip.speaker].append(clip)
    texts = [c for c in chosen if c.text]
    for speaker in sorted(by_speaker):
        split = "test" if speaker in test_speakers else "train"
        items = by_speaker[speaker]
        rng = rng_for(cfg.seed, "concat-donors", speaker)
        n_concat = int(round(cfg.concat.share * len(items)))
        cursor = 0
        for _ in range(n_concat):
            k = int(rng.integers(cfg.concat.min_pieces, cfg.concat.max_pieces + 1))
            if len(items) - cursor - k < 1:
                break
            families.append([_concat_plan(items[cursor: cursor + k], split, cfg, texts)])
            cursor += k
        families.extend(_family_plans(clip, split, cfg) for clip in items[cursor:])
    _assign_channels([p for fam in families for p in fam], cfg)
    return families


# ---- render --------------------------------------------------------------------------------

class _Renderer:
    """Turns plans into audio; lives once per worker process (holds source and spoof caches)."""

    def __init__(self, cfg: DictConfig, audio_dir: Path, beds: list[str]):
        self.cfg, self.audio_dir, self.beds = cfg, audio_dir, beds
        self._sources: dict[str, np.ndarray] = {}

    def source(self, clip: src.SourceClip) -> np.ndarray:
        if clip.clip_id not in self._sources:
            wave = trim_silence(read_audio(clip.path))[: int(self.cfg.max_duration_s * SR)]
            if len(wave) < self.cfg.min_duration_s * SR:
                raise AudioError(f"{clip.path}: only {len(wave) / SR:.2f} s of speech")
            self._sources[clip.clip_id] = set_level(wave, -26.0)
        return self._sources[clip.clip_id]

    def forget_sources(self) -> None:
        """Families never share recordings, so the cache only needs to live for one family."""
        self._sources.clear()

    def piece(self, piece: Piece, key: str) -> np.ndarray:
        rng = rng_for(self.cfg.seed, "piece", key, piece.source.clip_id, piece.attack)
        if piece.attack == "bonafide":
            return self.source(piece.source)
        if piece.attack in VOCODERS:
            return VOCODERS[piece.attack](self.source(piece.source), rng)
        tts = TTS_SYSTEMS[piece.attack](piece.source.text, piece.source.language, rng)
        wave = trim_silence(tts)[: int(self.cfg.max_duration_s * SR)]
        return set_level(wave, -26.0)

    def partial(self, plan: ClipPlan) -> tuple[np.ndarray, np.ndarray]:
        """Replace 1..n regions of the recording by its vocoded twin, with short crossfades."""
        base = self.source(plan.pieces[0].source)
        fake = self.piece(plan.pieces[1], plan.utt_id)
        rng = rng_for(self.cfg.seed, "regions", plan.utt_id)
        c = self.cfg.partial
        n = len(base)
        spoof = np.zeros(n, dtype=bool)
        n_regions = int(rng.integers(1, c.max_regions + 1))
        longest = max(c.min_region_s * SR, c.max_region_fraction * n / n_regions)
        for _ in range(n_regions):
            length = int(np.exp(rng.uniform(np.log(c.min_region_s * SR), np.log(longest))))
            start = int(rng.integers(0, max(1, n - length)))
            spoof[start: start + length] = True
        fade = int(c.crossfade_ms * SR / 1000)
        weight = spoof.astype(np.float32)
        if fade > 1:
            weight = np.clip(np.convolve(weight, np.ones(fade) / fade, mode="same"), 0, 1)
            weight = np.maximum(weight, spoof)
        wave = (1 - weight) * base + weight * fake
        return wave.astype(np.float32), weight > 0

    def concat(self, plan: ClipPlan) -> tuple[np.ndarray, np.ndarray]:
        rng = rng_for(self.cfg.seed, "gaps", plan.utt_id)
        waves, masks, total = [], [], 0
        for i, piece in enumerate(plan.pieces):
            wave = self.piece(piece, f"{plan.utt_id}/{i}")
            if i and total + len(wave) > self.cfg.concat.max_total_s * SR:
                break
            if i:
                gap = np.zeros(int(rng.uniform(*self.cfg.concat.gap_ms) * SR / 1000), np.float32)
                waves.append(gap)
                masks.append(np.zeros(len(gap), bool))
            waves.append(wave)
            masks.append(np.full(len(wave), piece.attack != "bonafide"))
            total += len(wave)
        # Pieces past the length limit were dropped: the clip's label follows what is left.
        plan.pieces = plan.pieces[: (len(waves) + 1) // 2]
        mask = np.concatenate(masks)
        plan.label = "spoof" if mask.any() else "bonafide"
        return np.concatenate(waves), mask

    def render(self, plan: ClipPlan) -> tuple[np.ndarray, np.ndarray]:
        """Waveform after the channel and a per-sample spoof mask."""
        if plan.kind == "partial":
            wave, mask = self.partial(plan)
        elif plan.kind == "concat":
            wave, mask = self.concat(plan)
        else:
            wave = self.piece(plan.pieces[0], plan.utt_id)
            mask = np.full(len(wave), plan.kind != "bonafide")
        return apply_channel(wave, ChannelSpec(**plan.channel), self.beds), mask


def segment_labels(spoof_mask: np.ndarray) -> np.ndarray:
    """10 ms labels, 1 = bona fide: a frame is spoof if any of its samples is (min-pooling)."""
    n = int(np.ceil(len(spoof_mask) / FRAME))
    padded = np.zeros(n * FRAME, dtype=bool)
    padded[: len(spoof_mask)] = spoof_mask
    return (~padded.reshape(n, FRAME).any(axis=1)).astype(np.int8)


def _row(plan: ClipPlan, duration: float, segments: np.ndarray) -> dict:
    first = plan.pieces[0].source
    languages = sorted({p.source.language for p in plan.pieces})
    return {
        "utt_id": plan.utt_id, "path": f"audio/{plan.utt_id}.flac", "duration": round(duration, 4),
        "label": plan.label, "split": plan.split, "kind": plan.kind,
        "attack": "+".join(plan.attacks) or "bonafide", "language": "+".join(languages),
        "speaker": plan.group, "group": plan.group, "source": first.corpus,
        "spoof_share": round(float(1 - segments.mean()), 4), "channel": plan.channel["codec"] + ("/nb" if plan.channel["narrowband"] else "/wb"),
    }


_WORKER: _Renderer | None = None


def _init_worker(cfg_yaml: str, audio_dir: str, beds: list[str]):
    global _WORKER
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    _WORKER = _Renderer(OmegaConf.create(cfg_yaml), Path(audio_dir), beds)


def _render_family(args: tuple[int, list[ClipPlan], str]) -> None:
    """Render one family and record its manifest rows, segment labels and left-out clips on disk."""
    index, plans, done_dir = args
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
    write_json_atomic(Path(done_dir) / f"{index:06d}.json", {"rows": rows, "skipped": skipped, "segments": segments})
    _WORKER.forget_sources()


def _plan_hash(cfg: DictConfig) -> str:
    keys = {k: v for k, v in OmegaConf.to_container(cfg, resolve=True).items() if k not in ("probe", "out_dir")}
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
    todo = [(i, fam, str(done_dir)) for i, fam in enumerate(families) if not (done_dir / f"{i:06d}.json").exists()]
    if len(todo) < len(families):
        print(f"resuming: {len(families) - len(todo)} of {len(families)} families already rendered")
    workers = workers or os.cpu_count() or 1
    init = (OmegaConf.to_yaml(cfg), str(out_dir / "audio"), beds)
    # Longest families first keeps the pool busy to the end.
    todo.sort(key=lambda t: -len(t[1]))
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
METADATA = ["attack", "kind", "language", "speaker", "group", "source", "spoof_share", "channel"]


def build_benchmark(cfg: DictConfig, workers: int | None = None) -> Path:
    """Build (or resume) a SpoofBench preset; returns the data set folder."""
    missing = check_tools()
    if missing:
        raise SystemExit(f"missing programs {missing}: run `make setup` (it installs them with apt)")
    started = time.time()
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    roots = [Path(r) for r in cfg.sources_roots]
    clips = src.discover(roots, cfg.corpora)
    if not clips:
        raise SystemExit(f"no bona fide recordings under {[str(r) for r in roots]}: run `make setup`")
    families = make_plan(cfg, clips)
    n_clips = sum(len(f) for f in families)
    print(f"{cfg.name}: {len(clips)} recordings found, {n_clips} clips planned in {len(families)} families")
    rows, skipped, segments = render_all(families, cfg, out_dir, src.noise_beds(roots), workers)
    table = write_dataset(rows, segments, out_dir, METADATA)
    from antispoof.data.card import write_card
    from antispoof.data.probe import run_probe

    probe = run_probe(out_dir, folds=cfg.probe.folds, seed=cfg.seed) if cfg.probe.enabled else None
    write_card(out_dir, cfg, table, skipped, probe, build_seconds=time.time() - started, n_recordings=len(clips))
    if probe is not None:
        verdict = "OK" if probe["cv_eer"] >= cfg.probe.target_eer else "BELOW TARGET: the data has a shortcut"
        print(f"shortcut probe: cross-validated EER {probe['cv_eer']:.3f} (target >= {cfg.probe.target_eer}) {verdict}")
    print(f"built {len(table)} clips ({len(skipped)} left out, see README.md) in {time.time() - started:.0f} s")
    return out_dir
