"""Augmentation: per-clip wave transforms in the data-loader workers (wave.py) and per-batch
transforms on the device where the batch lives (batch.py). Configured by `augment` presets
(configs/augment/*.yaml); `augment: none` turns everything off."""
from antispoof.augment.batch import BatchAugmenter, SpecAugment
from antispoof.augment.wave import AugmentError, Clip, WaveAugmenter, wave_augmenter

__all__ = ["AugmentError", "BatchAugmenter", "Clip", "SpecAugment", "WaveAugmenter", "wave_augmenter"]
