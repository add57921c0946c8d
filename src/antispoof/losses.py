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


def class_probabilities(targets: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
    """Targets [...] -> per-class probabilities [..., 2] (column 0 bona fide, 1 spoof).

    A target is the probability of spoof: the class indices 0 (bona fide) and 1 (spoof) are its
    hard case, mixup's convex combinations its soft one. Ignored entries (-1) map to zeros.
    """
    spoof = targets.to(dtype).clamp_min(0)
    return torch.stack([1 - spoof, spoof], -1) * (targets != IGNORE)[..., None]


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor | None:
    """Cross-entropy of logits [..., 2] with spoof-probability targets [...], -1 ignored.

    Equals F.cross_entropy(..., ignore_index=-1) for class-index targets; None when nothing is
    labelled (so a level without labels adds no NaN).
    """
    valid = targets != IGNORE
    if not valid.any():
        return None
    per_item = -(class_probabilities(targets, logits.dtype) * F.log_softmax(logits, -1)).sum(-1)
    return per_item[valid].mean()


class P2SGradLoss(nn.Module):
    """MSE for P2SGrad on cosines; targets are spoof probabilities (class indices 0 bona fide,
    1 spoof, or mixup's soft values in between; -1 ignored), the target vector (1 - t, t).

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
        per_item = ((cos - class_probabilities(targets, cos.dtype)) ** 2).sum(-1) * valid  # [B, M]
        count = valid.sum(1)
        used = count > 0
        if not used.any():
            return cos.sum() * 0.0
        per_utt = per_item.sum(1)[used] / count[used]
        return per_utt.mean()
