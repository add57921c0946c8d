"""Classical vocoders: length-preserving resynthesis of a bona fide waveform (WORLD, Griffin-Lim,
MLSA, LPC, Codec2), so a region of a clip can be replaced by its twin with exact labels."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from antispoof.data.audio import SR, resample
from antispoof.spoofbench.attacks.base import SynthesisError, Vocoder, fit_like, run_tool


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
    return fit_like(pyworld.synthesize(f0 * rng.uniform(0.97, 1.03), sp, ap, SR).astype(np.float32), wave)


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
    return fit_like(gl(linear).numpy(), wave)


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
    return fit_like(out.astype(np.float32), wave)


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
    return fit_like(out.astype(np.float32), wave)


CODEC2_MODES = ("3200", "1600", "1300", "700C")


def codec2(wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Codec2 (Rowe) at a random low bit rate: a parametric speech codec = vocoded speech."""
    mode = CODEC2_MODES[rng.integers(len(CODEC2_MODES))]
    pcm = (np.clip(resample(wave, SR, 8000), -1, 1) * 32767).astype("<i2").tobytes()
    with tempfile.TemporaryDirectory() as tmp:
        raw, bits, dec = (os.path.join(tmp, n) for n in ("in.raw", "c.bit", "out.raw"))
        Path(raw).write_bytes(pcm)
        run_tool(["c2enc", mode, raw, bits], f"codec2 {mode}")
        run_tool(["c2dec", mode, bits, dec], f"codec2 {mode}")
        out = np.frombuffer(Path(dec).read_bytes(), dtype="<i2").astype(np.float32) / 32768
    return fit_like(resample(out, 8000, SR), wave)


def _classical(name: str, resynthesise, cost: float, native_sr: int = SR, tools=()) -> Vocoder:
    return Vocoder(name, "vocoder", "classical", None, native_sr, cost, tools, resynthesise=resynthesise)


# Costs measured on 2.7 s of speech (CPU s per audio s, one thread).
ATTACKS = (
    _classical("voc_world", world, 0.08),
    _classical("voc_griffinlim", griffin_lim, 0.03),
    _classical("voc_mlsa", mlsa, 0.05),
    _classical("voc_lpc", lpc, 0.02),
    _classical("voc_codec2", codec2, 0.01, native_sr=8000, tools=("c2enc", "c2dec")),
)
