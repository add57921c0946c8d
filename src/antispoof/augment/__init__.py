"""Augmentation: per-clip wave transforms in the data-loader workers (wave.py) and per-batch
transforms on the device where the batch lives (batch.py); RawBoost (rawboost.py) is one wave
step and can be called on its own. Configured by `augment` presets
(configs/augment/*.yaml); `augment: none` turns everything off."""
from antispoof.augment.batch import BatchAugmenter, SpecAugment
from antispoof.augment.rawboost import RawBoost
from antispoof.augment.wave import AugmentError, Clip, WaveAugmenter, wave_augmenter

__all__ = ["AugmentError", "BatchAugmenter", "Clip", "RawBoost", "SpecAugment", "WaveAugmenter", "wave_augmenter"]
