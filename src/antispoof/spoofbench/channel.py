"""One transmission channel for every clip, bona fide or spoof, drawn from the same distribution.

Real recordings carry traces of their channel (telephone band, Ogg, G.722) that synthetic
speech lacks; a detector trained on raw sources learns the channel instead of the spoof.
Every clip therefore goes through: background noise at a random SNR -> band limit (telephone
8 kHz resampling or a random band-pass, which also removes DC offsets) -> an optional soft
limiter -> a crest-factor limiter (its target drawn for every clip from one range) -> a lossy
codec -> DC removal -> a random level. Four profiles span hard to easy channels (see
PROFILES); each class gets the same share of each. The codec output
is re-aligned to its input, so the 10 ms segment labels stay exact.
"""
from __future__ import annotations

import functools
from dataclasses import asdict, dataclass

import numpy as np

from antispoof.data.audio import SR, read_audio, resample, set_level
from antispoof.data.signal import (FULL_BAND_CODECS, NARROWBAND_CODECS, WIDEBAND_CODECS, add_noise, band_pass,
                                    codec_roundtrip, colored_noise, limit_crest, soft_limit)

NOISE_KINDS = ("white", "pink", "brown", "music")
# Channel profiles from hard to easy: a telephone line, a band-limited wideband channel, a clean
# full-band one (to 8 kHz, faint noise) and a full-band one with audible noise.
PROFILES = ("telephone", "band_limited", "full_band", "noisy_full_band")


@dataclass(frozen=True)
class ChannelSpec:
    """Everything random about one clip's channel, fixed at planning time (so it is reproducible)."""

    profile: str
    narrowband: bool
    highpass_hz: float
    cutoff_hz: float
    codec: str
    kbps: int
    noise: str
    snr_db: float
    limiter_percentile: float  # soft-limit peaks above this percentile of |x|; 100 = off
    level_db: float
    seed: int
    crest_db: float = 99.0     # peak-to-RMS ceiling of the crest limiter (99: off, SpoofBench v2)

    def to_dict(self) -> dict:
        return asdict(self)


def draw_channel(rng: np.random.Generator, profile: str, cfg) -> ChannelSpec:
    """Draw a channel of a profile; which profile a clip gets is decided by the caller (balanced per class)."""
    if profile not in PROFILES:
        raise ValueError(f"unknown channel profile {profile!r}; known: {', '.join(PROFILES)}")
    narrowband, full = profile == "telephone", profile in ("full_band", "noisy_full_band")
    codecs = NARROWBAND_CODECS if narrowband else FULL_BAND_CODECS if full else WIDEBAND_CODECS
    if narrowband:
        highpass, cutoff = rng.uniform(250, 350), rng.uniform(3300, 3800)
    elif full:
        highpass, cutoff = rng.uniform(cfg.highpass_min_hz, cfg.highpass_max_hz), rng.uniform(*cfg.full_band_cutoff_hz)
    else:
        highpass, cutoff = rng.uniform(cfg.highpass_min_hz, cfg.highpass_max_hz), rng.uniform(cfg.cutoff_min_hz, cfg.cutoff_max_hz)
    snr = {"full_band": cfg.full_band_snr_db, "noisy_full_band": cfg.noisy_snr_db}.get(
        profile, (cfg.snr_min_db, cfg.snr_max_db))
    return ChannelSpec(
        profile=profile,
        narrowband=narrowband,
        highpass_hz=float(highpass),
        cutoff_hz=float(cutoff),
        codec=str(codecs[rng.integers(len(codecs))]),
        kbps=int(rng.choice([48, 64, 96]) if full else rng.choice([16, 24, 32, 48])),
        noise=str(NOISE_KINDS[rng.integers(len(NOISE_KINDS))]),
        snr_db=float(rng.uniform(*snr)),
        limiter_percentile=float(rng.uniform(99.0, 99.9) if rng.random() < cfg.limiter_prob else 100.0),
        level_db=float(rng.uniform(cfg.level_min_db, cfg.level_max_db)),
        seed=int(rng.integers(2**31)),
        crest_db=float(rng.uniform(*cfg.crest_db)) if cfg.get("crest_db") else 99.0,
    )


@functools.lru_cache(maxsize=8)
def _read_bed(path: str) -> np.ndarray:
    return read_audio(path)


def _music_bed(n: int, beds: list[str], rng: np.random.Generator) -> np.ndarray:
    bed = _read_bed(beds[rng.integers(len(beds))])
    if len(bed) < n:
        bed = np.tile(bed, n // max(1, len(bed)) + 1)
    start = int(rng.integers(0, len(bed) - n + 1))
    return bed[start: start + n]


def apply_channel(wave: np.ndarray, spec: ChannelSpec, noise_beds: list[str]) -> np.ndarray:
    """Run a clip through its channel. Output has exactly the input length."""
    rng = np.random.default_rng(spec.seed)
    kind = spec.noise if (spec.noise != "music" or noise_beds) else "pink"
    noise = _music_bed(len(wave), noise_beds, rng) if kind == "music" else colored_noise(kind, len(wave), rng)
    x = add_noise(wave, noise, spec.snr_db)
    if spec.narrowband:
        x = np.resize(resample(resample(x, SR, 8000), 8000, SR), len(wave))
    x = band_pass(x, spec.highpass_hz, spec.cutoff_hz)
    x = soft_limit(x, spec.limiter_percentile)
    x = limit_crest(x, spec.crest_db)
    x = codec_roundtrip(x, spec.codec, spec.kbps)
    return set_level(x - x.mean(), spec.level_db)
