"""Attacks and the channel chain on real recordings from the Debian packages."""
from __future__ import annotations

import numpy as np
import pytest

from antispoof.config import load_config
from antispoof.spoofbench import sources as src
from antispoof.data.audio import SR, read_audio, rms_db, trim_silence
from antispoof.data.signal import CODECS, add_noise, codec_roundtrip, colored_noise
from antispoof.spoofbench.channel import ChannelSpec, apply_channel, draw_channel
from antispoof.spoofbench.attacks import TTS_SYSTEMS, VOCODERS

ROOTS = load_config("configs/data/spoofbench_full.yaml").sources_roots


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """A real Russian sentence (festvox-ru), trimmed, about 3 s."""
    clip = src.festvox_ru_clips(ROOTS)[2]
    return trim_silence(read_audio(clip.path))[: 3 * SR]


def _lag(a: np.ndarray, b: np.ndarray, max_lag: int = 800) -> int:
    mid = slice(max_lag, len(b) - max_lag)
    corr = [np.dot(a[mid], np.roll(b, k)[mid]) for k in range(-max_lag, max_lag + 1)]
    return int(np.argmax(corr)) - max_lag


@pytest.mark.parametrize("codec", sorted(CODECS))
def test_codec_roundtrip_keeps_length_and_alignment(speech, codec):
    out = codec_roundtrip(speech, codec, kbps=24)
    assert len(out) == len(speech)
    assert _lag(speech, out) == 0, "codec delay must be undone so the 10 ms labels stay exact"
    assert np.corrcoef(speech, out)[0, 1] > 0.9


@pytest.mark.parametrize("snr", [5.0, 20.0, 35.0])
@pytest.mark.parametrize("kind", ["white", "pink", "brown"])
def test_noise_is_mixed_at_the_asked_snr(speech, snr, kind):
    noise = colored_noise(kind, len(speech), np.random.default_rng(1))
    mixed = add_noise(speech, noise, snr)
    measured = rms_db(speech) - rms_db(mixed - speech)
    assert abs(measured - snr) < 0.5


def test_narrowband_channel_removes_energy_above_4khz(speech):
    cfg = load_config("configs/data/spoofbench_full.yaml").channel
    spec = draw_channel(np.random.default_rng(0), "telephone", cfg)
    out = apply_channel(speech, ChannelSpec(**{**spec.to_dict(), "codec": "none"}), [])
    spectrum = np.abs(np.fft.rfft(out)) ** 2
    freqs = np.fft.rfftfreq(len(out), 1 / SR)
    assert spectrum[freqs > 4200].sum() < 1e-3 * spectrum.sum()
    assert len(out) == len(speech)
    assert abs(rms_db(out) - spec.level_db) < 0.5 or np.abs(out).max() > 0.98


def _share_above(wave: np.ndarray, hz: float) -> float:
    spectrum = np.abs(np.fft.rfft(wave)) ** 2
    return float(spectrum[np.fft.rfftfreq(len(wave), 1 / SR) > hz].sum() / spectrum.sum())


def test_full_band_profiles_reach_8khz_and_band_limited_ones_do_not():
    """Above 7.2 kHz: the full-band channels keep a white input's energy there; the band-limited
    ones cut it (their low-pass is at 7 kHz or below)."""
    cfg = load_config("configs/data/spoofbench_full.yaml").channel
    speech = 0.05 * np.random.default_rng(0).standard_normal(2 * SR).astype(np.float32)
    own = _share_above(speech, 7200)
    for seed in range(3):
        for profile in ("full_band", "noisy_full_band", "band_limited"):
            spec = draw_channel(np.random.default_rng(seed), profile, cfg).to_dict()
            out = apply_channel(speech, ChannelSpec(**{**spec, "codec": "none", "noise": "white", "snr_db": 60.0}), [])
            assert spec["profile"] == profile and not spec["narrowband"]
            if profile == "band_limited":
                assert _share_above(out, 7200) < 0.05 * own
            else:
                assert _share_above(out, 7200) > 0.3 * own
    with pytest.raises(ValueError, match="unknown channel profile"):
        draw_channel(np.random.default_rng(0), "studio", cfg)


@pytest.mark.parametrize("name", sorted(VOCODERS))
def test_vocoders_keep_length_and_follow_the_original(speech, name):
    out = VOCODERS[name](speech, np.random.default_rng(0))
    assert len(out) == len(speech) and np.isfinite(out).all()
    assert not np.allclose(out, speech, atol=1e-3), "a vocoder must actually re-synthesise"
    env = lambda x: np.sqrt(np.convolve(x**2, np.ones(800) / 800, "valid"))  # noqa: E731
    assert np.corrcoef(env(out), env(speech))[0, 1] > 0.6, "same words at the same times"


CASES = {"en": "Please enter your password followed by the pound key.", "ru": "Она завела прядь волос за ухо.",
         "ca": "Un cangur amb la cua llarga.", "fr": "Un kangourou qui saute très haut."}


@pytest.mark.parametrize("name", sorted(TTS_SYSTEMS))
def test_tts_systems_speak(name):
    tts = TTS_SYSTEMS[name]
    language = next(lang for lang in CASES if tts.supports(lang))
    wave = tts(CASES[language], language, np.random.default_rng(0))
    assert 0.5 * SR < len(wave) < 10 * SR
    assert rms_db(wave) > -45
