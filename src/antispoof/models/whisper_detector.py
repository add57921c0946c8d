"""Whisper-encoder detector: a pretrained Whisper encoder fine-tuned for utterance and segment spoofing.

After the FinVolution 2024 deepfake-detection write-up (a top-3 team): the encoder of a
multilingual Whisper on its own log-mel features, SpecAugment through the model config
(mask_time_prob = mask_feature_prob = 0.1), inputs clipped to 15 s, which keeps attention on
15 s instead of Whisper's 30 s by using only the first 750 position embeddings.

wave -> WhisperLogMel (on the batch's device) -> SpecAugment (training) -> encoder, one vector
per 20 ms -> an utterance head (attention or mean pooling + linear, 2 logits) and a frame head
(linear, 2 logits per 20 ms frame, aligned with pairs of the 10 ms labels). Multi-task loss:
w_utt * CE(utterance) + w_seg * CE(frames). Scores are log-odds logit_bona - logit_spoof, so
higher = more bona fide and the utterance score is LLR-like (actDCF and Cllr make sense).

Clips longer than `max_seconds` are cut into consecutive chunks of that length, encoded
separately and joined again before the heads: nothing is truncated, frames stay on the 20 ms
grid, and pooling sees the whole clip. `pad_to: max` pads every chunk to max_seconds as
Whisper does (the padding is visible to attention, as in pretraining); `pad_to: batch` pads to
the batch's longest chunk and masks padding out of attention, so a clip's scores do not
depend on its batch and short clips cost little (the CPU setting).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from antispoof.features import WhisperLogMel
from antispoof.losses import OCSoftmaxLoss
from antispoof.models.common import (CentreHead, Features, centre_outputs, check_loss, join_rows, masked_mean,
                                     segment_targets, two_level_centre_loss, two_level_cross_entropy,
                                     two_level_outputs, valid_mask)
from antispoof.models.whisper_weights import MODELS_DIR, WeightsError, resolve_weights
from antispoof.utils import seeded_global_rngs

SAMPLE_RATE = 16000
MEL_HOP = 160      # samples per log-mel frame (10 ms)
FRAME_LABELS = 2   # the encoder's conv2 has stride 2: one frame per 20 ms = two 10 ms labels


@dataclass
class WhisperDetectorConfig:
    """Model options (configs/model/whisper_*.yaml: the `model` section minus `family`)."""

    pretrained: str = "whisper-tiny.en"   # a PRETRAINED name, a CTranslate2 folder / model.bin or a transformers folder
    models_dir: str = str(MODELS_DIR)     # where named models are converted and cached
    max_seconds: float = 15.0             # chunk length: the position-embedding slice in use
    pad_to: str = "max"                   # max: every chunk padded to max_seconds; batch: to the longest, masked
    pooling: str = "attention"            # utterance pooling: attention | mean
    utterance_score: str = "utt"          # utt: the utterance head; seg_min: the lowest frame score
    head_dropout: float = 0.1
    loss_weights: dict = field(default_factory=lambda: {"utt": 1.0, "seg": 1.0})
    loss: str = "ce"                      # ce: 2 logits per head | ocsoftmax: cosine to a bona fide centre
    oc_softmax: dict = field(default_factory=dict)  # OCSoftmaxLoss margins: r_real, r_fake, alpha
    oc_dim: int = 128                     # ocsoftmax: each head projects to this many dims before the cosine
    # SpecAugment, passed to the Whisper config (transformers' own masking algorithm)
    apply_spec_augment: bool = True
    mask_time_prob: float = 0.1
    mask_time_length: int = 10
    mask_time_min_masks: int = 2
    mask_feature_prob: float = 0.1
    mask_feature_length: int = 10
    mask_feature_min_masks: int = 0
    encoder_dropout: float = 0.0          # Whisper's dropout / attention_dropout / activation_dropout
    # fine-tuning
    freeze_layers: int = 0                # freeze the conv front end and the first N layers (-1: all)
    layer_decay: float = 1.0              # layer-wise lr decay: layer i of L gets lr * decay ** (L - i)
    gradient_checkpointing: bool = False

    def __post_init__(self):
        check_loss(self.loss, "ce")
        OCSoftmaxLoss.from_options(self.oc_softmax)
        if self.pad_to not in ("max", "batch"):
            raise ValueError(f"pad_to must be 'max' or 'batch', got {self.pad_to!r}")
        if self.pooling not in ("attention", "mean"):
            raise ValueError(f"pooling must be 'attention' or 'mean', got {self.pooling!r}")
        if self.utterance_score not in ("utt", "seg_min"):
            raise ValueError(f"utterance_score must be 'utt' or 'seg_min', got {self.utterance_score!r}")
        if not 0 < self.max_seconds <= 30:
            raise ValueError(f"max_seconds must be in (0, 30] (Whisper's 1500 positions), got {self.max_seconds}")
        if not 0 < self.layer_decay <= 1:
            raise ValueError(f"layer_decay must be in (0, 1], got {self.layer_decay}")


def _checkpoint_tensors(folder: Path) -> dict[str, torch.Tensor]:
    """The encoder's tensors of a transformers Whisper checkpoint (safetensors, sharded or not, or .bin)."""
    from safetensors import safe_open

    files = sorted(folder.glob("*.safetensors"))
    if files:  # read only the encoder's tensors (the decoder is half of the file)
        state = {}
        for file in files:
            with safe_open(file, framework="pt") as f:
                state.update({k: f.get_tensor(k) for k in f.keys() if "encoder." in k})
    elif (folder / "pytorch_model.bin").is_file():
        state = torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
    else:
        raise WeightsError(f"{folder}: no *.safetensors or pytorch_model.bin")
    for prefix in ("model.encoder.", "encoder."):
        encoder = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
        if encoder:
            return encoder
    raise WeightsError(f"{folder}: no Whisper encoder weights (no model.encoder.* tensors)")


