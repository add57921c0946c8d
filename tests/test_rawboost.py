"""RawBoost (augment/rawboost.py) on a real recording: shapes, seeds, SNRs, shares of samples hit,
oracles for the filters and the combinations, silence, and the wave chain that runs it."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from antispoof.augment import AugmentError, RawBoost, WaveAugmenter
from antispoof.augment.rawboost import Notches, parse_algo, peak_tame
from antispoof.config import load_config
from antispoof.data.audio import SR, read_audio, trim_silence
from antispoof.data.dataset import n_frames
from antispoof.spoofbench import sources as src

ROOTS = load_config("configs/data/spoofbench_full.yaml").sources_roots
ALGOS = ["1", "2", "3", "1+2+3", "1+2", "1+3", "2+3", "1|2", "5"]


@pytest.fixture(scope="module")
def speech_path() -> str:
    return src.festvox_ru_clips(ROOTS)[2].path


@pytest.fixture(scope="module")
def speech(speech_path) -> np.ndarray:
    """A real Russian sentence (festvox-ru), trimmed, 3 s, peak 0.3 (so no step needs taming)."""
    wave = trim_silence(read_audio(speech_path))[: 3 * SR]
    return (wave * (0.3 / np.abs(wave).max())).astype(np.float32)


def _snr_db(clean: np.ndarray, noisy: np.ndarray) -> float:
    clean = clean.astype(np.float64)
    return 10 * np.log10(np.sum(clean**2) / np.sum((noisy.astype(np.float64) - clean) ** 2))


def _level(wave: np.ndarray, hz: float) -> float:
    """Amplitude of the `hz` component of the middle of `wave` (projection on sin and cos)."""
    t = np.arange(len(wave))[SR // 4: -SR // 4] / SR
    part = wave[SR // 4: -SR // 4].astype(np.float64)
    return 2 * abs(np.mean(part * np.exp(-2j * np.pi * hz * t)))


@pytest.mark.parametrize("algo", ALGOS)
def test_every_algo_keeps_length_and_dtype(speech, algo):
    out = RawBoost(algo=algo)(speech, np.random.default_rng(0))
    assert out.dtype == np.float32 and out.shape == speech.shape
    assert np.isfinite(out).all() and np.abs(out).max() <= 1.0 + 1e-6
    assert not np.allclose(out, speech), f"{algo} did nothing"
    assert np.corrcoef(out, speech)[0, 1] > 0.8, "still the same speech, in place"


def test_a_seed_gives_one_wave():
    wave = np.random.default_rng(9).uniform(-0.5, 0.5, SR).astype(np.float32)
    boost = RawBoost(algo="1+2+3")
    first = boost(wave, np.random.default_rng(4))
    np.testing.assert_array_equal(first, boost(wave, np.random.default_rng(4)))
    assert not np.array_equal(first, boost(wave, np.random.default_rng(5)))


def test_stationary_noise_is_added_at_an_snr_in_range(speech):
    snrs = [_snr_db(speech, RawBoost(algo="3")(speech, np.random.default_rng(k))) for k in range(12)]
    assert all(10 - 0.01 <= s <= 40 + 0.01 for s in snrs), snrs
    assert max(snrs) - min(snrs) > 10, "the SNR is drawn over the range"
    fixed = RawBoost(algo="3", min_snr_db=17.0, max_snr_db=17.0)
    assert _snr_db(speech, fixed(speech, np.random.default_rng(1))) == pytest.approx(17.0, abs=0.01)


def test_stationary_noise_is_coloured_by_notches():
    """One notch at 1 kHz on the noise: next to no noise at 1 kHz, plenty at 3 kHz."""
    boost = RawBoost(algo="3", bands=1, min_centre_hz=1000, max_centre_hz=1000, min_bw_hz=400, max_bw_hz=400,
                     min_coeffs=201, max_coeffs=201, min_snr_db=0, max_snr_db=0)
    tone = np.sin(2 * np.pi * 5000 * np.arange(4 * SR) / SR).astype(np.float32)
    noise = boost(tone, np.random.default_rng(0)).astype(np.float64) - tone
    power = np.abs(np.fft.rfft(noise)) ** 2
    hz = np.fft.rfftfreq(len(noise), 1 / SR)
    notch, side = power[abs(hz - 1000) < 50].mean(), power[abs(hz - 3000) < 50].mean()
    assert 10 * np.log10(side / notch) > 20


def test_impulsive_noise_hits_its_share_of_samples(speech):
    exact = RawBoost(algo="2", min_percent=10.0, max_percent=10.0)
    out = exact(speech, np.random.default_rng(3))
    hit = out != speech
    assert hit.mean() == pytest.approx(0.10 * np.mean(speech != 0), abs=0.002)  # x = 0 stays 0
    assert (np.abs(out - speech)[hit] <= 2.0 * np.abs(speech[hit]) * (1 + 1e-6)).all(), "at most g_sd * |x|"
    shares = [np.mean(RawBoost(algo="2")(speech, np.random.default_rng(k)) != speech) for k in range(12)]
    assert max(shares) <= 0.10 and max(shares) - min(shares) > 0.03, "0..10 % drawn per clip"


def test_loud_clips_are_tamed_to_peak_one(speech):
    loud = speech / np.abs(speech).max()
    for algo in ("1", "2"):
        out = RawBoost(algo=algo, min_percent=10.0, max_percent=10.0, min_gain_db=6.0, max_gain_db=6.0)(
            loud, np.random.default_rng(0))
        assert np.abs(out).max() == pytest.approx(1.0, abs=1e-6)


def test_convolutive_noise_oracles(speech):
    """No notches (bands=0): order 1 is x itself; order 2 adds x**2 at exactly -bias dB; both less DC."""
    x = speech.astype(np.float64)
    linear = RawBoost(algo="1", orders=1, bands=0)(speech, np.random.default_rng(0))
    np.testing.assert_allclose(linear, x - x.mean(), atol=1e-6)
    square = RawBoost(algo="1", orders=2, bands=0, min_bias_db=6.0, max_bias_db=6.0)(speech, np.random.default_rng(0))
    y = x + 10 ** (-6 / 20) * x**2
    np.testing.assert_allclose(square, y - y.mean(), atol=1e-6)


def test_convolutive_notch_removes_its_band_in_place():
    """A 1 kHz notch takes a 1 kHz tone down by > 20 dB and lets 3 kHz through at 0 dB, undelayed."""
    t = np.arange(2 * SR) / SR
    low, high = 0.3 * np.sin(2 * np.pi * 1000 * t), 0.3 * np.sin(2 * np.pi * 3000 * t)
    boost = RawBoost(algo="1", orders=1, bands=1, min_centre_hz=1000, max_centre_hz=1000, min_bw_hz=400,
                     max_bw_hz=400, min_coeffs=201, max_coeffs=201)
    out = boost((low + high).astype(np.float32), np.random.default_rng(0))
    assert 20 * np.log10(_level(out, 1000) / 0.3) < -20
    assert _level(out, 3000) == pytest.approx(0.3, rel=0.05)
    mid = slice(SR // 4, -SR // 4)
    assert np.corrcoef(out[mid], high[mid])[0, 1] > 0.99, "the passband keeps its timing"


def test_notches_are_cascaded():
    """Three equal notches in cascade: the response is one notch's cubed, the taps 3 * 51 - 2."""
    same = dict(min_centre_hz=1000, max_centre_hz=1000, min_bw_hz=400, max_bw_hz=400, min_coeffs=51, max_coeffs=51)
    one = Notches(bands=1, **same).draw(np.random.default_rng(0))
    three = Notches(bands=3, **same).draw(np.random.default_rng(0))
    assert len(one) == 51 and len(three) == 151
    np.testing.assert_allclose(np.abs(np.fft.rfft(three, 8192)), np.abs(np.fft.rfft(one, 8192)) ** 3, atol=1e-9)
    assert np.abs(np.fft.rfft(Notches().draw(np.random.default_rng(1)), 8192)).max() == pytest.approx(1.0)


