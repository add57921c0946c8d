"""60-dim LFCC front end of the NII / PartialSpoof countermeasures, computed on the batch's device.

20 linear-filter cepstra (c0 replaced by the log frame energy) + delta + delta-delta, from a
512-point FFT of a 20 ms Hann window shifted by 10 ms, after 0.97 pre-emphasis; no VAD and no
normalisation (PartialSpoof MTL paper, section 5.2).

Padding never changes a clip's features: every frame a clip owns (lengths // hop + 1 of them)
is exactly what the clip alone gives, so batching clips of different lengths is harmless.
"""
from __future__ import annotations

import torch
import torchaudio
from torch import nn


def hold_last(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Repeat each clip's last valid frame over its padding ([B, C, T], lengths in frames).

    compute_deltas pads a sequence by repeating its edge frames; doing the same at every clip's
    own end makes the deltas of its valid frames identical to those of the clip alone.
    """
    t = torch.arange(x.shape[-1], device=x.device)
    index = torch.minimum(t[None, :], (lengths - 1).clamp_min(0)[:, None])
    return x.gather(-1, index[:, None, :].expand(-1, x.shape[1], -1))


class LFCC(nn.Module):
    """wave [B, S] + lengths [B] (samples) -> features [B, T, D] + frame lengths [B].

    D = n_lfcc * 3 with deltas (60 by default), else n_lfcc. Frames past a clip's length are 0.
    """

    def __init__(self, sample_rate: int = 16000, n_fft: int = 512, win_length: int = 320,
                 hop_length: int = 160, n_filter: int = 20, n_lfcc: int = 20, with_energy: bool = True,
                 with_delta: bool = True, pre_emphasis: float | None = 0.97):
        super().__init__()
        self.hop_length, self.pad = hop_length, n_fft // 2
        self.with_energy, self.with_delta, self.pre_emphasis = with_energy, with_delta, pre_emphasis
        self.out_dim = n_lfcc * (3 if with_delta else 1)
        # center=False: the center=True reflect padding is done per clip in _frame_padding, so
        # the last frames of a short clip in a padded batch see the clip's own reflection, not
        # the zeros after it. log_lf=True: torchaudio's default dB scale clips at 80 dB below
        # the maximum of the whole batch, which would make features depend on the batch.
        speckwargs = dict(n_fft=n_fft, win_length=win_length, hop_length=hop_length,
                          window_fn=torch.hann_window, power=2.0, center=False)
        self.lfcc = torchaudio.transforms.LFCC(sample_rate=sample_rate, n_filter=n_filter, n_lfcc=n_lfcc,
                                               log_lf=True, speckwargs=speckwargs)

    def frame_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Frames per clip, as torch.stft(center=True) gives for a clip alone."""
        return lengths // self.hop_length + 1

    def _emphasise(self, wave: torch.Tensor) -> torch.Tensor:
        """y[n] = x[n] - a x[n-1], y[0] = x[0]: flattens the speech spectral tilt (NII front end)."""
        if not self.pre_emphasis:
            return wave
        return torch.cat([wave[:, :1], wave[:, 1:] - self.pre_emphasis * wave[:, :-1]], dim=1)

    def _frame_padding(self, wave: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Reflect-pad every clip by n_fft // 2 at its own two ends (center=True per clip).

        Clips shorter than the padding are clamped instead of reflected (torch would refuse
        them); samples further than the padding past a clip's end are zeroed.
        """
        i = torch.arange(-self.pad, wave.shape[1] + self.pad, device=wave.device)[None, :]
        last = (lengths - 1).clamp_min(0)[:, None]
        source = i.abs()
        source = torch.where(source > last, 2 * last - source, source)
        source = torch.minimum(source.clamp_min(0), last)
        padded = wave.gather(1, source)
        return padded * (i < lengths[:, None] + self.pad)

    def _deltas(self, static: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """[B, C, T] -> [B, 3C, T]; each order starts from edge-held frames (see hold_last)."""
        delta = torchaudio.functional.compute_deltas(hold_last(static, frames))
        delta2 = torchaudio.functional.compute_deltas(hold_last(delta, frames))
        return torch.cat([static, delta, delta2], dim=1)

    def power(self, wave: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The pre-emphasised power spectrogram the cepstra are taken from, [B, n_fft // 2 + 1, T]
        (float32, frames as `forward`'s; frames past a clip's length are 0), and frame lengths."""
        if lengths is None:
            lengths = torch.full((wave.shape[0],), wave.shape[1], dtype=torch.long, device=wave.device)
        lengths = lengths.to(wave.device)
        with torch.autocast(device_type=wave.device.type, enabled=False):
            power = self.lfcc.Spectrogram(self._frame_padding(self._emphasise(wave.float()), lengths))
            frames = self.frame_lengths(lengths)
            valid = torch.arange(power.shape[-1], device=wave.device)[None, :] < frames[:, None]
            return power * valid[:, None, :], frames

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor | None = None):
        if lengths is None:
            lengths = torch.full((wave.shape[0],), wave.shape[1], dtype=torch.long, device=wave.device)
        lengths = lengths.to(wave.device)
        # float32 even under autocast: log energies and deltas lose too much in half precision
        with torch.autocast(device_type=wave.device.type, enabled=False):
            padded = self._frame_padding(self._emphasise(wave.float()), lengths)
            static = self.lfcc(padded)  # [B, n_lfcc, T]
            if self.with_energy:
                power = self.lfcc.Spectrogram(padded).sum(dim=1)
                static = torch.cat([torch.log(power + torch.finfo(power.dtype).eps)[:, None], static[:, 1:]], 1)
            frames = self.frame_lengths(lengths)
            feats = self._deltas(static, frames) if self.with_delta else static
            valid = torch.arange(feats.shape[-1], device=wave.device)[None, :] < frames[:, None]
            return (feats * valid[:, None, :]).transpose(1, 2).contiguous(), frames
