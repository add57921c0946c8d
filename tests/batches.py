"""A 4-clip training batch for any detector family, shared by the module-level tests (SAM, auxiliary
tasks): 2 bona fide and 2 spoof clips of different lengths, 10 ms segment labels, one speaker each."""
from __future__ import annotations

import torch


def detector_batch(family: str) -> dict:
    """Cached states for a frozen head (`family` starting with "mhfa"), waveforms otherwise."""
    labels = torch.tensor([1, 0, 1, 0])  # data labels: 1 bona fide, 0 spoof
    gen = torch.Generator().manual_seed(0)
    if family.startswith("mhfa"):
        lengths = torch.tensor([30, 20, 30, 12])
        batch = {"states": torch.randn(4, 30, 3, 16, generator=gen).half(), "lengths": lengths}
        frames = 2 * lengths
    else:
        lengths = torch.tensor([16000, 12000, 16000, 9000])
        wave = 0.1 * torch.randn(4, 16000, generator=gen) * (torch.arange(16000)[None] < lengths[:, None])
        batch = {"wave": wave, "lengths": lengths}
        frames = -(-lengths // 160)
    seg = torch.full((4, int(frames.max())), -1)
    for i in range(4):
        seg[i, : frames[i]] = labels[i]
    return dict(batch, utt_id=[f"u{i}" for i in range(4)], label=labels, seg=seg, seg_lengths=frames,
                speaker=torch.tensor([0, 1, 2, 2]))