def test_series_and_parallel_are_made_of_the_single_steps(speech):
    rng = np.random.default_rng(7)
    first = RawBoost(algo="1")(speech, rng)
    np.testing.assert_allclose(RawBoost(algo="1+2")(speech, np.random.default_rng(7)),
                               RawBoost(algo="2")(first, rng), atol=1e-6)
    rng = np.random.default_rng(8)
    one, two = RawBoost(algo="1")(speech, rng), RawBoost(algo="2")(speech, rng)
    np.testing.assert_allclose(RawBoost(algo="1|2")(speech, np.random.default_rng(8)),
                               peak_tame((one.astype(np.float64) + two) / 2), atol=1e-6)


def test_silence_in_silence_out():
    for algo in ALGOS:
        out = RawBoost(algo=algo)(np.zeros(SR, np.float32), np.random.default_rng(0))
        assert out.dtype == np.float32 and (out == 0).all(), algo
    assert RawBoost()(np.zeros(0, np.float32), np.random.default_rng(0)).shape == (0,)


def test_algo_names_and_bad_settings():
    assert parse_algo("1+2") == ((1, 2),) and parse_algo(3) == ((3,),) and parse_algo("1|2") == ((1,), (2,))
    assert parse_algo("4") == ((1, 2, 3),) and parse_algo("8") == ((1,), (2,))
    for bad in ("1+4", "", "lnl", "1++2"):
        with pytest.raises(ValueError, match="algo"):
            parse_algo(bad)
    with pytest.raises(ValueError, match="min_snr_db"):
        RawBoost(min_snr_db=30.0, max_snr_db=20.0)
    with pytest.raises(ValueError, match="centres"):
        RawBoost(max_centre_hz=9000.0)
    cfg = load_config("augment/rawboost").wave
    cfg.rawboost.algo = "9"
    with pytest.raises(AugmentError, match="augment.wave.rawboost"):
        WaveAugmenter(cfg)


