"""Training losses.

"MSE for P2SGrad" (Wang & Yamagishi, Interspeech 2021): the squared distance between the cosines
of an embedding with each class vector and the one-hot target. It has no margin or scale to
tune, which is why the PartialSpoof papers use it at both levels.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

IGNORE = -1


class P2SGradLoss(nn.Module):
    """MSE for P2SGrad on cosines; targets are class indices (0 bona fide, 1 spoof, -1 ignored).

    - cos [N, C], targets [N]: (1/N) sum_n sum_k (cos[n,k] - 1(y_n = k))^2 over the N valid rows
      (Table 2, L_utt).
    - cos [B, M, C], targets [B, M]: each utterance's mean over its valid segments, then the mean
      over utterances with at least one valid segment, i.e. Table 2's L_seg,
      (1/|D|) sum_j (1/M_j) sum_m sum_k (...)^2, so long clips do not outweigh short ones.

    With no valid target at all the loss is a zero that still carries the graph.
    """

    def forward(self, cos: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if cos.dim() == 2:
            cos, targets = cos[:, None], targets[:, None]
        valid = targets != IGNORE
        onehot = F.one_hot(targets.clamp_min(0).long(), cos.shape[-1]).to(cos.dtype)
        per_item = ((cos - onehot) ** 2).sum(-1) * valid  # [B, M]
        count = valid.sum(1)
        used = count > 0
        if not used.any():
            return cos.sum() * 0.0
        per_utt = per_item.sum(1)[used] / count[used]
        return per_utt.mean()