def load_encoder(config: WhisperDetectorConfig):
    """A transformers WhisperEncoder with pretrained weights, positions sliced to max_seconds."""
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    folder = resolve_weights(config.pretrained, config.models_dir)
    whisper = WhisperConfig.from_pretrained(folder)
    positions = math.ceil(config.max_seconds * SAMPLE_RATE / MEL_HOP / FRAME_LABELS)
    if positions > whisper.max_source_positions:
        raise WeightsError(f"{folder}: max_seconds={config.max_seconds} needs {positions} positions, "
                           f"the checkpoint has {whisper.max_source_positions}")
    whisper.max_source_positions = positions
    for key in ("apply_spec_augment", "mask_time_prob", "mask_time_length", "mask_time_min_masks",
                "mask_feature_prob", "mask_feature_length", "mask_feature_min_masks"):
        setattr(whisper, key, getattr(config, key))
    whisper.dropout = whisper.attention_dropout = whisper.activation_dropout = config.encoder_dropout
    whisper._attn_implementation = "sdpa"
    encoder = WhisperEncoder(whisper)
    state = _checkpoint_tensors(folder)
    state["embed_positions.weight"] = state["embed_positions.weight"][:positions]
    missing, unexpected = encoder.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise WeightsError(f"{folder}: encoder weights do not fit (missing {missing[:3]}, unexpected {unexpected[:3]})")
    return encoder


