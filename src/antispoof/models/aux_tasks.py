"""Auxiliary tasks of multi-task learning for spoof detection (Mo & Wang, ICASSP 2022), for any detector.

Three tasks share the detector's utterance embedding and add to its loss, each switched on by a
weight > 0 in the experiment's `aux` section (configs/aux/none.yaml documents every knob):

- S1 bona fide reconstruction (`reconstruction`, the paper's lambda_r = 0.04): a decoder maps the
  embedding of a bona fide clip back to the detector's own input features (LFCC, Whisper log-mel,
  the normalised cached states). MSE on bona fide rows only, scaled by batch size / bona fide
  count as the reference does, so a batch with few bona fide clips still weighs the task.
  An embedding is one vector and clips differ in length, so the target is the clip's features
  averaged over `bins` equal stretches of its own duration: a fixed-shape summary of every clip,
  as the reference's fixed 750-frame inputs gave it. The decoder trains with the detector's
  optimiser (as in the reference).
- S2 spoof voice conversion (`conversion`, lambda_c = 3e-4): an adversarial network turns the
  features of spoof clips into features meant to pass as bona fide. It trains in alternation with
  the detector (train.module): its own step minimises delta * (detector loss with bona fide
  targets) + MSE to its input; the detector's step adds lambda_c * (its loss on the converted
  spoofs, with their own spoof labels), so it learns to still call them spoof.
- S3 speaker classification (`speaker`, lambda_m = 5e-5): a classifier of the training part's
  speakers (the manifest's `speaker` column) on bona fide embeddings only; its own Adam.

A task at weight 0 builds nothing and draws no random number, so every weight at 0 trains exactly
the model without auxiliary tasks.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields

import torch
from torch import nn
from torch.nn import functional as F

from antispoof.losses import IGNORE
from antispoof.models.common import Features, valid_mask

BONA_FIDE, SPOOF = 0, 1  # loss targets (train.module.class_targets)


@dataclass
class ReconstructionConfig:
    weight: float = 0.0        # lambda_r; the paper's 0.04
    bins: int = 16             # the clip's features are averaged over this many equal stretches
    hidden: int = 64           # decoder channels per stretch


@dataclass
class ConversionConfig:
    weight: float = 0.0        # lambda_c: weight of the detector's loss on converted spoofs; 3e-4
    delta: float = 1.0         # weight of "pass as bona fide" in the converter's own loss (+ MSE to its input)
    hidden: int = 128          # converter width per frame
    kernel: int = 5            # frames of context the converter sees
    lr: float | None = None    # its Adam (null: optim.lr)
    weight_decay: float = 5.0e-4


@dataclass
class SpeakerConfig:
    weight: float = 0.0        # lambda_m; 5e-5
    n_speakers: int = 0        # set from the fold's training part when training starts
    hidden: int = 128          # the classifier's hidden layers: hidden, hidden / 2
    lr: float | None = None    # its Adam (null: optim.lr)
    weight_decay: float = 5.0e-4


@dataclass
class AuxConfig:
    reconstruction: ReconstructionConfig = field(default_factory=ReconstructionConfig)
    conversion: ConversionConfig = field(default_factory=ConversionConfig)
    speaker: SpeakerConfig = field(default_factory=SpeakerConfig)

    @classmethod
    def from_options(cls, options: dict | None) -> "AuxConfig":
        """From an experiment's `aux` mapping (None or missing tasks: off); unknown keys are refused."""
        options = dict(options or {})
        parts = {}
        for task in fields(cls):
            given = dict(options.pop(task.name, None) or {})
            kind = task.default_factory
            unknown = set(given) - {f.name for f in fields(kind)}
            if unknown:
                raise ValueError(f"aux.{task.name}: unknown option {sorted(unknown)[0]!r}")
            parts[task.name] = kind(**given)
            if parts[task.name].weight < 0:
                raise ValueError(f"aux.{task.name}.weight must be >= 0, got {parts[task.name].weight}")
        if options:
            raise ValueError(f"aux: unknown task {sorted(options)[0]!r} (known: reconstruction, conversion, speaker)")
        return cls(**parts)

    @property
    def active(self) -> list[str]:
        return [task.name for task in fields(self) if getattr(self, task.name).weight > 0]


def bin_means(values: torch.Tensor, frames: torch.Tensor, bins: int) -> tuple[torch.Tensor, torch.Tensor]:
    """values [B, T, F] -> each clip's valid frames averaged over `bins` equal stretches [B, bins, F],
    and which stretches hold a frame [B, bins] (a clip shorter than `bins` frames leaves some empty).

    Frame t of a clip of n frames falls in stretch floor(t * bins / n)."""
    t = torch.arange(values.shape[1], device=values.device)
    stretch = (t[None] * bins) // frames.clamp_min(1)[:, None]                            # [B, T]
    member = (stretch[..., None] == torch.arange(bins, device=values.device)) & valid_mask(frames, len(t))[..., None]
    member = member.to(values.dtype)                                                        # [B, T, bins]
    counts = member.sum(1)
    means = torch.einsum("btk,btf->bkf", member, values) / counts.clamp_min(1)[..., None]
    return means, counts > 0


