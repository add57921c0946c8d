"""Linear-frequency statistics of a clip: the feature set of the learnability probe and of the
simplest artefact baseline.

Neural vocoders rebuild the log-mel spectrogram a Whisper encoder reads almost exactly; what
gives them away is fine detail on a linear frequency axis (harmonic structure above 4 kHz,
frame-to-frame variance, phase-driven noise floors). So: 60-dim LFCC (the PartialSpoof front
end) pooled by mean, standard deviation and the 10th / 50th / 90th percentiles over frames, plus
the mean and standard deviation over frames of the log power spectrum in 64 linear bands.
"""
from __future__ import annotations

import numpy as np
import torch

from antispoof.features.lfcc import LFCC

N_BANDS = 64
PERCENTILES = (10, 50, 90)


class SpectralStatistics:
    """wave (16 kHz) -> a fixed-length vector (`dim` values)."""

    def __init__(self, n_fft: int = 512, hop: int = 160):
        self.lfcc = LFCC()
        self.n_fft, self.hop = n_fft, hop
        self.dim = self.lfcc.out_dim * (2 + len(PERCENTILES)) + 2 * N_BANDS

    @torch.inference_mode()
    def __call__(self, wave: np.ndarray) -> np.ndarray:
        x = torch.as_tensor(np.asarray(wave, dtype=np.float32))
        feats, _ = self.lfcc(x[None], torch.tensor([len(x)]))
        f = feats[0].numpy()  # [frames, 60]
        spec = torch.stft(x, self.n_fft, self.hop, window=torch.hann_window(self.n_fft), return_complex=True)
        log_power = torch.log(spec.abs().pow(2) + 1e-10)[: self.n_fft // 2].numpy()  # [256 bins, frames]
        bands = log_power.reshape(N_BANDS, -1, log_power.shape[-1]).mean(axis=1)
        return np.concatenate([f.mean(0), f.std(0), *np.percentile(f, PERCENTILES, axis=0),
                               bands.mean(1), bands.std(1)]).astype(np.float32)
