"""Detectors: the SELCNN-MTL family of the PartialSpoof MTL paper and the Whisper-encoder detector.

Every family implements models.detector.Detector and has one entry in models.factory.FAMILIES.
"""
from antispoof.models.detector import Detector
from antispoof.models.selcnn import MFM, SELCNN, SEBlock
from antispoof.models.selcnn_mtl import VARIANTS, P2SHead, SELCNNMTL, SELCNNMTLConfig, segment_targets
from antispoof.models.whisper_detector import WhisperDetector, WhisperDetectorConfig

__all__ = ["Detector", "MFM", "SEBlock", "SELCNN", "P2SHead", "SELCNNMTL", "SELCNNMTLConfig", "VARIANTS", "segment_targets",
           "WhisperDetector", "WhisperDetectorConfig"]