class FeatureDecoder(nn.Module):
    """S1: utterance embedding [B, E] -> the clip's features over `bins` stretches [B, bins, F]."""

    def __init__(self, embedding_dim: int, feature_dim: int, bins: int = 16, hidden: int = 64):
        super().__init__()
        self.bins, self.hidden = bins, hidden
        self.expand = nn.Linear(embedding_dim, bins * hidden)
        self.context = nn.Conv1d(hidden, hidden, 3, padding=1)  # neighbouring stretches agree
        self.out = nn.Linear(hidden, feature_dim)

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        z = F.relu(self.expand(embedding)).view(len(embedding), self.bins, self.hidden)
        z = F.relu(self.context(z.transpose(1, 2))).transpose(1, 2)
        return self.out(z)


class FeatureConverter(nn.Module):
    """S2: features [N, T, ...] -> x + g(x), a frame-wise network with `kernel` frames of context.

    g's last layer starts at zero, so conversion starts as the identity (the detector first sees
    plain spoofs) and the converter learns only what the detector's gradient asks of it, while its
    MSE-to-input term keeps the converted features near the spoof they came from.
    """

    def __init__(self, feature_dim: int, hidden: int = 128, kernel: int = 5):
        super().__init__()
        self.inp = nn.Linear(feature_dim, hidden)
        self.context = nn.Conv1d(hidden, hidden, kernel, padding=kernel // 2)
        self.out = nn.Linear(hidden, feature_dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, values: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        x = values.flatten(2).float()
        valid = valid_mask(frames.to(x.device), x.shape[1])[..., None].to(x.dtype)
        z = F.relu(self.inp(x)) * valid
        z = F.relu(self.context(z.transpose(1, 2))).transpose(1, 2)
        return ((x + self.out(z).float()) * valid).view(values.shape).to(values.dtype)


class SpeakerClassifier(nn.Module):
    """S3: utterance embedding -> speaker logits (the reference's 2 hidden layers, without its
    BatchNorm, which breaks on a batch holding a single bona fide clip)."""

    def __init__(self, embedding_dim: int, n_speakers: int, hidden: int = 128):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(embedding_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden // 2),
                                 nn.ReLU(), nn.Linear(hidden // 2, n_speakers))

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.net(embedding)


class AuxTasks(nn.Module):
    """The networks of the switched-on tasks and their losses (None when a batch has no row for one)."""

    def __init__(self, config: AuxConfig, embedding_dim: int, feature_dim: int):
        super().__init__()
        self.config = config
        r, c, s = config.reconstruction, config.conversion, config.speaker
        self.decoder = FeatureDecoder(embedding_dim, feature_dim, r.bins, r.hidden) if r.weight > 0 else None
        self.converter = FeatureConverter(feature_dim, c.hidden, c.kernel) if c.weight > 0 else None
        if s.weight > 0 and s.n_speakers < 2:
            raise ValueError(f"aux.speaker needs at least 2 training speakers, got n_speakers={s.n_speakers} "
                             "(train_fold sets it from the fold's training part)")
        self.speaker_head = SpeakerClassifier(embedding_dim, s.n_speakers, s.hidden) if s.weight > 0 else None

    # ---- S1 --------------------------------------------------------------------------------

    def reconstruction_loss(self, embedding: torch.Tensor, features: Features,
                            utt_targets: torch.Tensor) -> torch.Tensor | None:
        """MSE between the decoded and the true stretch means over bona fide rows' valid stretches,
        times batch size / bona fide count (the reference's scaling)."""
        bona = (utt_targets == BONA_FIDE).to(embedding.device)
        if not bona.any():
            return None
        values, frames = features.clips()
        values, frames = values.flatten(2).to(embedding.device), frames.to(embedding.device)
        target, filled = bin_means(values[bona].detach().float(), frames[bona], self.config.reconstruction.bins)
        error = (self.decoder(embedding[bona].float()).float() - target).square().mean(-1)  # [n_bona, bins]
        mse = (error * filled).sum() / filled.sum()
        return mse * len(bona) / bona.sum()

    # ---- S2 --------------------------------------------------------------------------------

    def convert(self, features: Features) -> Features:
        return features.replace(self.converter(features.values, features.frames))

    @staticmethod
    def fidelity(converted: Features, original: Features) -> torch.Tensor:
        """MSE of the converted features to the spoof features they came from, over valid frames."""
        diff = (converted.values.float() - original.values.float().detach()).flatten(2).square().mean(-1)
        valid = valid_mask(original.frames.to(diff.device), diff.shape[1]).to(diff.dtype)
        return (diff * valid).sum() / valid.sum().clamp_min(1)

    @staticmethod
    def bona_fide_targets(utt_targets: torch.Tensor, seg_targets: torch.Tensor):
        """What the converter wants the detector to say: bona fide wherever a label exists."""
        return torch.zeros_like(utt_targets), torch.where(seg_targets == IGNORE, seg_targets,
                                                          torch.zeros_like(seg_targets))

    # ---- S3 --------------------------------------------------------------------------------

    def speaker_loss(self, embedding: torch.Tensor, speakers: torch.Tensor,
                     utt_targets: torch.Tensor) -> torch.Tensor | None:
        """Cross-entropy of the speaker classifier on bona fide rows with a known speaker (index >= 0)."""
        speakers = speakers.to(embedding.device)
        rows = (utt_targets.to(embedding.device) == BONA_FIDE) & (speakers >= 0)
        if not rows.any():
            return None
        return F.cross_entropy(self.speaker_head(embedding[rows].float()).float(), speakers[rows])
