"""Training losses.

"MSE for P2SGrad" (Wang & Yamagishi, Interspeech 2021): the squared distance between the cosines
of an embedding with each class vector and the one-hot target. It has no margin or scale to
tune, which is why the PartialSpoof papers use it at both levels.

OC-softmax (Zhang, Jiang, Duan, "One-class learning towards synthetic voice spoofing detection",
2021; the loss of Mo & Wang's auxiliary multi-task learning, ICASSP 2022): one learnable bona fide
centre; bona fide embeddings are pulled within cos >= r_real of it, spoofs pushed below r_fake,
so unseen attacks need not form a class of their own. The score is the cosine itself.
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
        return _utterance_mean(per_item, valid, cos)


def _utterance_mean(per_item: torch.Tensor, valid: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Per-item losses [B, M] (zero where not valid) -> the mean over utterances of each one's mean
    over its valid items; a zero that keeps `like`'s graph when nothing is valid."""
    count = valid.sum(1)
    used = count > 0
    if not used.any():
        return like.sum() * 0.0
    per_utt = per_item.sum(1)[used] / count[used]
    return per_utt.mean()


class OCSoftmaxLoss(nn.Module):
    """OC-softmax on cosines to the bona fide centre, cos [N, 1] or [B, M, 1] (column 0 = the centre,
    the shape of a one-vector cosine head), targets spoof probabilities as P2SGradLoss's (-1 ignored).

    Per item with s = cos to the centre and spoof probability t:
        (1 - t) softplus(alpha (r_real - s)) + t softplus(alpha (s - r_fake)),
    i.e. softplus(alpha (m_y - s) sign_y), sign +1 bona fide and -1 spoof, for t in {0, 1}; mixup's
    soft targets weigh the two terms. Reduced like P2SGradLoss: the mean over valid utterances, or
    for segments each utterance's mean over its valid segments, then the mean over utterances.
    Defaults are the reference's (r_real 0.9, r_fake 0.2, alpha 20).
    """

    def __init__(self, r_real: float = 0.9, r_fake: float = 0.2, alpha: float = 20.0):
        super().__init__()
        if not -1 <= r_fake < r_real <= 1 or alpha <= 0:
            raise ValueError(f"oc_softmax needs -1 <= r_fake < r_real <= 1 and alpha > 0, "
                             f"got r_real={r_real}, r_fake={r_fake}, alpha={alpha}")
        self.r_real, self.r_fake, self.alpha = float(r_real), float(r_fake), float(alpha)

    @classmethod
    def from_options(cls, options: dict | None) -> "OCSoftmaxLoss":
        """From a config's `oc_softmax` mapping (r_real, r_fake, alpha; missing ones default)."""
        unknown = set(options or {}) - {"r_real", "r_fake", "alpha"}
        if unknown:
            raise ValueError(f"oc_softmax: unknown option {sorted(unknown)[0]!r} (known: r_real, r_fake, alpha)")
        return cls(**(options or {}))

    def forward(self, cos: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if cos.dim() == 2:
            cos, targets = cos[:, None], targets[:, None]
        score = cos[..., 0].to(torch.promote_types(cos.dtype, torch.float32))  # at least float32
        valid = targets != IGNORE
        spoof = targets.to(score.dtype).clamp(0, 1)
        per_item = ((1 - spoof) * F.softplus(self.alpha * (self.r_real - score))
                    + spoof * F.softplus(self.alpha * (score - self.r_fake)))
        per_item = torch.where(valid, per_item, torch.zeros_like(per_item))  # padding may hold anything
        return _utterance_mean(per_item, valid, cos)
