"""Helpers every detector shares: masks over padded segments, masked pooling, segment labels,
cosine heads (P2SGrad's class vectors, OC-softmax's bona fide centre) and the input-feature hook.

A detector's segments are `factor` 10 ms label frames long (SELCNN: 16 = 160 ms, Whisper: 2 =
20 ms); `segment_targets` min-pools the data's 10 ms labels to them (any spoof frame makes the
segment spoof), the convention of the PartialSpoof labels.
"""
from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn
from torch.nn import functional as F

from antispoof.losses import IGNORE, soft_cross_entropy
from antispoof.schema import pool_labels

LOSSES = ("ocsoftmax",)  # besides each family's own default (p2sgrad for SELCNN-MTL, ce for the others)


def valid_mask(lengths: torch.Tensor, size: int) -> torch.Tensor:
    """[B, size] bool: True on each clip's first lengths[b] positions."""
    return torch.arange(size, device=lengths.device)[None, :] < lengths[:, None]


def masked_mean(h: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Average pooling over valid segments only ([B, M, D] -> [B, D])."""
    weights = valid.to(h.dtype)[..., None]
    return (h * weights).sum(1) / weights.sum(1).clamp_min(1)


def masked_min(scores: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Min over valid segments; padding is +inf so it never wins."""
    return scores.masked_fill(~valid, math.inf).amin(1)


def segment_targets(labels_10ms: torch.Tensor, n_segments: torch.Tensor, factor: int) -> torch.Tensor:
    """10 ms labels [B, F10] (1 bona fide, 0 spoof, -1 padding) -> segment labels [B, M], float.

    schema.pool_labels, the project's one 10 ms pooling (the metrics use it too): a segment is
    spoof if any of its valid 10 ms frames is (min over 1/0), as the utterance label follows its
    segments; mixup's soft labels (bona fide probabilities) take the same min. M = max(n_segments);
    labels and model frames may disagree by a frame or two at the end, so labels past
    M * factor are dropped and missing ones are -1. Segments with no valid frame, or at or past
    a clip's n_segments, are -1.
    """
    n_segments = n_segments.to(labels_10ms.device)
    lowest = pool_labels(labels_10ms.float(), factor, int(n_segments.max()) if len(n_segments) else 0)
    return lowest.masked_fill(~valid_mask(n_segments, lowest.shape[1]), IGNORE)


def fit_segment_targets(targets: torch.Tensor, seg_lengths: torch.Tensor, size: int) -> torch.Tensor:
    """Segment targets [B, M'] cut or -1-padded to the model's M = size, and -1 past each clip's
    seg_lengths, on the device of seg_lengths (what a loss over [B, size] segments needs)."""
    targets = targets.to(seg_lengths.device).float()
    targets = F.pad(targets, (0, max(0, size - targets.shape[1])), value=IGNORE)[:, :size]
    return targets.masked_fill(~valid_mask(seg_lengths, size), IGNORE)


def two_level_cross_entropy(outputs: dict, utt_targets: torch.Tensor, seg_targets: torch.Tensor,
                            weights: dict) -> dict:
    """w_utt * CE(utt_logits) + w_seg * CE(seg_logits), the loss of every 2-logit detector.

    Targets are spoof probabilities (class indices 0 bona fide, 1 spoof, or mixup's soft values;
    -1 ignored). A level whose targets are all ignored contributes no loss (None), not a NaN.
    """
    utt = soft_cross_entropy(outputs["utt_logits"], utt_targets.to(outputs["utt_logits"].device))
    seg_logits = outputs["seg_logits"]
    targets = fit_segment_targets(seg_targets, outputs["seg_lengths"].to(seg_logits.device), seg_logits.shape[1])
    seg = soft_cross_entropy(seg_logits, targets)
    parts = [weights.get("utt", 1.0) * utt if utt is not None else None,
             weights.get("seg", 1.0) * seg if seg is not None else None]
    total = sum(p for p in parts if p is not None)
    if not torch.is_tensor(total):
        total = seg_logits.sum() * 0.0  # nothing labelled: a zero that still has a graph
    return {"utt": utt, "seg": seg, "total": total}


def two_level_outputs(utt_logits: torch.Tensor, seg_logits: torch.Tensor, seg_lengths: torch.Tensor,
                      utterance_score: str = "utt") -> dict:
    """The Detector outputs of a 2-logit detector (column 0 bona fide, 1 spoof): scores are the
    log-odds logit_bona - logit_spoof, NaN past seg_lengths; the utterance score is the utterance
    branch's (`utt`) or the lowest segment score (`seg_min`)."""
    valid = valid_mask(seg_lengths, seg_logits.shape[1])
    seg_scores = (seg_logits[..., 0] - seg_logits[..., 1]).masked_fill(~valid, math.nan)
    utt_branch = utt_logits[:, 0] - utt_logits[:, 1]
    utt_score = utt_branch if utterance_score == "utt" else masked_min(seg_scores, valid)
    return {"utt_logits": utt_logits, "seg_logits": seg_logits, "seg_lengths": seg_lengths,
            "utt_score": utt_score, "utt_branch_score": utt_branch, "seg_scores": seg_scores}


# ---- cosine heads ------------------------------------------------------------------------------

class CosineHead(nn.Module):
    """Linear(dim, embed_dim), then cosines with `n_classes` length-normalised class vectors.

    Returns (cos [..., n_classes], projected vector [..., embed_dim]); cosines are float32 even
    under autocast because the losses compare numbers in [-1, 1]. Column 0 is bona fide.
    """

    def __init__(self, dim: int, embed_dim: int = 64, n_classes: int = 2):
        super().__init__()
        self.fc = nn.Linear(dim, embed_dim)
        self.class_vectors = nn.Parameter(torch.randn(n_classes, embed_dim))

    def unit_classes(self) -> torch.Tensor:
        return F.normalize(self.class_vectors.float(), dim=-1)

    def cosine(self, projected: torch.Tensor) -> torch.Tensor:
        unit = F.normalize(projected.float(), dim=-1)
        return (unit[..., None, :] * self.unit_classes()).sum(-1)

    def bona_fide_dot(self, projected: torch.Tensor) -> torch.Tensor:
        """c_bona^T p with the unit bona fide class vector (the numerator of the derived scores)."""
        return (projected.float() * self.unit_classes()[0]).sum(-1)

    def forward(self, x: torch.Tensor):
        projected = self.fc(x)
        return self.cosine(projected), projected


class CentreHead(CosineHead):
    """OC-softmax's head: one class vector, the learnable bona fide centre; cos [..., 1] is the score.

    The centre (`class_vectors`) is trained by its own optimiser, SGD at the base learning rate
    as in the reference (train.module picks it out with `centre_parameters`).
    """

    def __init__(self, dim: int, embed_dim: int = 64):
        super().__init__(dim, embed_dim, n_classes=1)


def centre_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The OC-softmax centres of a detector (empty for P2SGrad and cross-entropy heads)."""
    return [m.class_vectors for m in model.modules() if isinstance(m, CentreHead)]


def check_loss(loss: str, default: str) -> None:
    if loss not in (default, *LOSSES):
        raise ValueError(f"loss must be {default!r} or {' or '.join(map(repr, LOSSES))}, got {loss!r}")


def centre_outputs(utt_cos: torch.Tensor, seg_cos: torch.Tensor, seg_lengths: torch.Tensor,
                   utterance_score: str = "utt") -> dict:
    """The Detector outputs of a centre head (OC-softmax) at both levels: scores are the cosines to
    the bona fide centres (higher = more bona fide), NaN past seg_lengths; the utterance score is
    the utterance branch's (`utt`) or the lowest segment score (`seg_min`)."""
    valid = valid_mask(seg_lengths, seg_cos.shape[1])
    seg_scores = seg_cos[..., 0].masked_fill(~valid, math.nan)
    utt_branch = utt_cos[:, 0]
    utt_score = utt_branch if utterance_score == "utt" else masked_min(seg_cos[..., 0], valid)
    return {"utt_cos": utt_cos, "seg_cos": seg_cos, "seg_lengths": seg_lengths,
            "utt_score": utt_score, "utt_branch_score": utt_branch, "seg_scores": seg_scores}


def two_level_centre_loss(outputs: dict, utt_targets: torch.Tensor, seg_targets: torch.Tensor,
                          weights: dict, loss_fn: nn.Module) -> dict:
    """w_utt * OC(utt_cos) + w_seg * OC(seg_cos), two_level_cross_entropy's counterpart for centre
    heads; a level whose targets are all ignored contributes no loss (None)."""
    utt_targets = utt_targets.to(outputs["utt_cos"].device)
    utt = loss_fn(outputs["utt_cos"], utt_targets) if (utt_targets != IGNORE).any() else None
    seg_cos = outputs["seg_cos"]
    targets = fit_segment_targets(seg_targets, outputs["seg_lengths"].to(seg_cos.device), seg_cos.shape[1])
    seg = loss_fn(seg_cos, targets) if (targets != IGNORE).any() else None
    parts = [weights.get("utt", 1.0) * utt if utt is not None else None,
             weights.get("seg", 1.0) * seg if seg is not None else None]
    total = sum(p for p in parts if p is not None)
    if not torch.is_tensor(total):
        total = seg_cos.sum() * 0.0
    return {"utt": utt, "seg": seg, "total": total}


# ---- the input-feature hook of the auxiliary tasks --------------------------------------------

@dataclasses.dataclass
class Features:
    """A detector's own input features: what `input_features` returns and `forward_features` reads
    (models.detector), so the auxiliary tasks can reconstruct them (S1) or convert them (S2).

    values [N, T, ...] are frame-major and zero past each row's `frames`. A row is a clip, unless
    the detector cuts clips into chunks (Whisper: 15 s of log-mel each); then `owner` [N] names
    each row's clip and `n_clips` the batch size.
    """

    values: torch.Tensor
    frames: torch.Tensor
    owner: torch.Tensor | None = None
    n_clips: int | None = None

    def __post_init__(self):
        if self.n_clips is None:
            self.n_clips = len(self.values) if self.owner is None else int(self.owner.max()) + 1

    def clips(self) -> tuple[torch.Tensor, torch.Tensor]:
        """-> values [B, T', ...] with each clip's rows joined in order, frames per clip [B]."""
        if self.owner is None:
            return self.values, self.frames
        joined, frames = join_rows(self.values.flatten(2), self.frames, self.owner, self.n_clips)
        return joined.unflatten(2, self.values.shape[2:]), frames

    def select(self, keep: torch.Tensor) -> "Features":
        """The rows of the clips where keep [B] is True, as Features of those clips alone."""
        keep = keep.to(self.frames.device)
        if self.owner is None:
            return Features(self.values[keep], self.frames[keep])
        rows = keep[self.owner]
        renumber = keep.long().cumsum(0) - 1
        return Features(self.values[rows], self.frames[rows], renumber[self.owner[rows]], int(keep.sum()))

    def replace(self, values: torch.Tensor) -> "Features":
        return dataclasses.replace(self, values=values)


def join_rows(hidden: torch.Tensor, frames: torch.Tensor, owner: torch.Tensor, n_clips: int):
    """Rows' valid frames [N, T, D], clip by clip and in order -> [B, M, D], frames per clip [B]."""
    seg_lengths = torch.zeros(n_clips, dtype=torch.long, device=hidden.device).index_add_(0, owner, frames)
    valid = valid_mask(frames, hidden.shape[1])
    rows = owner[:, None].expand_as(valid)[valid]
    offsets = (frames.cumsum(0) - frames) - (seg_lengths.cumsum(0) - seg_lengths)[owner]
    cols = (offsets[:, None] + torch.arange(hidden.shape[1], device=hidden.device)[None]).expand_as(valid)[valid]
    joined = hidden.new_zeros(n_clips, int(seg_lengths.max()), hidden.shape[-1])
    joined[rows, cols] = hidden[valid]
    return joined, seg_lengths
