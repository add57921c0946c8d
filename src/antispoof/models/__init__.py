"""Detectors: SELCNN / LCNN trunks and the SELCNN-MTL family of the PartialSpoof MTL paper."""
from antispoof.models.selcnn import MFM, SELCNN, SEBlock
from antispoof.models.selcnn_mtl import VARIANTS, P2SHead, SELCNNMTL, SELCNNMTLConfig, segment_targets

__all__ = ["MFM", "SEBlock", "SELCNN", "P2SHead", "SELCNNMTL", "SELCNNMTLConfig", "VARIANTS", "segment_targets"]
