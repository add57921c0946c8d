"""The contract every detector family fulfils (what training, prediction and the ensemble rely on).

A family is one module with an nn.Module implementing `Detector`, plus one entry in
models/factory.py's FAMILIES; configs pick it with `model.family`.

The auxiliary tasks (models.aux_tasks: reconstruction, conversion, speaker classification) need
only the hook below: `forward` split into `input_features` (the model's own input features:
LFCC, Whisper's log-mel chunks, the normalised cached states) and `forward_features`, an
`utt_embedding` in the outputs, and the two sizes `embedding_dim` and `feature_dim`.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import nn

from antispoof.models.common import Features


@runtime_checkable
class Detector(Protocol):
    """wave [B, S] + lengths [B] -> scores at both levels, and the losses to train them.

    forward returns a dict with at least
      utt_score [B]             the utterance score, higher = more bona fide
      utt_branch_score [B]|None the utterance branch's own score (None without one)
      seg_scores [B, M]         one score per `segment_hop_s` seconds, NaN past seg_lengths
      seg_lengths [B]           valid segments per clip
      utt_embedding [B, E]      the utterance embedding (what the utterance branch reads)
    and whatever else `losses` needs from it.
    """

    segment_hop_s: float  # the resolution of seg_scores, in seconds
    input_key: str        # the batch entry forward reads: "wave" (audio) or "states" (cached)
    embedding_dim: int    # size of outputs["utt_embedding"]
    feature_dim: int      # size of one frame of input_features().values, trailing axes flattened

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor | None = None) -> dict:
        """`wave` is batch[input_key]: audio [B, S] with samples per clip, or states [B, T, L, D]
        with frames per clip. Equals forward_features(input_features(wave, lengths))."""
        ...

    def input_features(self, wave: torch.Tensor, lengths: torch.Tensor | None = None) -> Features:
        """The model's own input features (models.common.Features), before any training-time masking."""
        ...

    def forward_features(self, features: Features) -> dict:
        """`forward` from the input features on (SpecAugment included, in training mode)."""
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
