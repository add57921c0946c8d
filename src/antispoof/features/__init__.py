"""Acoustic front ends computed on the device where the batch lives."""
from antispoof.features.lfcc import LFCC

__all__ = ["LFCC"]
