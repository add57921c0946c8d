"""Acoustic front ends computed on the device where the batch lives."""
from antispoof.features.lfcc import LFCC
from antispoof.features.logmel import WhisperLogMel

__all__ = ["LFCC", "WhisperLogMel"]
