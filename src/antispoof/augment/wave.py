"""Wave-level augmentation: a chain of per-clip transforms, run in the data-loader workers.

The chain reproduces the FinVolution team's recipe (seed 002: clip 0.1, echo 0.1, noise 0.2,
resample 0.2, pitch shift 0.05 and speed-up 0.05, the last two turning the label to spoof) and
adds realistic channels (rooms, codecs, noise beds, babble) and RawBoost (augment/rawboost.py).
Steps run in WAVE_STEPS order, each with its own probability from the config
(`augment.wave.<step>.p`); a step at p = 0 draws nothing, so adding one leaves other chains as
they were.

Library transforms (audiomentations) do the signal processing where one exists; what is written
here is the label bookkeeping: a step that moves or stretches time (crop, speed) maps the 10 ms
segment labels with the samples, so they stay exact. Every random draw comes from the clip's own
generator (seeded by seed, epoch and utt_id), so a fixed seed gives the same clip on any worker.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from antispoof.augment.rawboost import RawBoost
from antispoof.data.audio import SR, AudioError, read_audio, resample
from antispoof.data.dataset import FRAME, n_frames
from antispoof.data.signal import CODECS, add_noise, align_to, codec_roundtrip
from antispoof.data.sounds import effect_sounds, noise_beds
from antispoof.utils import seeded_global_rngs

WAVE_STEPS = ("crop", "rawboost", "echo", "reverb", "noise", "background", "babble", "resample",
              "codec", "pitch_shift", "speed")


class AugmentError(ValueError):
    """An augmentation cannot run as configured (the message names the config key)."""


@dataclass
class Clip:
    """One training clip as it flows through the chain (data convention: 1 bona fide, 0 spoof)."""

    wave: np.ndarray        # float32, 16 kHz
    label: int              # 1 bona fide, 0 spoof, -1 unknown
    seg: np.ndarray         # 10 ms labels, 1 / 0 / -1
    relabelled: bool = False  # a step made it spoof (pitch shift, speed); splicing then skips it


# ---- label bookkeeping ---------------------------------------------------------------------

def crop_clip(clip: Clip, start: int, length: int) -> Clip:
    """Samples [start, start + length) with their labels; start must be on the 10 ms grid."""
    if start % FRAME:
        raise ValueError(f"crop start {start} is not a multiple of {FRAME} samples")
    first = start // FRAME
    return replace(clip, wave=clip.wave[start: start + length], seg=clip.seg[first: first + n_frames(length)])


def stretch_labels(seg: np.ndarray, rate: float, n_out: int) -> np.ndarray:
    """10 ms labels after time is sped up by `rate` (output sample t came from input t * rate).

    Output frame j covers input time [j, j + 1) * rate frames; it is spoof if any input frame it
    touches is (the min, as for pooling), and -1 only if all it touches are -1.
    """
    out = np.empty(n_out, dtype=seg.dtype)
    for j in range(n_out):
        lo = min(int(math.floor(j * rate)), len(seg) - 1)
        hi = max(lo + 1, min(len(seg), int(math.ceil((j + 1) * rate))))
        window = seg[lo:hi]
        known = window[window >= 0]
        out[j] = known.min() if len(known) else -1
    return out


def relabel_spoof(clip: Clip) -> Clip:
    """Pitch-shifted or sped-up speech is no longer the speaker's own voice: spoof throughout."""
    return replace(clip, label=0, seg=np.zeros(n_frames(len(clip.wave)), clip.seg.dtype), relabelled=True)


def fit_length(wave: np.ndarray, n: int) -> np.ndarray:
    """Cut or zero-pad to n samples (resampling round trips may be off by a sample or two)."""
    out = np.zeros(n, np.float32)
    out[: min(n, len(wave))] = wave[:n]
    return out


