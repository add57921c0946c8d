"""The contract every detector family fulfils (what training, prediction and the ensemble rely on).

A family is one module with an nn.Module implementing `Detector`, plus one entry in
models/factory.py's FAMILIES; configs pick it with `model.family`.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import nn


@runtime_checkable
class Detector(Protocol):
    """wave [B, S] + lengths [B] -> scores at both levels, and the losses to train them.

    forward returns a dict with at least
      utt_score [B]             the utterance score, higher = more bona fide
      utt_branch_score [B]|None the utterance branch's own score (None without one)
      seg_scores [B, M]         one score per `segment_hop_s` seconds, NaN past seg_lengths
      seg_lengths [B]           valid segments per clip
    and whatever else `losses` needs from it.
    """

    segment_hop_s: float  # the resolution of seg_scores, in seconds
    input_key: str        # the batch entry forward reads: "wave" (audio) or "states" (cached)

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor | None = None) -> dict:
        """`wave` is batch[input_key]: audio [B, S] with samples per clip, or states [B, T, L, D]
        with frames per clip."""
        ...

    def losses(self, outputs: dict, utt_targets: torch.Tensor, seg_targets: torch.Tensor) -> dict:
        """dict(utt, seg, total): targets are spoof probabilities (class indices 0 bona fide, 1 spoof,
        or soft values; -1 ignored); a level without a loss is None."""
        ...

    def segment_targets(self, labels_10ms: torch.Tensor, n_segments: torch.Tensor) -> torch.Tensor:
        """10 ms labels [B, F10] (1 bona fide, 0 spoof, -1 unknown) -> labels of the model's segments."""
        ...

    def set_spec_augment(self, module: nn.Module | None) -> None:
        """Switch SpecAugment on (the training run's augment.SpecAugment) or off (None)."""
        ...
