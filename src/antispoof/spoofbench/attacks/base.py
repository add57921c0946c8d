"""What every attack plugin declares, and the helpers that run external synthesizers.

An attack is a text-to-speech system (speaks a text in a language) or a vocoder (re-synthesises
a bona fide waveform and keeps its length, so any region of a clip can be swapped for its twin
with exact labels, PartialSpoof-style). Each declares what the plan and the data card need to
know without running it: kind, generation (classical / neural), languages, the sample rate it
synthesises at, its cost and the programs it calls. Every attack returns 16 kHz mono float32.
"""
from __future__ import annotations

import hashlib
import io
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf

from antispoof.data.audio import SR, resample, rms_db, set_level
from antispoof.utils import atomic_path

KINDS = ("tts", "vocoder")
# Language code (as the sources tag them) -> espeak-ng voice: espeak-ng speaks these, and phonemises
# them for the neural TTS systems that read IPA.
ESPEAK_VOICES = {
    "en": "en-us", "fr": "fr-fr", "es": "es", "it": "it", "ru": "ru", "ca": "ca", "ro": "ro", "bg": "bg",
    "el": "el", "be": "be", "da": "da", "nl": "nl", "lt": "lt", "ml": "ml", "uk": "uk", "de": "de",
    "pt": "pt", "sv": "sv", "fi": "fi", "gl": "es", "sl": "sl", "sr": "sr", "ga": "ga", "nn": "nb",
}
GENERATIONS = ("classical", "neural")
_RENDER_CACHE: list[Path] = []  # the neural render cache of this process (set_render_cache)


def set_render_cache(folder: str | Path | None) -> None:
    """Keep every neural render under `folder` (None: no cache). Neural attacks cost 10-100x a
    classical one, and their output is a pure function of their input (text, language and rate,
    or the waveform), so a rebuild with other settings (seed, channel, shares) or after a
    `--force` reuses them instead of running the networks again."""
    _RENDER_CACHE.clear()
    if folder is not None:
        _RENDER_CACHE.append(Path(folder))


def _cached(attack: "Attack", key: bytes, make: Callable[[], np.ndarray]) -> np.ndarray:
    if attack.generation != "neural" or not _RENDER_CACHE:
        return make()
    digest = hashlib.sha256(attack.name.encode() + b"\0" + key).hexdigest()
    path = _RENDER_CACHE[0] / attack.name / digest[:2] / f"{digest}.npy"
    try:
        return np.load(path)
    except (OSError, ValueError):  # absent, or torn by a killed worker: render it (again)
        pass
    wave = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, wave.astype(np.float32))
    return wave


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
        text = text.replace("+", "")
        wave = _cached(self, f"{text}\0{language}\0{speed:.6f}".encode(),
                       lambda: self.speak(text, language, speed, rng, what))
        if len(wave) < SR // 20 or rms_db(wave) < -70:
            raise SynthesisError(f"{what}: silent or empty output")
        return wave


@dataclass(frozen=True)
class Vocoder(Attack):
    """`resynthesise(wave, rng)` -> a wave of the input's length and loudness. A neural vocoder
    must not draw from `rng`: its renders are cached by the input waveform alone."""

    resynthesise: Callable | None = None

    def __call__(self, wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        wave = np.ascontiguousarray(wave, dtype=np.float32)
        return _cached(self, wave.tobytes(), lambda: self.resynthesise(wave, rng))


def run_tool(cmd: list[str], what: str, stdin: bytes | None = None, timeout: float = 300) -> bytes:
    """A synthesizer's stdout. A failure or a hang (timeout) of one input is a SynthesisError: the
    clip is left out and listed in the data card, and the hour-long build goes on."""
    try:
        proc = subprocess.run(cmd, input=stdin, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise SynthesisError(f"{what}: {' '.join(cmd[:2])} gave no result within {timeout:.0f} s") from None
    if proc.returncode != 0:
        raise SynthesisError(f"{what}: {' '.join(cmd[:3])} failed: {proc.stderr.decode(errors='replace')[:200]}")
    return proc.stdout


def espeak_ipa(text: str, language: str, what: str) -> str:
    """espeak-ng's IPA for a text, clauses joined by spaces (what the neural TTS systems read).
    The text goes through stdin: as an argument, one starting with a dash is taken for an option."""
    out = run_tool(["espeak-ng", "-q", "--ipa", "-v", ESPEAK_VOICES[language], "--stdin"], what, stdin=text.encode())
    return " ".join(out.decode().split())


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
