"""Signal primitives shared by SpoofBench's channel model and the wave augmenter: lossy codec
round trips (re-aligned to their input so 10 ms labels stay exact), noise mixed at an exact SNR,
band limits and a soft limiter. Everything works on 16 kHz mono float32 and keeps its length.
"""
from __future__ import annotations

import functools
import io
import subprocess

import av
import numpy as np
from scipy.signal import butter, fftconvolve, sosfiltfilt

from antispoof.data.audio import SR, AudioError, pyav_decode, resample, rms_db

# codec name -> (sample rate it runs at, FFmpeg encoder, container); in-process via PyAV, except
# encoders PyAV's own FFmpeg lacks (GSM), which go through the ffmpeg program.
CODECS = {
    "none": (SR, None, None),
    "mulaw": (8000, "pcm_mulaw", "wav"),
    "alaw": (8000, "pcm_alaw", "wav"),
    "g726": (8000, "g726", "wav"),
    "g722": (SR, "g722", "wav"),
    "opus": (SR, "libopus", "ogg"),
    "mp3": (SR, "libmp3lame", "mp3"),
    "aac": (SR, "aac", "adts"),
    "gsm": (8000, "libgsm", "gsm"),
}
NARROWBAND_CODECS = ("none", "mulaw", "alaw", "g726")
WIDEBAND_CODECS = ("none", "g722", "opus", "mp3", "aac")
FULL_BAND_CODECS = ("none", "none", "opus", "mp3")  # at 48 kbit/s or more: transparent to 8 kHz

def colored_noise(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """White, pink (1/f) or brown (1/f^2) noise shaped in the frequency domain."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.maximum(np.fft.rfftfreq(n, 1 / SR), 20.0)
    exponent = {"white": 0.0, "pink": 0.5, "brown": 1.0}[kind]
    return np.fft.irfft(spectrum / freqs**exponent, n).astype(np.float32)


def add_noise(wave: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """Mix noise at an exact SNR measured over the whole clip."""
    gain = 10 ** ((rms_db(wave) - rms_db(noise) - snr_db) / 20)
    return (wave + gain * noise).astype(np.float32)


def band_pass(wave: np.ndarray, low_hz: float, high_hz: float, sr: int = SR) -> np.ndarray:
    """Zero-phase band limit (no delay, so labels stay aligned); also removes any DC offset."""
    sos = butter(8, [low_hz, high_hz], btype="band", fs=sr, output="sos")
    return sosfiltfilt(sos, wave).astype(np.float32)


def soft_limit(wave: np.ndarray, percentile: float) -> np.ndarray:
    """tanh limiter above a percentile of |x|: evens out crest factors, as broadcast chains do."""
    if percentile >= 100:
        return wave
    knee = max(float(np.percentile(np.abs(wave), percentile)), 1e-6)
    return (knee * np.tanh(wave / knee)).astype(np.float32)


def limit_crest(wave: np.ndarray, crest_db: float, iterations: int = 24) -> np.ndarray:
    """tanh limiter whose knee is chosen (bisection) so the clip's crest factor (peak over RMS)
    is at most `crest_db`. Recordings, synthesizers and vocoders leave very different crest
    factors (bona fide speech is often compressed at production); drawing the target from one
    distribution for every clip removes that cue without touching anything below the peaks."""
    x = wave.astype(np.float64)
    rms = np.sqrt(np.mean(x**2))
    peak = np.abs(x).max()
    if rms <= 0 or 20 * np.log10(peak / rms) <= crest_db:
        return wave.astype(np.float32)

    def crest(knee: float) -> float:
        y = knee * np.tanh(x / knee)
        return 20 * np.log10(np.abs(y).max() / np.sqrt(np.mean(y**2)))

    low, high = 1e-3 * rms, peak  # crest(knee) rises with the knee
    for _ in range(iterations):
        mid = np.sqrt(low * high)
        low, high = (mid, high) if crest(mid) < crest_db else (low, mid)
    return (low * np.tanh(x / low)).astype(np.float32)


def align_to(out: np.ndarray, ref: np.ndarray, max_lag: int = 2400) -> np.ndarray:
    """Undo codec delay/priming: shift `out` by the lag of best cross-correlation, then fit length."""
    n = len(ref)
    corr = fftconvolve(out[: n + max_lag], ref[::-1], mode="full")
    centre = n - 1
    window = corr[max(0, centre - max_lag): centre + max_lag + 1]
    lag = int(np.argmax(window)) - min(centre, max_lag)
    shifted = out[lag:] if lag >= 0 else np.concatenate([np.zeros(-lag, np.float32), out])
    fitted = np.zeros(n, dtype=np.float32)
    fitted[: min(n, len(shifted))] = shifted[:n]
    return fitted


def _encode(x: np.ndarray, rate: int, encoder: str, container: str, kbps: int) -> bytes:
    buf = io.BytesIO()
    with av.open(buf, "w", format=container) as out:
        stream = out.add_stream(encoder, rate=rate, layout="mono")
        if encoder in ("libopus", "libmp3lame", "aac"):
            stream.bit_rate = kbps * 1000
        frame = av.AudioFrame.from_ndarray((np.clip(x, -1, 1) * 32767).astype(np.int16)[None, :],
                                           format="s16", layout="mono")
        frame.sample_rate = rate
        resampler = av.AudioResampler(format=stream.codec_context.format.name, layout="mono", rate=rate)
        for converted in resampler.resample(frame):
            for packet in stream.encode(converted):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


@functools.lru_cache(maxsize=None)
def _pyav_can_encode(encoder: str) -> bool:
    try:
        av.codec.Codec(encoder, "w")
        return True
    except (av.error.FFmpegError, ValueError):
        return False


def _encode_with_ffmpeg(x: np.ndarray, rate: int, encoder: str, container: str) -> bytes:
    """The ffmpeg program as an encoder (16-bit PCM in, the container's bytes out)."""
    pcm = (np.clip(x, -1, 1) * 32767).astype("<i2").tobytes()
    cmd = ["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "s16le", "-ar", str(rate), "-ac", "1", "-i", "pipe:0",
           "-c:a", encoder, "-f", container, "pipe:1"]
    try:
        done = subprocess.run(cmd, input=pcm, capture_output=True, check=False)
    except FileNotFoundError:
        raise AudioError(f"encoder {encoder} needs the ffmpeg program (apt-get install ffmpeg)") from None
    if done.returncode:
        raise AudioError(f"ffmpeg -c:a {encoder}: {done.stderr.decode(errors='replace').strip()[:200]}")
    return done.stdout


def codec_roundtrip(wave: np.ndarray, codec: str, kbps: int = 32) -> np.ndarray:
    """Encode and decode in memory at the codec's own rate, then re-align to the input."""
    rate, encoder, container = CODECS[codec]
    if encoder is None:
        return wave
    try:
        narrow = resample(wave, SR, rate)
        data = (_encode(narrow, rate, encoder, container, kbps) if _pyav_can_encode(encoder)
                else _encode_with_ffmpeg(narrow, rate, encoder, container))
        decoded = pyav_decode(io.BytesIO(data), container=container, sr=rate)
    except (av.error.FFmpegError, AudioError) as err:
        raise AudioError(f"codec {codec}: {err}") from None
    return align_to(resample(decoded, rate, SR), wave)
