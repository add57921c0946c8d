"""Bona fide utterances of ASVspoof / PartialSpoof length, made from the recordings of a source.

Most Debian recordings are single words or short phrases (KTuberling, Tux Paint stamp names,
short Asterisk prompts); a detector that only ever hears one word per clip sees too little of a
voice to judge it. Consecutive recordings of one speaker are therefore joined with natural
pauses into utterances of a few seconds, while sentence-length recordings (festvox-ru, long
prompts) stay whole. The same utterance is what a TTS system speaks (its joined text) and what a
vocoder resynthesises, and its recordings (or, for one long recording, its pause-separated
stretches) are the word / phrase units that partial spoofs replace.
"""
from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import soundfile as sf

from antispoof.data.audio import SR, frame_energy_db
from antispoof.spoofbench.sources import SourceClip
from antispoof.utils import rng_for

G722_BYTES_PER_S = 8000  # raw G.722 at 64 kbit/s: the Asterisk prompts carry no header


@dataclass(frozen=True)
class Utterance:
    """One bona fide utterance: recordings of one speaker in order, with the pauses between them."""

    key: str
    clips: tuple[SourceClip, ...]
    pauses_s: tuple[float, ...] = ()

    @property
    def first(self) -> SourceClip:
        return self.clips[0]

    @property
    def corpus(self) -> str:
        return self.first.corpus

    @property
    def language(self) -> str:
        return self.first.language

    @property
    def speaker(self) -> str:
        return self.first.speaker

    @property
    def text(self) -> str:
        """The joined text; empty when any recording has none (a TTS system could not speak it)."""
        if not all(c.text for c in self.clips):
            return ""
        return ". ".join(c.text.strip().rstrip(".!?;,") for c in self.clips) + "."


def file_duration(path: str) -> float:
    """Length of a source file in seconds without decoding it (used only for planning)."""
    if path.endswith(".g722"):
        return os.path.getsize(path) / G722_BYTES_PER_S
    try:
        return float(sf.info(path).duration)
    except (sf.LibsndfileError, RuntimeError):
        return 0.0


def _key(clips: list[SourceClip]) -> str:
    if len(clips) == 1:
        return clips[0].clip_id
    return f"{clips[0].clip_id}+{len(clips) - 1}-" + hashlib.sha256(
        "|".join(c.clip_id for c in clips).encode()).hexdigest()[:8]


def join_utterances(clips: list[SourceClip], cfg, seed: int) -> list[Utterance]:
    """Group each speaker's recordings (in corpus order) into utterances of the target length.

    `cfg` is the preset's `utterance` block: recordings of at least `whole_min_s` stay whole;
    shorter ones are joined until a length drawn uniformly from `target_s` is reached, never past
    `max_s`, with pauses drawn from `pause_s`. Deterministic for a seed and the list of files.
    """
    by_speaker: dict[str, list[SourceClip]] = defaultdict(list)
    for clip in clips:
        by_speaker[clip.speaker].append(clip)
    utterances: list[Utterance] = []
    for speaker in sorted(by_speaker):
        rng = rng_for(seed, "join", speaker)
        group: list[SourceClip] = []
        pauses: list[float] = []
        length, target = 0.0, float(rng.uniform(*cfg.target_s))

        def close():
            nonlocal group, pauses, length, target
            if group:
                utterances.append(Utterance(_key(group), tuple(group), tuple(pauses)))
            group, pauses, length, target = [], [], 0.0, float(rng.uniform(*cfg.target_s))

        for clip in sorted(by_speaker[speaker], key=lambda c: c.clip_id):
            seconds = file_duration(clip.path) * cfg.speech_ratio
            if seconds >= cfg.whole_min_s:
                utterances.append(Utterance(clip.clip_id, (clip,)))
                continue
            pause = float(rng.uniform(*cfg.pause_s))
            if group and length + pause + seconds > cfg.max_s:
                close()
                pause = float(rng.uniform(*cfg.pause_s))
            if group:
                pauses.append(round(pause, 3))
                length += pause
            group.append(clip)
            length += seconds
            if length >= target:
                close()
        close()
    return utterances


# ---- word / phrase units inside one recording ----------------------------------------------

def speech_units(wave: np.ndarray, min_pause_s: float = 0.06, min_unit_s: float = 0.2,
                 top_db: float = 35.0) -> list[tuple[int, int]]:
    """Sample spans of the pause-separated stretches of a recording (words or phrases).

    A pause is a run of 10 ms frames more than `top_db` below the loudest frame, at least
    `min_pause_s` long; stretches shorter than `min_unit_s` join their neighbour. A recording
    without inner pauses is cut at its quietest frames into stretches of about 0.5 s, so that
    a partial spoof can still replace a part of it.
    """
    frame = SR // 100
    energy = frame_energy_db(wave, frame)
    quiet = energy < energy.max() - top_db
    runs = _runs(~quiet)
    spans = []
    for start, end in runs:
        if spans and start - spans[-1][1] < min_pause_s * 100:
            spans[-1] = (spans[-1][0], end)  # too short a pause: one stretch
        else:
            spans.append((start, end))
    merged: list[tuple[int, int]] = []
    for start, end in spans:
        if merged and (end - start < min_unit_s * 100 or merged[-1][1] - merged[-1][0] < min_unit_s * 100):
            merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    if len(merged) < 2:
        merged = _cut_at_minima(energy, 0.5)
    # Units tile the recording: each pause is shared out to the units on its two sides.
    bounds = [0] + [(a[1] + b[0]) // 2 for a, b in zip(merged, merged[1:])] + [len(energy)]
    spans = [(bounds[i] * frame, bounds[i + 1] * frame) for i in range(len(bounds) - 1)]
    spans[-1] = (spans[-1][0], len(wave))
    return spans


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(int), [0]])))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def _cut_at_minima(energy: np.ndarray, every_s: float) -> list[tuple[int, int]]:
    """Cut points at the quietest frame of each window of about `every_s`."""
    n, step = len(energy), max(1, int(every_s * 100))
    if n < 2 * step:
        return [(0, n // 2), (n // 2, n)] if n >= 4 else [(0, n)]
    cuts = [lo + int(np.argmin(energy[lo: lo + step // 2])) for lo in range(step - step // 4, n - step // 2, step)]
    bounds = [0, *cuts, n]
    return [(bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1) if bounds[i + 1] > bounds[i]]
