"""Audio I/O and the few signal helpers the data builder needs (16 kHz mono float32).

soundfile reads WAV/FLAC/Ogg Vorbis; everything else (G.722 telephone prompts, Opus, MP3) goes
through PyAV. torchaudio is deliberately not used for loading: 2.11 needs torchcodec for that.
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from antispoof.utils import atomic_path

SR = 16000
# Containers soundfile cannot read; PyAV (FFmpeg's libraries, in-process) decodes them.
PYAV_FORMATS = {".g722": "g722", ".opus": "ogg", ".mp3": "mp3", ".m4a": "mp4", ".aac": "aac"}


class AudioError(ValueError):
    """A clip cannot be read or is unusable (message names the file)."""


def resample(wave: np.ndarray, sr_in: int, sr_out: int = SR) -> np.ndarray:
    """Polyphase resampling with an exact rational ratio (anti-aliased, deterministic)."""
    if sr_in == sr_out:
        return wave.astype(np.float32, copy=False)
    ratio = Fraction(sr_out, sr_in).limit_denominator(1000)
    return resample_poly(wave, ratio.numerator, ratio.denominator).astype(np.float32)


def pyav_chunks(path, container: str | None = None, sr: int = SR):
    """Decoded mono float32 chunks at `sr` of an FFmpeg-readable file (path or file object), as
    they come out of the decoder: what a long recording is checked on without holding all of it."""
    import av

    resampler = av.AudioResampler(format="flt", layout="mono", rate=sr)
    produced = False
    try:
        with av.open(path if hasattr(path, "read") else str(path), "r", format=container) as inp:
            for frame in inp.decode(audio=0):
                for out in resampler.resample(frame):
                    produced = True
                    yield out.to_ndarray().reshape(-1).astype(np.float32)
        for out in resampler.resample(None):
            produced = True
            yield out.to_ndarray().reshape(-1).astype(np.float32)
    except (av.error.FFmpegError, IndexError, ValueError) as err:
        raise AudioError(f"{path}: cannot decode it ({err})") from None
    if not produced:
        raise AudioError(f"{path}: no audio in it")


def pyav_decode(path, container: str | None = None, sr: int = SR) -> np.ndarray:
    """Decode an FFmpeg-readable file (path or in-memory file object) to mono float32 at `sr`."""
    return np.concatenate(list(pyav_chunks(path, container, sr)))


def _missing_or_empty(path: Path) -> None:
    if not path.is_file():
        raise AudioError(f"{path}: audio file not found")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: empty file (0 bytes)")


def read_audio(path: str | Path, sr: int = SR) -> np.ndarray:
    """Read a file as mono float32 at `sr` (channels averaged)."""
    path = Path(path)
    _missing_or_empty(path)
    suffix = path.suffix.lower()
    if suffix in PYAV_FORMATS:
        return pyav_decode(path, PYAV_FORMATS[suffix], sr)
    try:
        wave, file_sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as err:
        try:
            return pyav_decode(path, sr=sr)
        except AudioError:
            raise AudioError(f"{path}: not a readable audio file ({_first_line(err)})") from None
    return resample(wave.mean(axis=1), file_sr, sr)


def _first_line(err: Exception) -> str:
    """libsndfile's message without the path it repeats: `Error opening '...': Format not recognised.`"""
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text.split(": ", 1)[1] if text.startswith("Error opening") and ": " in text else text


def iter_blocks(path: str | Path, block_s: float = 30.0):
    """(samples [n, channels] float32 at the file's own rate, rate) blocks of at most `block_s`
    seconds, so a check of an hour-long recording holds one block in memory, not the hour."""
    path = Path(path)
    _missing_or_empty(path)
    if path.suffix.lower() not in PYAV_FORMATS:
        try:
            fh = sf.SoundFile(str(path))
        except (sf.LibsndfileError, RuntimeError) as err:
            fh, error = None, err
        if fh is not None:
            with fh:
                size = max(1, int(block_s * fh.samplerate))
                while True:
                    block = fh.read(size, dtype="float32", always_2d=True)
                    if not len(block):
                        return
                    yield block, fh.samplerate
            return
        container = None
    else:
        container, error = PYAV_FORMATS[path.suffix.lower()], None
    try:  # FFmpeg formats (and what soundfile cannot open, which may be one under another suffix)
        pending, size = [], int(block_s * SR)
        for chunk in pyav_chunks(path, container, SR):
            pending.append(chunk)
            if sum(map(len, pending)) >= size:
                yield np.concatenate(pending)[:, None], SR
                pending = []
        if pending:
            yield np.concatenate(pending)[:, None], SR
    except AudioError:
        if error is None:
            raise
        raise AudioError(f"{path}: not a readable audio file ({_first_line(error)})") from None


def write_audio(path: str | Path, wave: np.ndarray, sr: int = SR) -> None:
    """Write 16-bit FLAC/WAV atomically; clipping is explicit, never wrap-around."""
    path = Path(path)
    with atomic_path(path) as tmp:
        sf.write(str(tmp), np.clip(wave, -1.0, 1.0), sr, subtype="PCM_16",
                 format=path.suffix.lstrip(".").upper())


def frame_energy_db(wave: np.ndarray, frame: int = 160) -> np.ndarray:
    """RMS energy per 10 ms frame in dB (full scale = 0 dB)."""
    n = max(1, len(wave) // frame)
    frames = wave[: n * frame].reshape(n, frame) if len(wave) >= frame else wave[None, :]
    return 10 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-12)


def trim_silence(wave: np.ndarray, top_db: float = 40.0, keep_s: float = 0.1,
                 max_pause_s: float = 0.6, sr: int = SR) -> np.ndarray:
    """Trim leading/trailing silence and shorten inner pauses longer than `max_pause_s`.

    Narrations and prompts come with very different amounts of silence; if the bona fide
    class kept its long pauses, the silence ratio alone would give the class away.
    """
    frame = sr // 100
    voiced = frame_energy_db(wave, frame)
    voiced = voiced > voiced.max() - top_db
    if not voiced.any():
        return wave
    first, last = np.flatnonzero(voiced)[[0, -1]]
    keep = np.zeros(len(voiced), dtype=bool)
    pad = int(keep_s * 100)
    keep[max(0, first - pad): last + pad + 1] = True
    max_pause = int(max_pause_s * 100)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], (~voiced[first:last + 1]).astype(int), [0]])))
    for start, end in zip(edges[::2] + first, edges[1::2] + first):
        if end - start > max_pause:
            keep[start + max_pause // 2: end - (max_pause - max_pause // 2)] = False
    frames = wave[: len(voiced) * frame].reshape(len(voiced), frame)
    return frames[keep].reshape(-1).astype(np.float32)


def rms_db(wave: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(wave.astype(np.float64) ** 2) + 1e-12))


def set_level(wave: np.ndarray, target_db: float) -> np.ndarray:
    """Scale to a target RMS level in dBFS, backing off so the peak stays below 0.99."""
    gain = 10 ** ((target_db - rms_db(wave)) / 20)
    peak = np.abs(wave).max() * gain
    if peak > 0.99:
        gain *= 0.99 / peak
    return (wave * gain).astype(np.float32)
