"""SELCNN-MTL: one detector for utterance- and segment-level spoofing, in the paper's seven variants.

Zhang, Wang, Cooper, Yamagishi, "Multi-task learning in utterance-level and segmental-level
spoof detection" (ASVspoof 2021 workshop): LFCC -> SELCNN -> two Bi-LSTM layers with a residual
connection -> h, one 96-dim vector per 160 ms segment -> P2SGrad heads (Linear + cosine with two
class vectors). Branch layout, scores and losses follow Table 2 and sections 3.1-4.2.

Conventions: every score is "higher = more bona fide"; cosine column 0 is bona fide, 1 spoof;
loss targets are class indices (0 bona fide, 1 spoof, -1 ignored); `segment_targets` turns the
data's 10 ms labels (1 bona fide, 0 spoof, -1 padding) into per-segment labels of the same kind.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from antispoof.features import LFCC
from antispoof.losses import OCSoftmaxLoss, P2SGradLoss
from antispoof.models.common import (CentreHead, CosineHead, Features, check_loss, fit_segment_targets, masked_mean,
                                     masked_min, valid_mask)
from antispoof.models.common import segment_targets as pool_segment_labels
from antispoof.models.selcnn import SELCNN

VARIANTS = {
    "utterance": "single task on utterance labels: average pooling + head; segment scores derived (Table 2)",
    "segment": "single task on segment labels: head per 160 ms segment; utterance score = min over segments",
    "uttu": "uni-branch MTL led by the utterance: one head on the pooled vector and on every segment",
    "segu": "uni-branch MTL led by the segment: one segment head; utterance = the lowest-scoring segment",
    "mulbs": "binary-branch MTL from scratch: utterance head on the pooled vector + segment head",
    "uttbw": "binary-branch MTL fine-tuned from an utterance model (load_warmup)",
    "segbw": "binary-branch MTL fine-tuned from a segment model (load_warmup; the paper's best)",
}
_UTT_HEAD = ("utterance", "uttu", "mulbs", "uttbw", "segbw")
_SEG_HEAD = ("segment", "segu", "mulbs", "uttbw", "segbw")
SEGMENT_FRAMES = 16  # SELCNN's time reduction: one segment = 16 LFCC frames = 160 ms


@dataclass
class SELCNNMTLConfig:
    """Model options; `lstm_hidden` is each Bi-LSTM layer's output size (both directions).

    Layer 1 maps the SELCNN frame (96 dims) to lstm_hidden, layer 2 maps back to 96, so the
    residual adds without a projection; None uses 96 (48 units per direction, as NII).
    """

    variant: str = "segbw"
    reduction: int = 2
    use_se: bool = True
    dropout: float = 0.7
    lstm_hidden: int | None = None
    embed_dim: int = 64
    lfcc: dict = field(default_factory=dict)
    loss: str = "p2sgrad"             # p2sgrad | ocsoftmax (each head: one bona fide centre instead of 2 vectors)
    oc_softmax: dict = field(default_factory=dict)  # OCSoftmaxLoss margins: r_real, r_fake, alpha

    def __post_init__(self):
        check_loss(self.loss, "p2sgrad")
        OCSoftmaxLoss.from_options(self.oc_softmax)  # refuse bad margins when the config is read
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown variant {self.variant!r} (known: {', '.join(VARIANTS)})")
        if self.lstm_hidden is not None and self.lstm_hidden % 2:
            raise ValueError(f"lstm_hidden must be even (two directions), got {self.lstm_hidden}")


def segment_targets(labels_10ms: torch.Tensor, n_segments: torch.Tensor, factor: int = SEGMENT_FRAMES) -> torch.Tensor:
    """10 ms labels -> labels of 160 ms segments (see common.segment_targets)."""
    return pool_segment_labels(labels_10ms, n_segments, factor)


class ResidualBiLSTM(nn.Module):
    """h = x + BiLSTM2(BiLSTM1(x)); packed, so padding segments never reach valid ones.

    The residual over the two layers is what the paper uses to stabilise training.
    """

    def __init__(self, dim: int, hidden: int | None = None):
        super().__init__()
        hidden = hidden or dim
        self.lstm1 = nn.LSTM(dim, hidden // 2, batch_first=True, bidirectional=True)
        self.lstm2 = nn.LSTM(hidden, dim // 2, batch_first=True, bidirectional=True)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.lstm2(self.lstm1(packed)[0])
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        return x + out


class P2SHead(CosineHead):
    """Linear(dim, embed_dim), then cosines with two length-normalised class vectors (P2SGrad).

    Returns (cos [..., 2], projected vector [..., embed_dim]); cosines are float32 even under
    autocast because the loss is a difference of numbers in [-1, 1].
    """


class SELCNNMTL(nn.Module):
    """wave [B, S] + lengths [B] -> cosines and scores at both levels (see `forward`)."""

    def __init__(self, config: SELCNNMTLConfig | None = None):
        super().__init__()
        self.config = config = config or SELCNNMTLConfig()
        self.lfcc = LFCC(**config.lfcc)
        self.cnn = SELCNN(self.lfcc.out_dim, config.reduction, config.use_se, config.dropout)
        dim = SELCNN.output_dim(self.lfcc.out_dim)
        self.lstm = ResidualBiLSTM(dim, config.lstm_hidden)
        head = CentreHead if config.loss == "ocsoftmax" else P2SHead
        if config.variant in _UTT_HEAD:
            self.utt_head = head(dim, config.embed_dim)
        if config.variant in _SEG_HEAD:
            self.seg_head = head(dim, config.embed_dim)
        self.loss_fn = OCSoftmaxLoss.from_options(config.oc_softmax) if config.loss == "ocsoftmax" else P2SGradLoss()
        self.spec_augment: nn.Module | None = None
        self.embedding_dim, self.feature_dim = dim, self.lfcc.out_dim  # the auxiliary tasks' hook

    segment_targets = staticmethod(segment_targets)
    segment_hop_s = SEGMENT_FRAMES * 0.01  # one segment score per 160 ms (time shrinks by 16)
    input_key = "wave"

    def set_spec_augment(self, module: nn.Module | None) -> None:
        """SpecAugment on the LFCC frames (augment.SpecAugment; it acts only in training mode)."""
        self.spec_augment = module

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def input_features(self, wave: torch.Tensor, lengths: torch.Tensor | None = None) -> Features:
        """The LFCC frames [B, T, 60] the trunk reads (before SpecAugment, which is training's)."""
        return Features(*self.lfcc(wave, lengths))

    def embed(self, wave: torch.Tensor, lengths: torch.Tensor | None = None):
        """-> h [B, M, 96] (zero past each clip's segments), segment counts [B]."""
        return self.embed_features(self.input_features(wave, lengths))

    def embed_features(self, features: Features):
        """LFCC -> h [B, M, 96], segment counts [B]. Clips under 16 frames (~150 ms) are zero-extended
        to one segment."""
        feats, frames = features.values, features.frames
        if self.spec_augment is not None:
            feats = self.spec_augment(feats, frames)
        feats = F.pad(feats, (0, 0, 0, max(0, SEGMENT_FRAMES - feats.shape[1])))
        frames = frames.clamp_min(SEGMENT_FRAMES)
        x = self.cnn(feats[:, None], frames)  # [B, 32, M, F // 16]
        x = x.permute(0, 2, 1, 3).flatten(2)  # [B, M, 32 * (F // 16)]
        seg_lengths = SELCNN.output_lengths(frames)
        h = self.lstm(x, seg_lengths)
        return h * valid_mask(seg_lengths, h.shape[1])[..., None].to(h.dtype), seg_lengths

    # ---- branches: each returns (utt_cos, seg_cos, utt_score, seg_scores) ------------------

    def _utterance(self, h, valid):
        """Table 2: s_m = (|p_m| / |o|) cos(c_bona, p_m) = c_bona^T p_m / |o|.

        o = fc(AP(h)) = mean of the valid p_m (fc is affine), so the mean of the s_m over valid
        segments is exactly the utterance score cos(c_bona, o).
        """
        utt_cos, pooled = self.utt_head(masked_mean(h, valid))
        segment = self.utt_head.bona_fide_dot(self.utt_head.fc(h))
        seg_scores = segment / pooled.float().norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return utt_cos, None, utt_cos[:, 0], seg_scores

    def _segment(self, h, valid):
        seg_cos, _ = self.seg_head(h)
        return None, seg_cos, masked_min(seg_cos[..., 0], valid), seg_cos[..., 0]

    def _uttu(self, h, valid):
        """One head, the same processing for the pooled vector and every segment vector."""
        utt_cos, _ = self.utt_head(masked_mean(h, valid))
        seg_cos, _ = self.utt_head(h)
        return utt_cos, seg_cos, utt_cos[:, 0], seg_cos[..., 0]

    def _segu(self, h, valid):
        """The utterance is judged by its least bona fide segment, for the loss as for the score."""
        seg_cos, _ = self.seg_head(h)
        lowest = seg_cos[..., 0].masked_fill(~valid, math.inf).argmin(1)
        utt_cos = seg_cos[torch.arange(len(h), device=h.device), lowest]
        return utt_cos, seg_cos, utt_cos[:, 0], seg_cos[..., 0]

    def _binary(self, h, valid):
        utt_cos, _ = self.utt_head(masked_mean(h, valid))
        seg_cos, _ = self.seg_head(h)
        return utt_cos, seg_cos, utt_cos[:, 0], seg_cos[..., 0]

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor | None = None) -> dict:
        """-> dict(utt_cos [B, C] | None, seg_cos [B, M, C] | None, seg_lengths [B],
        utt_score [B], utt_branch_score [B] | None (the utterance head's cos_bona), seg_scores [B, M],
        utt_embedding [B, 96] (the trunk's average over segments, the auxiliary tasks' input)).

        C is 2 (P2SGrad's class vectors) or 1 (OC-softmax's centre); column 0 is bona fide. A cosine
        is None when the variant has no loss at that level. seg_scores are NaN past seg_lengths (so
        a careless mean or min shows up); seg_cos there is meaningless.
        """
        return self.forward_features(self.input_features(wave, lengths))

    def forward_features(self, features: Features) -> dict:
        """`forward` from the LFCC frames on (what a converted spoof of S2 goes through)."""
        h, seg_lengths = self.embed_features(features)
        valid = valid_mask(seg_lengths, h.shape[1])
        branch = {"utterance": self._utterance, "segment": self._segment, "uttu": self._uttu,
                  "segu": self._segu}.get(self.config.variant, self._binary)
        utt_cos, seg_cos, utt_score, seg_scores = branch(h, valid)
        return {"utt_cos": utt_cos, "seg_cos": seg_cos, "seg_lengths": seg_lengths, "utt_score": utt_score,
                "utt_branch_score": None if utt_cos is None else utt_cos[:, 0],
                "seg_scores": seg_scores.masked_fill(~valid, math.nan), "utt_embedding": masked_mean(h, valid)}

    def losses(self, outputs: dict, utt_targets: torch.Tensor, seg_targets: torch.Tensor) -> dict:
        """P2SGrad (or OC-softmax) losses; targets are class indices (0 bona fide, 1 spoof, -1 ignored).

        seg_targets [B, M'] are cut or -1-padded to the model's M and ignored past seg_lengths.
        Returns dict(utt, seg, total): a level without a loss in this variant is None; total is
        L_utt + L_seg for the MTL variants and the single loss for single-task ones.
        """
        utt = seg = None
        if outputs["utt_cos"] is not None:
            utt = self.loss_fn(outputs["utt_cos"], utt_targets.to(outputs["utt_cos"].device))
        if outputs["seg_cos"] is not None:
            seg_cos = outputs["seg_cos"]
            targets = fit_segment_targets(seg_targets, outputs["seg_lengths"].to(seg_cos.device), seg_cos.shape[1])
            seg = self.loss_fn(seg_cos, targets)
        total = sum(loss for loss in (utt, seg) if loss is not None)
        return {"utt": utt, "seg": seg, "total": total}

    def load_warmup(self, state_dict: dict) -> tuple[list[str], list[str]]:
        """Start from a single-level model (UttBW / SegBW, section 4.2).

        Copies every entry whose name and shape match: the shared LFCC/SELCNN/Bi-LSTM and the
        branch the warm-up model had (an utterance model's utt_head, a segment model's
        seg_head); the rest keeps its fresh initialisation. Names must be this module's
        (strip wrapper prefixes such as Lightning's "model." first).
        Returns (loaded names, newly initialised names), state-dict keys, buffers included.
        """
        own = self.state_dict()
        take = {k: v for k, v in state_dict.items() if k in own and own[k].shape == v.shape}
        if not any(k.startswith("cnn.") for k in take):
            raise ValueError("load_warmup: no SELCNN weight matched; is the state dict prefixed?")
        self.load_state_dict(take, strict=False)
        return sorted(take), [k for k in own if k not in take]
