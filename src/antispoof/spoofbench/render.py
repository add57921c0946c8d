"""Turning SpoofBench clip plans into audio and exact 10 ms labels.

A renderer lives once per worker process. It joins an utterance's recordings, speaks its text
with a TTS system or resynthesises it with a vocoder, builds partial spoofs the way PartialSpoof
does (whole words or phrases of the utterance replaced by its vocoded twin or by a TTS of those
words) and concatenations, and finally passes the clip through its channel. Every sample carries
a spoof flag, so the segment labels are exact whatever moved.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from antispoof.data.audio import SR, AudioError, read_audio, rms_db, set_level, trim_silence
from antispoof.spoofbench.channel import ChannelSpec, apply_channel
from antispoof.spoofbench.plan import ClipPlan, Piece
from antispoof.spoofbench.attacks import TTS_SYSTEMS, VOCODERS
from antispoof.spoofbench.utterances import Utterance, speech_units
from antispoof.schema import pool_labels
from antispoof.utils import rng_for

LEVEL_DB = -26.0
TWIN_MARGIN_S = 0.25  # context a vocoder hears on either side of a region it replaces


def _merge(spans, gap: int) -> list[tuple[int, int]]:
    """Sample spans joined where fewer than `gap` samples part them."""
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        if merged and start - merged[-1][1] < gap:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(a, b) for a, b in merged]


def choose_units(lengths: list[int], rng: np.random.Generator, max_regions: int,
                 share: tuple[float, float]) -> list[int]:
    """Indices of the units a partial spoof replaces: 1..max_regions runs of consecutive units.

    The spoofed share of the utterance is drawn log-uniformly from `share`; at least one unit
    always stays bona fide (else the clip would be a whole-utterance spoof).
    """
    n = len(lengths)
    if n < 2:
        raise AudioError("a partial spoof needs at least two word / phrase units")
    total = float(sum(lengths))
    target = float(np.exp(rng.uniform(np.log(share[0]), np.log(share[1])))) * total
    n_regions = int(rng.integers(1, min(max_regions, (n + 1) // 2) + 1))
    chosen = set(int(i) for i in rng.choice(n, n_regions, replace=False))
    while len(chosen) < n - 1 and sum(lengths[i] for i in chosen) < target:
        frontier = sorted({j for i in chosen for j in (i - 1, i + 1) if 0 <= j < n and j not in chosen})
        chosen.add(int(frontier[rng.integers(len(frontier))]))
    if len(chosen) == n:
        chosen.discard(max(chosen))
    return sorted(chosen)


class Renderer:
    """Turns plans into audio; holds the family's utterances while it renders them."""

    def __init__(self, cfg: DictConfig, audio_dir: Path, beds: list[str]):
        self.cfg, self.audio_dir, self.beds = cfg, audio_dir, beds
        self._cache: dict[str, tuple[np.ndarray, list[tuple[int, int]], bool]] = {}

    def utterance(self, utt: Utterance) -> tuple[np.ndarray, list[tuple[int, int]], bool]:
        """The bona fide utterance, the sample spans of its word / phrase units, and whether
        those units are its recordings (True) or pause-separated stretches of one (False).

        Recordings are trimmed, levelled and joined with the planned pauses (digital silence;
        the channel later lays one noise floor over the whole clip).
        """
        if utt.key not in self._cache:
            limit = int(self.cfg.max_duration_s * SR)
            pieces, spans, cursor = [], [], 0
            for i, clip in enumerate(utt.clips):
                if i:
                    gap = np.zeros(int(utt.pauses_s[i - 1] * SR), np.float32)
                    pieces.append(gap)
                    cursor += len(gap)
                wave = set_level(trim_silence(read_audio(clip.path)), LEVEL_DB)
                if cursor + len(wave) > limit and i:
                    pieces.pop()  # the pause before a recording that no longer fits
                    break
                pieces.append(wave)
                spans.append((cursor, cursor + len(wave)))
                cursor += len(wave)
            wave = np.concatenate(pieces)[:limit]
            if len(wave) < self.cfg.min_duration_s * SR:
                raise AudioError(f"{utt.first.path}: only {len(wave) / SR:.2f} s of speech")
            joined = len(spans) > 1
            self._cache[utt.key] = (set_level(wave, LEVEL_DB), spans if joined else speech_units(wave), joined)
        return self._cache[utt.key]

    def forget(self) -> None:
        """Families never share recordings, so the cache only needs to live for one family."""
        self._cache.clear()

    def tts(self, system: str, text: str, language: str, rng: np.random.Generator) -> np.ndarray:
        wave = trim_silence(TTS_SYSTEMS[system](text, language, rng))[: int(self.cfg.max_duration_s * SR)]
        return set_level(wave, LEVEL_DB)

    def piece(self, piece: Piece, key: str) -> np.ndarray:
        rng = rng_for(self.cfg.seed, "piece", key, piece.source.key, piece.attack)
        if piece.attack == "bonafide":
            return self.utterance(piece.source)[0]
        if piece.attack in VOCODERS:
            return VOCODERS[piece.attack](self.utterance(piece.source)[0], rng)
        return self.tts(piece.attack, piece.source.text, piece.source.language, rng)

    def partial(self, plan: ClipPlan) -> tuple[np.ndarray, np.ndarray]:
        """Whole words or phrases of the utterance replaced by spoofs of the same words."""
        utt, attack = plan.pieces[0].source, plan.pieces[1].attack
        base, units, joined = self.utterance(utt)
        rng = rng_for(self.cfg.seed, "regions", plan.utt_id)
        c = self.cfg.partial
        chosen = choose_units([b - a for a, b in units], rng, c.max_regions, tuple(c.share))
        if attack in VOCODERS:
            spans = [units[i] for i in chosen]
            return self._replace_by_twin(base, spans, self._twin(base, spans, plan.pieces[1], plan.utt_id))
        if not joined:  # planned on several recordings, but only one fitted the length limit
            raise AudioError(f"{utt.first.path}: too long to join, no words for {attack} to replace")
        return self._replace_by_tts(base, units, chosen, utt, attack, rng)

    def _twin(self, base: np.ndarray, spans, piece: Piece, key: str) -> np.ndarray:
        """The vocoded twin where the partial spoof needs it: each run of replaced units with
        TWIN_MARGIN_S of context on either side is re-synthesised on its own (the vocoder never
        sees the rest, whose output the crossfade would discard), so a neural vocoder costs a
        partial spoof its spoofed share rather than the whole utterance."""
        rng = rng_for(self.cfg.seed, "piece", key, piece.source.key, piece.attack)
        margin = int(TWIN_MARGIN_S * SR)
        twin = np.zeros(len(base), dtype=np.float32)
        for start, end in _merge(spans, 2 * margin):
            a, b = max(0, start - margin), min(len(base), end + margin)
            twin[a:b] = VOCODERS[piece.attack](base[a:b], rng)
        return twin

    def _replace_by_twin(self, base, spans, twin) -> tuple[np.ndarray, np.ndarray]:
        """Cross-fade into the vocoded twin over each span; the fades count as spoof."""
        spoof = np.zeros(len(base), dtype=bool)
        for start, end in spans:
            spoof[start:end] = True
        fade = int(self.cfg.partial.crossfade_ms * SR / 1000)
        weight = spoof.astype(np.float32)
        if fade > 1:
            weight = np.clip(np.convolve(weight, np.ones(fade) / fade, mode="same"), 0, 1)
            weight = np.maximum(weight, spoof)
        return ((1 - weight) * base + weight * twin).astype(np.float32), weight > 0

    def _replace_by_tts(self, base, units, chosen, utt, system, rng) -> tuple[np.ndarray, np.ndarray]:
        """Each chosen recording is spoken anew by the TTS system; pauses and the rest stay bona fide."""
        waves, masks, cursor = [], [], 0
        for i, (start, end) in enumerate(units):
            waves.append(base[cursor:start])
            masks.append(np.zeros(start - cursor, bool))
            part = base[start:end]
            if i in chosen:
                part = set_level(self.tts(system, utt.clips[i].text, utt.language, rng), rms_db(part))
            waves.append(part)
            masks.append(np.full(len(part), i in chosen))
            cursor = end
        waves.append(base[cursor:])
        masks.append(np.zeros(len(base) - cursor, bool))
        limit = int(self.cfg.max_duration_s * SR)
        return np.concatenate(waves)[:limit], np.concatenate(masks)[:limit]

    def concat(self, plan: ClipPlan) -> tuple[np.ndarray, np.ndarray]:
        rng = rng_for(self.cfg.seed, "gaps", plan.utt_id)
        waves, masks, total = [], [], 0
        for i, piece in enumerate(plan.pieces):
            wave = self.piece(piece, f"{plan.utt_id}/{i}")
            gap = np.zeros(int(rng.uniform(*self.cfg.concat.gap_ms) * SR / 1000) if i else 0, np.float32)
            if i and total + len(gap) + len(wave) > self.cfg.concat.max_total_s * SR:
                break  # the clip's length limit counts the gaps too
            if i:
                waves.append(gap)
                masks.append(np.zeros(len(gap), bool))
                total += len(gap)
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


def segment_labels(spoof_mask: np.ndarray, frame: int = SR // 100) -> np.ndarray:
    """10 ms labels, 1 = bona fide, from a per-sample spoof mask: the project's one label pooling
    (a frame is spoof if any of its samples is), with samples as the finest grid."""
    return pool_labels((~np.asarray(spoof_mask, dtype=bool)).astype(np.int8), frame).astype(np.int8)