class AttentionPooling(nn.Module):
    """Softmax-weighted mean over valid frames, weights from a one-layer scorer."""

    def __init__(self, dim: int):
        super().__init__()
        self.score = nn.Sequential(nn.Linear(dim, dim // 4), nn.Tanh(), nn.Linear(dim // 4, 1))

    def forward(self, h: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        logits = self.score(h).squeeze(-1).float().masked_fill(~valid, -math.inf)
        weights = logits.softmax(-1).to(h.dtype)
        return (weights[..., None] * h).sum(1)


class WhisperDetector(nn.Module):
    """wave [B, S] + lengths [B] -> logits and scores at both levels (see `forward`)."""

    segment_hop_s = FRAME_LABELS * MEL_HOP / SAMPLE_RATE  # one frame score per 20 ms
    input_key = "wave"

    def __init__(self, config: WhisperDetectorConfig | None = None):
        super().__init__()
        self.config = config = config or WhisperDetectorConfig()
        self.encoder = load_encoder(config)
        whisper = self.encoder.config
        self.logmel = WhisperLogMel(n_mels=whisper.num_mel_bins)
        self.chunk_samples = whisper.max_source_positions * FRAME_LABELS * MEL_HOP
        dim = whisper.d_model
        self.pool = AttentionPooling(dim) if config.pooling == "attention" else None
        centre = config.loss == "ocsoftmax"  # CentreHead -> (cos [..., 1], projected); Linear -> 2 logits
        self.utt_head = nn.Sequential(nn.Dropout(config.head_dropout),
                                      CentreHead(dim, config.oc_dim) if centre else nn.Linear(dim, 2))
        self.seg_head = nn.Sequential(nn.Dropout(config.head_dropout),
                                      CentreHead(dim, config.oc_dim) if centre else nn.Linear(dim, 2))
        self.oc_loss = OCSoftmaxLoss.from_options(config.oc_softmax) if centre else None
        self.embedding_dim, self.feature_dim = dim, whisper.num_mel_bins  # the auxiliary tasks' hook
        self._mask_seeds = None  # the training run's SpecAugment module: per-batch mask seeds
        self._freeze(config.freeze_layers)
        if config.gradient_checkpointing:
            self.encoder.activation_checkpointing_enable({"use_reentrant": False})

    def segment_targets(self, labels_10ms: torch.Tensor, n_segments: torch.Tensor) -> torch.Tensor:
        return segment_targets(labels_10ms, n_segments, FRAME_LABELS)

    def set_spec_augment(self, module: nn.Module | None) -> None:
        """Whisper keeps its own SpecAugment (the config's mask_* values, transformers' masking):
        a module switches it on, None off. Only the module's per-batch seed is used (`draw_seed`),
        so the masks follow (seed, epoch, step) as every other augmentation does."""
        self.encoder.config.apply_spec_augment = module is not None
        self._mask_seeds = module

    # ---- fine-tuning knobs ----------------------------------------------------------------

    def _freeze(self, n_layers: int) -> None:
        if n_layers == 0:
            return
        layers = self.encoder.layers if n_layers > 0 else list(self.encoder.layers) + [self.encoder.layer_norm]
        frozen = [self.encoder.conv1, self.encoder.conv2, *layers[: n_layers if n_layers > 0 else None]]
        for module in frozen:
            module.requires_grad_(False)

    def param_groups(self, lr: float) -> list[dict]:
        """Optimizer groups with layer-wise lr decay: the heads get lr, encoder layer i of L gets
        lr * decay ** (L - i), the conv front end lr * decay ** (L + 1). Frozen weights are left out."""
        decay, n_layers = self.config.layer_decay, len(self.encoder.layers)
        depth = {"conv1": n_layers + 1, "conv2": n_layers + 1, "embed_positions": n_layers + 1}
        groups: dict[int, list] = {}
        for name, param in self.named_parameters():
            if not param.requires_grad:
                continue
            if name.startswith("encoder.layers."):
                level = n_layers - int(name.split(".")[2])
            elif name.startswith("encoder."):
                level = depth.get(name.split(".")[1], 0)  # the final layer_norm sits with the heads
            else:
                level = 0
            groups.setdefault(level, []).append(param)
        return [{"params": params, "lr": lr * decay ** level} for level, params in sorted(groups.items())]

    # ---- forward -----------------------------------------------------------------------------

    def _chunks(self, wave: torch.Tensor, lengths: torch.Tensor):
        """Cut clips into max_seconds chunks: -> chunks [N, L], chunk lengths [N], owner clip [N]."""
        size = self.chunk_samples
        counts = ((lengths + size - 1) // size).clamp_min(1)
        owner = torch.repeat_interleave(torch.arange(len(lengths), device=wave.device), counts)
        index = torch.arange(len(owner), device=wave.device) - torch.repeat_interleave(counts.cumsum(0) - counts, counts)
        starts = index * size
        chunk_lengths = (lengths[owner] - starts).clamp(0, size)
        # batch: room for the two log-mel frames past a clip's end that the convolutions read
        # (kernel 3, then stride 2), so they hold its own padding value in any batch.
        width = size if self.config.pad_to == "max" else min(size, int(chunk_lengths.max()) + 4 * MEL_HOP)
        padded = F.pad(wave, (0, size))  # every chunk's window lies inside
        positions = starts[:, None] + torch.arange(width, device=wave.device)[None]
        chunks = padded[owner[:, None], positions]
        chunks = chunks * (torch.arange(width, device=wave.device)[None] < chunk_lengths[:, None])
        return chunks, chunk_lengths, owner

    def _spec_augment(self, mel: torch.Tensor, mel_frames: torch.Tensor) -> torch.Tensor:
        """transformers' SpecAugment (WhisperModel._mask_input_features), masks inside each clip's frames."""
        cfg = self.encoder.config
        if not (self.training and cfg.apply_spec_augment):
            return mel
        batch, n_mels, frames = mel.shape
        mel = mel.clone()
        # transformers draws from NumPy's global generator; seed it from the batch (and restore it)
        seed = self._mask_seeds.draw_seed() if self._mask_seeds is not None else None
        with seeded_global_rngs(seed):
            time_mask, feature_mask = self._draw_masks(batch, n_mels, frames, mel_frames)
        if time_mask is not None:
            mel[torch.as_tensor(time_mask, device=mel.device)[:, None].expand(-1, n_mels, -1)] = 0
        if feature_mask is not None:
            mel[torch.as_tensor(feature_mask, device=mel.device)[:, :, None].expand(-1, -1, frames)] = 0
        return mel

    def _draw_masks(self, batch: int, n_mels: int, frames: int, mel_frames: torch.Tensor):
        """transformers' mask indices: time [batch, frames] inside each clip's frames, bands [batch, n_mels]."""
        from transformers.models.whisper.modeling_whisper import _compute_mask_indices

        cfg = self.encoder.config
        time_mask = feature_mask = None
        if cfg.mask_time_prob > 0:
            attention = valid_mask(mel_frames, frames).long().cpu()
            time_mask = _compute_mask_indices((batch, frames), mask_prob=cfg.mask_time_prob,
                                              mask_length=cfg.mask_time_length, attention_mask=attention,
                                              min_masks=cfg.mask_time_min_masks)
        if cfg.mask_feature_prob > 0:
            feature_mask = _compute_mask_indices((batch, n_mels), mask_prob=cfg.mask_feature_prob,
                                                 mask_length=cfg.mask_feature_length,
                                                 min_masks=cfg.mask_feature_min_masks)
        return time_mask, feature_mask

    def encode(self, mel: torch.Tensor, mel_frames: torch.Tensor, all_layers: bool = False,
               n_layers: int | None = None):
        """The Whisper encoder over [N, n_mels, T] log-mel with the first T / 2 positions.

        transformers' WhisperEncoder.forward insists on its full input length and cannot mask
        padding, so its modules are run here in the same order: conv1, conv2 (stride 2), + positions,
        the layers (with a key padding mask under pad_to=batch), the final LayerNorm.
        `all_layers` returns every hidden state instead, [L + 1, N, T, D]: the input of the first
        layer, then each layer's output, the last one after the final LayerNorm (transformers' order).
        `n_layers` < L stops after that many layers (with all_layers: [n_layers + 1, N, T, D], no
        final LayerNorm), which is all a frozen head reading early layers needs.
        """
        enc = self.encoder
        x = F.gelu(enc.conv1(mel))
        x = F.gelu(enc.conv2(x)).permute(0, 2, 1)
        x = x + enc.embed_positions.weight[: x.shape[1]]
        x = F.dropout(x, p=enc.dropout, training=self.training)
        frames = (mel_frames + 1) // FRAME_LABELS
        mask = None
        if self.config.pad_to == "batch":
            mask = valid_mask(frames, x.shape[1])[:, None, None, :]  # [N, 1, 1, T]: True = attend
        states = [x]
        stop = len(enc.layers) if n_layers is None else n_layers
        for layer in enc.layers[:stop]:
            x = layer(x, mask)
            states.append(x)
        if stop < len(enc.layers):
            return (torch.stack(states) if all_layers else x), frames
        if all_layers:
            return torch.stack(states[:-1] + [enc.layer_norm(x)]), frames
        return enc.layer_norm(x), frames

    # Chunks' valid frames, clip by clip and in order -> [B, M, D], frames per clip [B].
    _join = staticmethod(join_rows)

    def hidden_states(self, wave: torch.Tensor, lengths: torch.Tensor, layers: list[int]):
        """The chosen hidden states (indices as in `encode(all_layers=True)`) of whole clips, chunks
        joined: -> [B, M, len(layers), D] on the 20 ms grid and frames per clip [B]. Runs only
        the layers it needs; no SpecAugment (what a frozen-encoder cache stores)."""
        chunks, chunk_lengths, owner = self._chunks(wave, lengths.to(wave.device))
        mel, mel_frames = self.logmel(chunks, chunk_lengths)
        states, frames = self.encode(mel, mel_frames, all_layers=True, n_layers=max(layers))
        chosen = states[list(layers)].permute(1, 2, 0, 3)  # [N, T, layers, D]
        joined, seg_lengths = self._join(chosen.flatten(2), frames, owner, len(lengths))
        return joined.unflatten(2, chosen.shape[2:]), seg_lengths

    def input_features(self, wave: torch.Tensor, lengths: torch.Tensor | None = None) -> Features:
        """The log-mel of each max_seconds chunk, [N, T, n_mels], `owner` naming its clip (before
        SpecAugment, which is training's): what the encoder reads."""
        if lengths is None:
            lengths = torch.full((wave.shape[0],), wave.shape[1], dtype=torch.long, device=wave.device)
        lengths = lengths.to(wave.device)
        chunks, chunk_lengths, owner = self._chunks(wave, lengths)
        mel, mel_frames = self.logmel(chunks, chunk_lengths)
        return Features(mel.transpose(1, 2), mel_frames, owner, len(lengths))

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor | None = None) -> dict:
        """-> dict(utt_logits [B, 2], seg_logits [B, M, 2], seg_lengths [B], utt_score [B],
        utt_branch_score [B], seg_scores [B, M], utt_embedding [B, D] (the pooled encoder output));
        logit column 0 is bona fide, 1 spoof.

        Scores are logit_bona - logit_spoof; seg_scores are NaN past seg_lengths. With
        `loss: ocsoftmax` the heads give utt_cos [B, 1] and seg_cos [B, M, 1] instead, and the
        scores are those cosines to the bona fide centres.
        """
        return self.forward_features(self.input_features(wave, lengths))

    def forward_features(self, features: Features) -> dict:
        """`forward` from the log-mel chunks on (what a converted spoof of S2 goes through)."""
        mel, mel_frames = features.values.transpose(1, 2), features.frames
        hidden, frames = self.encode(self._spec_augment(mel, mel_frames), mel_frames)
        h, seg_lengths = self._join(hidden, frames, features.owner, features.n_clips)
        valid = valid_mask(seg_lengths, h.shape[1])
        pooled = self.pool(h, valid) if self.pool is not None else masked_mean(h, valid)
        if self.config.loss == "ocsoftmax":
            out = centre_outputs(self.utt_head(pooled)[0], self.seg_head(h)[0], seg_lengths,
                                 self.config.utterance_score)
        else:
            utt_logits = self.utt_head(pooled).float()
            seg_logits = self.seg_head(h).float()
            out = two_level_outputs(utt_logits, seg_logits, seg_lengths, self.config.utterance_score)
        return {**out, "utt_embedding": pooled}

    def losses(self, outputs: dict, utt_targets: torch.Tensor, seg_targets: torch.Tensor) -> dict:
        """Cross-entropy (or OC-softmax) at both levels; targets are spoof probabilities (class
        indices 0 bona fide, 1 spoof, or mixup's soft values; -1 ignored).

        A level whose targets are all ignored contributes no loss (None), not a NaN.
        """
        if self.config.loss == "ocsoftmax":
            return two_level_centre_loss(outputs, utt_targets, seg_targets, self.config.loss_weights, self.oc_loss)
        return two_level_cross_entropy(outputs, utt_targets, seg_targets, self.config.loss_weights)
