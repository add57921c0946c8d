"""A frozen front end with no weights: linear-frequency features served as "hidden states".

Neural vocoders rebuild the log-mel spectrogram that Whisper reads, so a head on Whisper states
hears a HiFi-GAN copy of a clip as the clip (SpoofBench v3: the frozen-Whisper probe scores the
unseen Kokoro at 55 % EER), while statistics on a linear frequency axis keep what vocoders leave
behind (the same probe on them: 28 %). `embed.encoder: lfcc-linear` puts those features on the
20 ms grid in the state cache's shape, so the frozen heads (MHFA, pooled), their segment branch,
augmented views, `antispoof predict` and the ensembles take them as they take an encoder's states.
One state of 120 values per frame:

  0-59      60-dim LFCC (20 cepstra with the log frame energy for c0, + delta + delta-delta; the
            NII / PartialSpoof front end of features.lfcc), 30 ms Hann windows every 20 ms
  60-119    60 log band energies of the same power spectrogram, linear bands over 0-8 kHz
            (about 133 Hz each), so the heads also see the fine high-frequency detail the 20
            cepstra smooth away

One state, not two: the heads mix states by a learnt weighted sum, which suits the layers of one
network and would add cepstra to band energies here. Nothing is learnt in this front end, so the
"weights fingerprint" of a cache is that of these settings (VERSION).
"""
from __future__ import annotations

import hashlib

import torch
from torch import nn

from antispoof.features.lfcc import LFCC

NAME = "lfcc-linear"
VERSION = "lfcc-linear-2: lfcc 20+d+dd (energy c0), n_fft 512, win 480, hop 320, pre-emphasis 0.97; 60 linear log bands"
BANDS = 60
DIM = 120     # LFCC (60) then log band energies (60)
N_LAYERS = 0  # one state
HOP_S = 0.02
SAMPLE_RATE = 16000


def fingerprint() -> str:
    """What stands for a weights fingerprint in the state cache's meta."""
    return hashlib.sha256(VERSION.encode()).hexdigest()


class SpectralEncoder(nn.Module):
    """wave [B, S] + lengths -> hidden_states [B, T, 1, 120] on the 20 ms grid."""

    input_key = "wave"

    def __init__(self, max_seconds: float = 15.0):
        super().__init__()
        self.max_seconds = max_seconds  # unused: features need no chunking; kept for the encoder interface
        self.lfcc = LFCC(n_fft=512, win_length=480, hop_length=320)
        bins = self.lfcc.lfcc.Spectrogram.n_fft // 2 + 1
        edges = torch.linspace(0, bins, BANDS + 1).round().long()
        bands = torch.zeros(bins, BANDS)
        for k in range(BANDS):
            bands[edges[k]: edges[k + 1], k] = 1.0 / float(edges[k + 1] - edges[k])
        self.register_buffer("bands", bands, persistent=False)

    @torch.inference_mode()
    def hidden_states(self, wave: torch.Tensor, lengths: torch.Tensor, layers: list[int]):
        """The one state (LFCC and log band energies) and frames per clip."""
        if not layers or min(layers) < 0 or max(layers) > N_LAYERS:
            raise ValueError(f"{NAME} has hidden states 0-{N_LAYERS}, not {layers}")
        cepstra, frames = self.lfcc(wave, lengths)                      # [B, T, 60]
        power, _ = self.lfcc.power(wave, lengths)                       # [B, F, T]
        energies = torch.log(power.transpose(1, 2) @ self.bands + 1e-10)  # [B, T, 60]
        valid = (torch.arange(cepstra.shape[1], device=wave.device)[None, :] < frames[:, None])[..., None]
        return torch.cat([cepstra, energies * valid], dim=-1)[:, :, None], frames  # [B, T, 1, 120]
