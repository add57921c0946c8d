"""What every attack plugin declares, and the helpers that run external synthesizers.

An attack is a text-to-speech system (speaks a text in a language) or a vocoder (re-synthesises
a bona fide waveform and keeps its length, so any region of a clip can be swapped for its twin
with exact labels, PartialSpoof-style). Each declares what the plan and the data card need to
know without running it: kind, generation (classical / neural), languages, the sample rate it
synthesises at, its cost and the programs it calls. Every attack returns 16 kHz mono float32.
"""
from __future__ import annotations

import io
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf

from antispoof.data.audio import SR, resample, rms_db, set_level

KINDS = ("tts", "vocoder")
# Language code (as the sources tag them) -> espeak-ng voice: espeak-ng speaks these, and phonemises
# them for the neural TTS systems that read IPA.
ESPEAK_VOICES = {
    "en": "en-us", "fr": "fr-fr", "es": "es", "it": "it", "ru": "ru", "ca": "ca", "ro": "ro", "bg": "bg",
    "el": "el", "be": "be", "da": "da", "nl": "nl", "lt": "lt", "ml": "ml", "uk": "uk", "de": "de",
    "pt": "pt", "sv": "sv", "fi": "fi", "gl": "es", "sl": "sl", "sr": "sr", "ga": "ga", "nn": "nb",
}
GENERATIONS = ("classical", "neural")


class SynthesisError(RuntimeError):
    """An external synthesizer failed on one input (message names system and text)."""


@dataclass(frozen=True)
class Attack:
    """One attack's declaration. `cost` is a rough CPU-seconds-per-audio-second figure on one
    thread: the builder renders the costliest clip families first so its pool stays busy."""

    name: str
    kind: str
    generation: str
    languages: tuple[str, ...] | None  # None: any language (vocoders resynthesise whatever they hear)
    native_sr: int
    cost: float
    tools: tuple[str, ...] = ()  # external programs it runs; the builder refuses to start without them

    def __post_init__(self):
        if self.kind not in KINDS or self.generation not in GENERATIONS:
            raise ValueError(f"attack {self.name}: kind must be one of {KINDS} and generation one of {GENERATIONS}")

    def supports(self, language: str) -> bool:
        return self.languages is None or language in self.languages


@dataclass(frozen=True)
class TextToSpeech(Attack):
    """`speak(text, language, speed, rng, what)` -> 16 kHz wave; the speaking rate is drawn here."""

    speak: Callable | None = None

    def __call__(self, text: str, language: str, rng: np.random.Generator) -> np.ndarray:
        what = f"{self.name} ({language}) '{text[:40]}'"
        speed = float(rng.uniform(0.85, 1.15))
        wave = self.speak(text.replace("+", ""), language, speed, rng, what)
        if len(wave) < SR // 20 or rms_db(wave) < -70:
            raise SynthesisError(f"{what}: silent or empty output")
        return wave


@dataclass(frozen=True)
class Vocoder(Attack):
    """`resynthesise(wave, rng)` -> a wave of the input's length and loudness."""

    resynthesise: Callable | None = None

    def __call__(self, wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self.resynthesise(wave, rng)


def run_tool(cmd: list[str], what: str, stdin: bytes | None = None) -> bytes:
    proc = subprocess.run(cmd, input=stdin, capture_output=True, timeout=300)
    if proc.returncode != 0:
        raise SynthesisError(f"{what}: {' '.join(cmd[:3])} failed: {proc.stderr.decode(errors='replace')[:200]}")
    return proc.stdout


def wav_bytes(data: bytes, what: str) -> np.ndarray:
    try:
        wave, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except Exception as err:  # soundfile raises several types for garbage input
        raise SynthesisError(f"{what}: synthesizer produced no audio ({err})") from None
    return resample(wave.mean(axis=1), sr)


def wav_file(path: Path, what: str) -> np.ndarray:
    if not path.exists() or path.stat().st_size < 100:
        raise SynthesisError(f"{what}: synthesizer produced no audio")
    return wav_bytes(path.read_bytes(), what)


def fit_like(wave: np.ndarray, like: np.ndarray) -> np.ndarray:
    """Same length and loudness as the original, so a region can replace its twin exactly."""
    out = np.zeros(len(like), dtype=np.float32)
    out[: min(len(like), len(wave))] = wave[: len(like)]
    return set_level(out, rms_db(like))
