"""The neural attack plugins (Piper VITS, HiFi-GAN copy-synthesis) on real recordings, the neural
render cache, and the plan's draw of neural attacks."""
from __future__ import annotations

import numpy as np
import pytest
from omegaconf import OmegaConf

from antispoof.config import load_config
from antispoof.data.audio import SR, read_audio, rms_db, trim_silence
from antispoof.spoofbench import sources as src
from antispoof.spoofbench.attacks import ATTACKS, TTS_SYSTEMS, VOCODERS, hifigan, set_render_cache
from antispoof.spoofbench.plan import generation_of, pick_attack

ROOTS = load_config("configs/data/spoofbench_full.yaml").sources_roots


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """A real Russian sentence (festvox-ru), trimmed, about 2 s."""
    return trim_silence(read_audio(src.festvox_ru_clips(ROOTS)[2].path))[: 2 * SR]


@pytest.fixture(autouse=True)
def no_cache():
    set_render_cache(None)
    yield
    set_render_cache(None)


def test_registry_declares_the_neural_families():
    assert {n for n, a in ATTACKS.items() if a.generation == "neural"} == {"tts_piper", "voc_hifigan", "tts_kokoro"}
    assert ATTACKS["voc_hifigan"].languages is None and ATTACKS["tts_piper"].supports("fr")
    assert generation_of("voc_world+tts_piper") == "classical+neural" and generation_of("bonafide") == "bonafide"


def test_hifigan_copy_is_a_close_deterministic_resynthesis(speech):
    out = VOCODERS["voc_hifigan"](speech, np.random.default_rng(0))
    again = VOCODERS["voc_hifigan"](speech, np.random.default_rng(1))
    np.testing.assert_array_equal(out, again)  # deterministic, whatever the rng: the cache relies on it
    assert len(out) == len(speech) and abs(rms_db(out) - rms_db(speech)) < 0.5
    x = hifigan.log_mel(hifigan.resample(speech, SR, hifigan.HIFIGAN_SR))
    y = hifigan.log_mel(hifigan.resample(out, SR, hifigan.HIFIGAN_SR))
    loud = x > x.max() - 6  # natural log: the loudest 50 dB, where the copy must follow the original
    distance_db = float((20 / np.log(10)) * (x - y).abs()[loud].mean())
    assert distance_db < 6, distance_db
    assert np.abs(out - speech).mean() > 1e-3, "the waveform itself is new (phase is re-generated)"


def test_piper_speaks_english_and_other_languages_deterministically():
    piper = TTS_SYSTEMS["tts_piper"]
    en = piper("Please enter your password.", "en", np.random.default_rng(3))
    np.testing.assert_array_equal(en, piper("Please enter your password.", "en", np.random.default_rng(3)))
    slower = piper("Please enter your password.", "en", np.random.default_rng(4))
    assert len(slower) != len(en), "the speaking rate varies with the draw"
    fr = piper("Un kangourou qui saute très haut.", "fr", np.random.default_rng(0))
    for wave in (en, fr):
        assert 0.8 * SR < len(wave) < 6 * SR and rms_db(wave) > -40


def test_neural_renders_are_cached_and_classical_ones_are_not(speech, tmp_path, monkeypatch):
    set_render_cache(tmp_path)
    first = VOCODERS["voc_hifigan"](speech, np.random.default_rng(0))
    files = list(tmp_path.rglob("*.npy"))
    assert len(files) == 1 and files[0].parent.parent.name == "voc_hifigan"

    def no_network():
        raise AssertionError("the cached render must not run the generator")

    monkeypatch.setattr(hifigan, "generator", no_network)
    np.testing.assert_array_equal(VOCODERS["voc_hifigan"](speech, np.random.default_rng(0)), first)
    VOCODERS["voc_world"](speech, np.random.default_rng(0))
    assert len(list(tmp_path.rglob("*.npy"))) == 1
    files[0].write_bytes(b"torn")  # a killed worker's half file is rendered again, not returned
    monkeypatch.undo()
    np.testing.assert_array_equal(VOCODERS["voc_hifigan"](speech, np.random.default_rng(0)), first)


@pytest.mark.parametrize("share", [0.0, 0.35, 1.0])
def test_neural_share_of_the_attack_draw(share):
    cfg = OmegaConf.create({"attacks": {"neural_share": share}})
    names = ["voc_world", "voc_lpc", "voc_mlsa", "voc_hifigan"]
    rng = np.random.default_rng(0)
    draws = [pick_attack(names, cfg, rng) for _ in range(4000)]
    assert abs(np.mean([d == "voc_hifigan" for d in draws]) - share) < 0.03
    classical = [d for d in draws if d != "voc_hifigan"]
    if classical:  # uniform within the classical ones
        counts = np.unique(classical, return_counts=True)[1]
        assert counts.min() > 0.8 * counts.max()
    assert pick_attack(["voc_world"], cfg, rng) == "voc_world"  # one generation only: it is drawn


def test_a_hung_synthesizer_is_a_synthesis_error_not_a_crash():
    """A tool that never answers leaves its clip out (SynthesisError) instead of killing a build."""
    from antispoof.spoofbench.attacks.base import SynthesisError, run_tool

    with pytest.raises(SynthesisError, match="gave no result within 1 s"):
        run_tool(["sleep", "5"], "test sleeper", timeout=1)
