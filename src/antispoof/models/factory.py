"""Detector factory: `model.family` in a config picks the class, the rest of `model` configures it."""
from __future__ import annotations

from omegaconf import DictConfig, OmegaConf
from torch import nn


def build_model(cfg: DictConfig | dict) -> nn.Module:
    options = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    family = options.pop("family")
    if family == "selcnn_mtl":
        from antispoof.models.selcnn_mtl import SELCNNMTL, SELCNNMTLConfig

        return SELCNNMTL(SELCNNMTLConfig(**options))
    if family == "whisper":
        from antispoof.models.whisper_detector import WhisperDetector, WhisperDetectorConfig

        return WhisperDetector(WhisperDetectorConfig(**options))
    raise ValueError(f"unknown model family {family!r} (known: selcnn_mtl, whisper)")
