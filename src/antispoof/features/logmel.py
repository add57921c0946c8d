"""Whisper's log-mel spectrogram, computed on the batch's device and exact per clip.

The same numbers as transformers' WhisperFeatureExtractor (400-point Hann STFT, 10 ms hop,
Slaney mel filters up to 8 kHz, log10, floor at the clip's maximum - 8, then (x + 4) / 4),
but batched as torch ops so it runs where the batch lives. The floor uses each clip's own
maximum over its own frames, so zero padding after a clip never changes its features.
"""
from __future__ import annotations

import torch
import torchaudio
from torch import nn


class WhisperLogMel(nn.Module):
    """wave [B, S] + lengths [B] (samples) -> log-mel [B, n_mels, T] + frame lengths [B].

    A clip of n samples owns n // hop frames (Whisper drops the STFT's last frame); T is
    S // hop. Frames past a clip's own are what zero padding gives (Whisper's padding value).
    """

    def __init__(self, n_mels: int = 80, sample_rate: int = 16000, n_fft: int = 400, hop_length: int = 160):
        super().__init__()
        self.n_fft, self.hop_length = n_fft, hop_length
        filters = torchaudio.functional.melscale_fbanks(
            n_freqs=n_fft // 2 + 1, f_min=0.0, f_max=sample_rate / 2, n_mels=n_mels, sample_rate=sample_rate,
            norm="slaney", mel_scale="slaney")
        self.register_buffer("filters", filters.T.contiguous(), persistent=False)  # [n_mels, n_freqs]
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def frame_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return (lengths // self.hop_length).clamp_min(1)

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor | None = None):
        if lengths is None:
            lengths = torch.full((wave.shape[0],), wave.shape[1], dtype=torch.long, device=wave.device)
        lengths = lengths.to(wave.device)
        with torch.autocast(device_type=wave.device.type, enabled=False):  # log10 of tiny powers
            # Zero the padding (a caller's batch may pad with anything), then append n_fft / 2
            # zeros: the STFT's reflection at the end then mirrors zeros, so the last frames are
            # those of a clip followed by silence however long the batch is (HF pads with zeros too).
            n_frames = max(1, wave.shape[1] // self.hop_length)
            wave = wave.float() * (torch.arange(wave.shape[1], device=wave.device)[None] < lengths[:, None])
            wave = nn.functional.pad(wave, (0, self.n_fft // 2 + max(0, self.hop_length - wave.shape[1])))
            stft = torch.stft(wave, self.n_fft, self.hop_length, window=self.window, return_complex=True)
            power = stft[..., :n_frames].abs().pow(2)
            log_mel = (self.filters @ power).clamp_min(1e-10).log10()
            frames = self.frame_lengths(lengths)
            valid = torch.arange(log_mel.shape[-1], device=wave.device)[None, :] < frames[:, None]
            peak = log_mel.masked_fill(~valid[:, None, :], -torch.inf).amax(dim=(1, 2), keepdim=True)
            log_mel = torch.maximum(log_mel, peak - 8.0)
            return (log_mel + 4.0) / 4.0, frames
