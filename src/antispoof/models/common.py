"""Helpers every detector shares: masks over padded segments, masked pooling, segment labels.

A detector's segments are `factor` 10 ms label frames long (SELCNN: 16 = 160 ms, Whisper: 2 =
20 ms); `segment_targets` min-pools the data's 10 ms labels to them (any spoof frame makes the
segment spoof), the convention of the PartialSpoof labels.
"""
from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from antispoof.losses import IGNORE, soft_cross_entropy
from antispoof.schema import pool_labels


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
