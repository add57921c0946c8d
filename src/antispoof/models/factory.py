"""Detector registry: `model.family` in a config names the family, the rest of `model` configures it.

A new detector is one module (a models.Detector and its config dataclass) and one entry here.
"""
from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from antispoof.models.detector import Detector
from antispoof.models.frozen_heads import FrozenHeadConfig, FrozenPooledHead, MHFAHead
from antispoof.models.selcnn_mtl import SELCNNMTL, SELCNNMTLConfig
from antispoof.models.whisper_detector import WhisperDetector, WhisperDetectorConfig

FAMILIES = {  # family -> (detector class, its config dataclass)
    "selcnn_mtl": (SELCNNMTL, SELCNNMTLConfig),
    "whisper": (WhisperDetector, WhisperDetectorConfig),
    "frozen_pooled": (FrozenPooledHead, FrozenHeadConfig),   # heads on cached frozen-encoder states
    "frozen_mhfa": (MHFAHead, FrozenHeadConfig),
}


def build_model(cfg: DictConfig | dict) -> Detector:
    options = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    family = options.pop("family")
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r} (known: {', '.join(FAMILIES)})")
    detector, config = FAMILIES[family]
    return detector(config(**options))