def test_the_wave_chain_runs_it_from_config(speech):
    seg = np.ones(n_frames(len(speech)), np.int64)
    chain = WaveAugmenter(load_config("augment/rawboost").wave)
    assert chain.names == ["rawboost"]
    out = chain(speech, 1, seg, np.random.default_rng(0))
    assert len(out.wave) == len(speech) and not np.allclose(out.wave, speech)
    assert out.label == 1 and not out.relabelled
    np.testing.assert_array_equal(out.seg, seg)
    assert not WaveAugmenter(load_config("augment/rawboost", ["wave.rawboost.p=0"]).wave)
    assert load_config("augment/none").wave.rawboost.p == 0.0


def test_off_rawboost_leaves_other_chains_as_they_were(speech):
    """Configs written before RawBoost (no `rawboost` key) and p = 0 give the same clip."""
    seg = np.ones(n_frames(len(speech)), np.int64)
    with_key = load_config("augment/views").wave
    without = load_config("augment/views").wave
    del without["rawboost"]
    a = WaveAugmenter(with_key)(speech, 1, seg, np.random.default_rng(5))
    b = WaveAugmenter(without)(speech, 1, seg, np.random.default_rng(5))
    np.testing.assert_array_equal(a.wave, b.wave)


def test_cached_views_can_use_it(speech_path):
    """Frozen-encoder views (embed.views_augment=rawboost) go through the same chain and pass its
    length-and-label check."""
    from antispoof.inference.states import _view_wave

    wave = read_audio(speech_path)
    row = SimpleNamespace(audio=speech_path, view=1, utt_id="fvru", label="bonafide", duration=len(wave) / SR)
    view = _view_wave(row, WaveAugmenter(load_config("augment/rawboost").wave), {}, seed=0)
    assert view.shape == wave.shape and not np.allclose(view, wave)
