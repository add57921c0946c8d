"""Heads trained on a frozen encoder's cached hidden states (features.state_cache).

Both read states [B, T, L, D] (L hidden states of the encoder, one frame per 20 ms) and give
the detector contract's two levels: an utterance score and one score per 20 ms frame, as
log-odds logit_bona - logit_spoof (higher = more bona fide), trained with cross-entropy at both
levels like the fine-tuned Whisper detector.

- `pooled` (FrozenPooledHead): a learnt softmax weighting of the layers, then the mean and
  standard deviation over the clip's frames -> linear (2 logits); frames -> linear. The linear
  probe of bench/learnability.py, trained end to end with a segment branch.
- `mhfa` (MHFAHead): multi-head factorised attentive pooling (Peng et al., SLT 2022). Two softmax
  layer weightings, one for keys and one for values, each compressed by a linear layer; a linear
  layer on the keys gives H attention heads (softmax over time), each head pools the values,
  and the heads' pooled vectors are concatenated and projected to an embedding -> 2 logits. The
  segment branch reads the compressed values frame by frame through a small temporal
  convolution, so each 20 ms score sees its neighbours.
Every state is first normalised over its features (no learnt scale): Whisper's early and late
states differ in scale by orders of magnitude, and a weighted sum would otherwise be the
largest layer's. Those normalised states are the heads' input features (the auxiliary tasks'
hook); `loss: ocsoftmax` swaps each 2-logit linear layer for a cosine to a bona fide centre.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from antispoof.losses import OCSoftmaxLoss
from antispoof.models.common import (CentreHead, Features, centre_outputs, check_loss, masked_mean, segment_targets,
                                     two_level_centre_loss, two_level_cross_entropy, two_level_outputs, valid_mask)

FRAME_LABELS = 2  # one encoder frame per 20 ms = two 10 ms labels


@dataclass
class FrozenHeadConfig:
    """The `model` section of configs/model/whisper_*_{pooled,mhfa}.yaml minus `family` (the
    encoder and its layers are the config's `embed` section: they define the cache).

    n_states and dim are read from the state cache when training starts (0 until then)."""

    n_states: int = 0
    dim: int = 0
    compression: int = 128                 # MHFA: keys and values compressed to this many dims
    heads: int = 8                         # MHFA: attention heads
    embedding: int = 256                   # MHFA: the utterance embedding
    seg_kernel: int = 5                    # MHFA: frames the segment branch's convolution sees
    dropout: float = 0.1
    utterance_score: str = "utt"           # utt: the utterance branch; seg_min: the lowest frame score
    loss_weights: dict = field(default_factory=lambda: {"utt": 1.0, "seg": 1.0})
    loss: str = "ce"                       # ce: 2 logits per branch | ocsoftmax: cosine to a bona fide centre
    oc_softmax: dict = field(default_factory=dict)  # OCSoftmaxLoss margins: r_real, r_fake, alpha
    oc_dim: int = 128                      # ocsoftmax: each branch projects to this many dims before the cosine
    input_norm: str = "layer"              # layer: each frame over its features | batch: each feature over the
                                           # training frames (running mean / variance, no learnt scale)

    def __post_init__(self):
        check_loss(self.loss, "ce")
        OCSoftmaxLoss.from_options(self.oc_softmax)
        if self.n_states < 1 or self.dim < 1:
            raise ValueError("n_states and dim come from the state cache (train reads them from meta.json); "
                             f"got n_states={self.n_states}, dim={self.dim}")
        if self.input_norm not in ("layer", "batch"):
            raise ValueError(f"input_norm must be 'layer' or 'batch', got {self.input_norm!r}")
        if self.utterance_score not in ("utt", "seg_min"):
            raise ValueError(f"utterance_score must be 'utt' or 'seg_min', got {self.utterance_score!r}")


class LayerWeights(nn.Module):
    """A softmax-normalised weighting of the hidden states: [B, T, L, D] -> [B, T, D]."""

    def __init__(self, n_states: int):
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(n_states))

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return torch.einsum("btld,l->btd", states, self.logits.softmax(0))


class FrozenHead(nn.Module):
    """What both heads share: the input contract, segment targets, losses and scores."""

    input_key = "states"               # the batch entry the head reads (cached states, not waves)
    segment_hop_s = 0.02

    def __init__(self, config: FrozenHeadConfig):
        super().__init__()
        self.config = config
        self.oc_loss = OCSoftmaxLoss.from_options(config.oc_softmax) if config.loss == "ocsoftmax" else None
        self.feature_dim = config.n_states * config.dim  # the auxiliary tasks' hook (embedding_dim: per head)
        self.batch_norm = (nn.BatchNorm1d(config.n_states * config.dim, affine=False)
                           if config.input_norm == "batch" else None)

    def classifier(self, dim: int) -> nn.Module:
        """A branch's last layer: 2 logits, or with OC-softmax a centre head (cos [..., 1], projected)."""
        return CentreHead(dim, self.config.oc_dim) if self.oc_loss is not None else nn.Linear(dim, 2)

    def input_features(self, states: torch.Tensor, lengths: torch.Tensor | None = None) -> Features:
        """The normalised states [B, T, L, D] (float32) the head reads."""
        return Features(self.normalise(states), _lengths(states, lengths))

    def forward(self, states: torch.Tensor, lengths: torch.Tensor | None = None) -> dict:
        """-> the detector outputs (models.common.two_level_outputs, or centre_outputs with
        OC-softmax) and utt_embedding [B, E], the vector the utterance branch reads."""
        return self.forward_features(self.input_features(states, lengths))

    def segment_targets(self, labels_10ms: torch.Tensor, n_segments: torch.Tensor) -> torch.Tensor:
        return segment_targets(labels_10ms, n_segments, FRAME_LABELS)

    def set_spec_augment(self, module: nn.Module | None) -> None:
        """The states are fixed once cached: SpecAugment cannot reach them (augmented views can)."""

    def normalise(self, states: torch.Tensor) -> torch.Tensor:
        """Layer norm over each frame's features (Whisper's layers differ in scale by orders of
        magnitude), or with input_norm=batch a per-feature standardisation by running statistics
        of the training frames: features of different kinds and units (cepstra beside log band
        energies) keep each frame's level, which a frame-wise norm would remove."""
        if self.batch_norm is None:
            return F.layer_norm(states.float(), states.shape[-1:])
        b, t, n, d = states.shape
        flat = self.batch_norm(states.float().reshape(b * t, n * d))
        return flat.reshape(b, t, n, d)

    def outputs(self, utt, seg, lengths: torch.Tensor, embedding: torch.Tensor) -> dict:
        """The branches' outputs (logits, or a centre head's (cos, projected)) -> detector outputs."""
        if self.oc_loss is not None:
            out = centre_outputs(utt[0], seg[0], lengths, self.config.utterance_score)
        else:
            out = two_level_outputs(utt, seg, lengths, self.config.utterance_score)
        return {**out, "utt_embedding": embedding}

    def losses(self, outputs: dict, utt_targets: torch.Tensor, seg_targets: torch.Tensor) -> dict:
        """Cross-entropy (or OC-softmax) at both levels (models.common)."""
        if self.oc_loss is not None:
            return two_level_centre_loss(outputs, utt_targets, seg_targets, self.config.loss_weights, self.oc_loss)
        return two_level_cross_entropy(outputs, utt_targets, seg_targets, self.config.loss_weights)


class FrozenPooledHead(FrozenHead):
    """Layer weighting -> mean/std pooling -> linear; frames -> linear."""

    def __init__(self, config: FrozenHeadConfig):
        super().__init__(config)
        self.layers = LayerWeights(config.n_states)
        self.utt_head = nn.Sequential(nn.Dropout(config.dropout), self.classifier(2 * config.dim))
        self.seg_head = nn.Sequential(nn.Dropout(config.dropout), self.classifier(config.dim))
        self.embedding_dim = 2 * config.dim

    def forward_features(self, features: Features) -> dict:
        lengths = features.frames
        h = self.layers(features.values)
        valid = valid_mask(lengths, h.shape[1])
        mean = masked_mean(h, valid)
        std = (masked_mean(h.square(), valid) - mean.square()).clamp_min(1e-6).sqrt()
        pooled = torch.cat([mean, std], -1)
        return self.outputs(self.utt_head(pooled), self.seg_head(h), lengths, pooled)


class MHFAHead(FrozenHead):
    """Multi-head factorised attentive pooling, with a frame-level segment branch on its values."""

    def __init__(self, config: FrozenHeadConfig):
        super().__init__(config)
        c = config.compression
        self.key_layers, self.value_layers = LayerWeights(config.n_states), LayerWeights(config.n_states)
        self.keys, self.values = nn.Linear(config.dim, c), nn.Linear(config.dim, c)
        self.attention = nn.Linear(c, config.heads)
        self.embed = nn.Sequential(nn.Linear(config.heads * c, config.embedding), nn.ReLU(), nn.Dropout(config.dropout))
        self.utt_head = self.classifier(config.embedding)
        self.seg_context = nn.Conv1d(c, c, config.seg_kernel, padding=config.seg_kernel // 2)
        self.seg_head = nn.Sequential(nn.ReLU(), nn.Dropout(config.dropout), self.classifier(c))
        self.embedding_dim = config.embedding

    def forward_features(self, features: Features) -> dict:
        x, lengths = features.values, features.frames
        # both layer weightings in one pass over the states (the costliest read on a CPU)
        weights = torch.stack([self.key_layers.logits.softmax(0), self.value_layers.logits.softmax(0)], 1)
        mixed = torch.einsum("btld,lk->kbtd", x, weights)
        keys, values = self.keys(mixed[0]), self.values(mixed[1])  # [B, T, c] each
        valid = valid_mask(lengths, x.shape[1])
        attention = self.attention(keys).masked_fill(~valid[..., None], -math.inf).softmax(1)  # [B, T, H]
        pooled = torch.einsum("bth,btc->bhc", attention, values).flatten(1)                    # [B, H * c]
        embedding = self.embed(pooled)
        context = self.seg_context((values * valid[..., None]).transpose(1, 2)).transpose(1, 2)
        return self.outputs(self.utt_head(embedding), self.seg_head(context), lengths, embedding)


def _lengths(states: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    if lengths is None:
        return torch.full((states.shape[0],), states.shape[1], dtype=torch.long, device=states.device)
    return lengths.to(states.device)
