"""SELCNN: the LCNN of the NII countermeasures with an SE block before every conv but the first.

Layer names and sizes follow Table 1 of Zhang et al., "Multi-task learning in utterance-level
and segmental-level spoof detection" (ASVspoof 2021 workshop); `use_se=False` is the plain LCNN
baseline of its Table 4. Time and frequency shrink by 16: one vector per 160 ms of audio.

Given frame lengths, padding cannot reach a clip's valid frames: convs wider than one frame see
zeros past each clip's end (as their own zero padding gives a clip alone) and SE blocks average
over valid frames only. In training mode BatchNorm statistics still include padded frames.
"""
from __future__ import annotations

import torch
from torch import nn


def time_mask(lengths: torch.Tensor, frames: int) -> torch.Tensor:
    """[B, 1, T, 1] float mask: 1 on a clip's frames, 0 on padding."""
    t = torch.arange(frames, device=lengths.device)
    return (t[None, :] < lengths[:, None]).float()[:, None, :, None]


class MFM(nn.Module):
    """Max-feature-map: elementwise max of the two channel halves (LCNN's competitive activation)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # max over a pair axis: same values as maximum(first, second), ~30 % faster backward on CPU
        return x.unflatten(1, (2, -1)).max(dim=1).values


class SEBlock(nn.Module):
    """Squeeze-and-excitation (Figure 1): per-channel weights from the global average over T and F.

    MFM picks one of two filters per position; SE adds a learned, input-dependent weight per
    channel, which the paper found to help (r = 2 best).
    """

    def __init__(self, channels: int, reduction: int = 2):
        super().__init__()
        self.excitation = nn.Sequential(
            nn.Linear(channels, channels // reduction), nn.ReLU(inplace=True),
            nn.Linear(channels // reduction, channels), nn.Sigmoid())

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        # float32 sums: averages over thousands of half-precision values drift
        if lengths is None:
            squeezed = x.float().mean(dim=(2, 3))
        else:
            count = (lengths.clamp_min(1) * x.shape[3]).float()[:, None]
            squeezed = (x.float() * time_mask(lengths, x.shape[2])).sum(dim=(2, 3)) / count
        return x * self.excitation(squeezed).to(x.dtype)[:, :, None, None]


def _layer(kind: str, arg) -> nn.Module:
    """One Table 1 layer: conv (in, out, kernel) with "same" padding, MFM, 2x2 max pool or BN."""
    if kind == "conv":
        c_in, c_out, kernel = arg
        return nn.Conv2d(c_in, c_out, kernel, stride=1, padding=kernel // 2)
    if kind == "bn":
        return nn.BatchNorm2d(arg)
    return MFM() if kind == "mfm" else nn.MaxPool2d(2, 2)


# Table 1 after Conv_0 / MFM_1 / MaxPool_2: (layer, argument); "conv" = (in, out, kernel),
# "bn" = channels; every conv here gets an SE block on its input when use_se.
_TABLE_1 = [
    ("conv_3", (32, 64, 1)), ("mfm_4", None), ("bn_5", 32),
    ("conv_6", (32, 96, 3)), ("mfm_7", None), ("maxpool_8", None), ("bn_9", 48),
    ("conv_10", (48, 96, 1)), ("mfm_11", None), ("bn_12", 48),
    ("conv_13", (48, 128, 3)), ("mfm_14", None), ("maxpool_15", None),
    ("conv_16", (64, 128, 1)), ("mfm_17", None), ("bn_18", 64),
    ("conv_19", (64, 64, 3)), ("mfm_20", None), ("bn_21", 32),
    ("conv_22", (32, 64, 1)), ("mfm_23", None), ("bn_24", 32),
    ("conv_25", (32, 64, 3)), ("mfm_26", None), ("maxpool_27", None),
]


class SELCNN(nn.Module):
    """[B, 1, T, F] -> [B, 32, T // 16, F // 16] (Table 1); layers named as in the table.

    SE blocks are named after the conv they feed ("se_3" precedes "conv_3").
    """

    def __init__(self, in_features: int = 60, reduction: int = 2, use_se: bool = True, dropout: float = 0.7):
        super().__init__()
        self.in_features = in_features
        layers: dict[str, nn.Module] = {"conv_0": _layer("conv", (1, 64, 5)), "mfm_1": MFM(),
                                        "maxpool_2": nn.MaxPool2d(2, 2)}
        for name, arg in _TABLE_1:
            kind, index = name.split("_")
            if kind == "conv" and use_se:
                layers[f"se_{index}"] = SEBlock(arg[0], reduction)
            layers[name] = _layer(kind, arg)
        layers["dropout_28"] = nn.Dropout(dropout)
        self.layers = nn.ModuleDict(layers)

    @staticmethod
    def output_dim(in_features: int = 60) -> int:
        """Size of one flattened output frame (channels x frequency bins): 96 for 60 features."""
        return 32 * (in_features // 16)

    @staticmethod
    def output_lengths(lengths: torch.Tensor) -> torch.Tensor:
        """Valid output frames of clips with `lengths` input frames (four floor-halving pools)."""
        return lengths // 16

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """x [B, 1, T, F]; lengths [B] valid frames (None: all frames valid)."""
        for layer in self.layers.values():
            if isinstance(layer, SEBlock):
                x = layer(x, lengths)
            elif isinstance(layer, nn.Conv2d) and layer.kernel_size[0] > 1 and lengths is not None:
                x = layer(x * time_mask(lengths, x.shape[2]).to(x.dtype))
            else:
                x = layer(x)
            if isinstance(layer, nn.MaxPool2d) and lengths is not None:
                lengths = lengths // 2
        return x