def _library_seed(rng: np.random.Generator):
    """audiomentations draws from Python's and NumPy's global generators: seed them from the
    clip's own generator for the one call (and restore them after)."""
    return seeded_global_rngs(int(rng.integers(2**31)))


# ---- steps: (clip, rng) -> clip ---------------------------------------------------------------

Step = Callable[[Clip, np.random.Generator], Clip]


def make_crop(cfg, context) -> Step:
    """The seed's "clip": a random window of at least min_fraction of the clip (and min_s)."""
    def crop(clip: Clip, rng):
        n = len(clip.wave)
        length = max(int(cfg.min_s * SR), int(rng.uniform(cfg.min_fraction, 1.0) * n)) // FRAME * FRAME
        if length >= n or length <= 0:
            return clip
        start = int(rng.integers(0, (n - length) // FRAME + 1)) * FRAME
        return crop_clip(clip, start, length)
    return crop


def make_rawboost(cfg, context) -> Step:
    """RawBoost (Tak et al. 2022; augment/rawboost.py): convolutive, impulsive and coloured-noise
    distortions as `algo` says. It runs right after crop, on the clean clip as in the paper, with
    the other channels on top; length and labels are kept, so cached views can use it too."""
    try:
        boost = RawBoost(**{key: value for key, value in cfg.items() if key != "p"})
    except (TypeError, ValueError) as err:
        raise AugmentError(f"augment.wave.rawboost: {err}") from None

    def rawboost(clip: Clip, rng):
        return replace(clip, wave=boost(clip.wave, rng))
    return rawboost


def make_echo(cfg, context) -> Step:
    """1..max_taps delayed, decaying copies (a hall or a speakerphone); the peak is not raised."""
    def echo(clip: Clip, rng):
        x = clip.wave
        y = x.copy()
        for tap in range(1, int(rng.integers(1, cfg.max_taps + 1)) + 1):
            delay = int(rng.uniform(cfg.min_delay_s, cfg.max_delay_s) * SR * tap)
            if delay < len(x):
                y[delay:] += rng.uniform(cfg.min_decay, cfg.max_decay) ** tap * x[: len(x) - delay]
        peak_x, peak_y = np.abs(x).max(initial=0), np.abs(y).max(initial=0)
        if peak_y > peak_x > 0:
            y *= peak_x / peak_y
        return replace(clip, wave=y.astype(np.float32))
    return echo


def make_reverb(cfg, context) -> Step:
    """A shoebox room (pyroomacoustics via audiomentations' RoomSimulator), re-aligned to the dry
    clip so the labels keep their place (the direct path arrives a few ms late)."""
    from audiomentations import RoomSimulator

    room = RoomSimulator(calculation_mode="rt60", min_target_rt60=cfg.min_rt60, max_target_rt60=cfg.max_rt60,
                         use_ray_tracing=False, max_order=cfg.max_order, leave_length_unchanged=False, p=1.0)

    def reverb(clip: Clip, rng):
        with _library_seed(rng):
            wet = room(samples=clip.wave, sample_rate=SR)
        wet = align_to(np.asarray(wet, np.float32), clip.wave, max_lag=800)
        peak_x, peak_y = np.abs(clip.wave).max(initial=0), np.abs(wet).max(initial=0)
        return replace(clip, wave=(wet * (peak_x / peak_y) if peak_y > 0 else wet).astype(np.float32))
    return reverb


def make_noise(cfg, context) -> Step:
    """White Gaussian noise at a random SNR (audiomentations' AddGaussianSNR)."""
    from audiomentations import AddGaussianSNR

    transform = AddGaussianSNR(min_snr_db=cfg.min_snr_db, max_snr_db=cfg.max_snr_db, p=1.0)

    def noise(clip: Clip, rng):
        with _library_seed(rng):
            return replace(clip, wave=transform(samples=clip.wave, sample_rate=SR).astype(np.float32))
    return noise


def looped_piece(path: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """n samples of a recording from a random offset, looped when it is shorter than n."""
    sound = _read_cached(path)
    sound = np.tile(sound, n // max(1, len(sound)) + 2)
    start = int(rng.integers(0, len(sound) - n + 1))
    return sound[start: start + n]


@functools.lru_cache(maxsize=64)
def _read_cached(path: str) -> np.ndarray:
    return read_audio(path)


def bed_noise(paths: list[str], n: int, rng: np.random.Generator, tries: int = 8) -> np.ndarray:
    """A piece of a random noise bed; silent stretches (a pause in the music) are drawn again, so
    the asked SNR is always met (audiomentations' AddBackgroundNoise returns the clip unchanged
    when its piece is silent, which would skip the step without a word)."""
    for _ in range(tries):
        piece = looped_piece(str(rng.choice(paths)), n, rng)
        if np.sqrt(np.mean(piece.astype(np.float64) ** 2)) > 1e-4:
            return piece
    raise AugmentError(f"augment.wave.background: {tries} silent noise-bed pieces in a row; check the beds")


def make_background(cfg, context) -> Step:
    """Noise beds (music on hold, Tux Paint's sound effects) at a random SNR."""
    beds = context.get("noise_beds") or []
    if not beds:
        raise AugmentError("augment.wave.background: no noise beds found (run `make setup`, which extracts "
                           "them), or set augment.wave.background.p=0")

    def background(clip: Clip, rng):
        noise = bed_noise(beds, len(clip.wave), rng)
        return replace(clip, wave=add_noise(clip.wave, noise, rng.uniform(cfg.min_snr_db, cfg.max_snr_db)))
    return background


def babble_noise(paths: list[str], n: int, n_speakers: int, rng: np.random.Generator) -> np.ndarray:
    """Sum of n_speakers other clips, each looped to n samples from a random offset, equal level."""
    total = np.zeros(n, np.float32)
    for path in rng.choice(paths, size=n_speakers, replace=len(paths) < n_speakers):
        piece = looped_piece(str(path), n, rng)
        total += piece / (np.sqrt(np.mean(piece**2)) + 1e-8)
    return total


def make_babble(cfg, context) -> Step:
    """Babble made of other bona fide training clips (a crowd behind the speaker) at a random SNR."""
    paths = context.get("babble_clips") or []
    if not paths:
        raise AugmentError("augment.wave.babble: no bona fide training clips to make babble from; "
                           "set augment.wave.babble.p=0")

    def babble(clip: Clip, rng):
        speakers = int(rng.integers(cfg.min_speakers, cfg.max_speakers + 1))
        noise = babble_noise(paths, len(clip.wave), speakers, rng)
        return replace(clip, wave=add_noise(clip.wave, noise, rng.uniform(cfg.min_snr_db, cfg.max_snr_db)))
    return babble


def make_resample(cfg, context) -> Step:
    """The seed's "resample": down to a lower rate and back, which removes the top of the band."""
    def resample_step(clip: Clip, rng):
        rate = int(rng.choice(list(cfg.rates)))
        wave = fit_length(resample(resample(clip.wave, SR, rate), rate, SR), len(clip.wave))
        return replace(clip, wave=wave)
    return resample_step


def make_codec(cfg, context) -> Step:
    """A lossy codec round trip (in memory with PyAV; GSM through the ffmpeg program), re-aligned."""
    unknown = [c for c in cfg.codecs if c not in CODECS]
    if unknown:
        raise AugmentError(f"augment.wave.codec: unknown codec {unknown[0]!r} (known: {', '.join(CODECS)})")
    probe = (0.1 * np.sin(np.arange(SR // 10) * 0.1)).astype(np.float32)
    for name in cfg.codecs:  # a missing encoder fails here, in one line, not mid-epoch in a worker
        try:
            codec_roundtrip(probe, name, int(cfg.kbps[0]))
        except AudioError as err:
            raise AugmentError(f"augment.wave.codec: {err}") from None

    def codec(clip: Clip, rng):
        name = str(rng.choice(list(cfg.codecs)))
        return replace(clip, wave=codec_roundtrip(clip.wave, name, int(rng.choice(list(cfg.kbps)))))
    return codec


def make_pitch_shift(cfg, context) -> Step:
    """Pitch shift (audiomentations); with relabel_spoof, as in the seed, the clip becomes spoof."""
    from audiomentations import PitchShift

    transform = PitchShift(min_semitones=cfg.min_semitones, max_semitones=cfg.max_semitones, p=1.0)

    def pitch_shift(clip: Clip, rng):
        with _library_seed(rng):
            shifted = replace(clip, wave=fit_length(transform(samples=clip.wave, sample_rate=SR), len(clip.wave)))
        return relabel_spoof(shifted) if cfg.relabel_spoof else shifted
    return pitch_shift


def make_speed(cfg, context) -> Step:
    """Tempo change (audiomentations' TimeStretch, pitch kept): the clip gets shorter or longer and
    the labels are stretched with it; with relabel_spoof (the seed's speed-up) it becomes spoof."""
    from audiomentations import TimeStretch

    transform = TimeStretch(min_rate=cfg.min_rate, max_rate=cfg.max_rate, leave_length_unchanged=False, p=1.0)

    def speed(clip: Clip, rng):
        with _library_seed(rng):
            wave = np.asarray(transform(samples=clip.wave, sample_rate=SR), np.float32)
        rate = len(clip.wave) / max(1, len(wave))  # the rate actually applied, from the lengths
        stretched = replace(clip, wave=wave, seg=stretch_labels(clip.seg, rate, n_frames(len(wave))))
        return relabel_spoof(stretched) if cfg.relabel_spoof else stretched
    return speed


STEP_BUILDERS = {name: globals()[f"make_{name}"] for name in WAVE_STEPS}


class WaveAugmenter:
    """The configured chain: each step with probability `p`, in WAVE_STEPS order.

    `context` gives what some steps need: `noise_beds` (file paths) and `babble_clips` (paths of
    bona fide training clips). A step whose p > 0 but which cannot run fails at construction, so
    nothing is silently skipped.
    """

    def __init__(self, wave_cfg, context: dict | None = None):
        unknown = set(wave_cfg or {}) - set(WAVE_STEPS)
        if unknown:
            raise AugmentError(f"augment.wave: unknown step {sorted(unknown)[0]!r} (known: {', '.join(WAVE_STEPS)})")
        context = context or {}
        self.steps = [(name, float(wave_cfg[name].p), STEP_BUILDERS[name](wave_cfg[name], context))
                      for name in WAVE_STEPS if name in (wave_cfg or {}) and float(wave_cfg[name].p) > 0]

    def __bool__(self) -> bool:
        return bool(self.steps)

    @property
    def names(self) -> list[str]:
        return [name for name, _, _ in self.steps]

    def __call__(self, wave: np.ndarray, label: int, seg: np.ndarray, rng: np.random.Generator) -> Clip:
        """One clip through the chain: -> Clip(wave, label, seg, relabelled)."""
        clip = Clip(np.asarray(wave, np.float32), label, np.asarray(seg))
        for _, p, step in self.steps:
            if rng.random() < p:
                clip = step(clip, rng)
        return clip


def wave_augmenter(wave_cfg, train) -> WaveAugmenter:
    """The per-clip chain of a fold, with what its steps draw on: noise beds and effects for
    `background`, the fold's own bona fide training clips (`train`, a manifest table) for `babble`,
    never validation or test clips."""
    context = {"babble_clips": train.loc[train.label == "bonafide", "audio"].tolist()}
    if wave_cfg.background.p > 0:
        roots = [Path(r) for r in wave_cfg.background.roots]
        context["noise_beds"] = noise_beds(roots) + effect_sounds(roots)
    return WaveAugmenter(wave_cfg, context)
