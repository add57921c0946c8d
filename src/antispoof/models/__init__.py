"""Detectors: the SELCNN-MTL family of the PartialSpoof MTL paper and the Whisper-encoder detector."""
from antispoof.models.selcnn import MFM, SELCNN, SEBlock
from antispoof.models.selcnn_mtl import VARIANTS, P2SHead, SELCNNMTL, SELCNNMTLConfig, segment_targets
from antispoof.models.whisper_detector import WhisperDetector, WhisperDetectorConfig

__all__ = ["MFM", "SEBlock", "SELCNN", "P2SHead", "SELCNNMTL", "SELCNNMTLConfig", "VARIANTS", "segment_targets",
           "WhisperDetector", "WhisperDetectorConfig"]
