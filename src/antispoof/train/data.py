"""The data side of fold training: a fold's clips, their loaders and the per-clip augmentation.

The fold's training part and validation part (its OOF clips) come from folds.csv (written on
first use), the test split from test.csv; hidden test labels are kept apart, to score only.
"""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from antispoof.augment import WaveAugmenter
from antispoof.config import load_config
from antispoof.data.dataset import ClipDataset, LengthGroupedBatchSampler, collate
from antispoof.data.folds import make_folds
from antispoof.data.manifest import load_segments, load_split
from antispoof.data.sources import effect_sounds, noise_beds
from antispoof.features.state_cache import StateCache
from antispoof.features.state_dataset import StateDataset, collate_states
from antispoof.runs import folds_csv
from antispoof.schema import ManifestError


def _workers(setting) -> int:
    """`auto`: none on a CPU-only machine (loading FLAC is cheap; workers would steal the cores
    the model trains on: 43 s vs 49-66 s per mini epoch on 2 cores), up to 8 beside a GPU."""
    if setting != "auto":
        return int(setting)
    return min(8, max(1, (os.cpu_count() or 2) - 2)) if torch.cuda.is_available() else 0


class FoldData:
    """The fold's training part, its validation part (OOF) and the test split, with labels."""

    def __init__(self, cfg: DictConfig, fold: int):
        data_dir = Path(cfg.data.dir)
        train = load_split(data_dir, "train")
        folds_path = folds_csv(cfg.output_root, data_dir.name)
        if not folds_path.exists():
            make_folds(data_dir, k=cfg.data.folds, seed=cfg.data.fold_seed, out=folds_path)
        folds = pd.read_csv(folds_path, dtype={"utt_id": str}).set_index("utt_id")["fold"]
        missing = set(train.utt_id) - set(folds.index)
        if missing:
            raise ManifestError(f"{folds_path}: {len(missing)} training clips have no fold (stale file?); delete it")
        if fold not in set(folds):
            raise ManifestError(f"{folds_path}: there is no fold {fold} (folds: {sorted(set(folds))})")
        in_fold = train.utt_id.map(folds).to_numpy() == fold
        self.train, self.valid = train[~in_fold], train[in_fold]
        self.segments = load_segments(data_dir / "train_segments.npz", train)
        test = load_split(data_dir, "test")
        # The model and test.parquet never see hidden labels; they are joined only to score.
        self.test = test[[c for c in test.columns if c != "label"]]
        self.solution = test[[c for c in ("utt_id", "label", "condition") if c in test]] if "label" in test else None
        self.solution_segments = (load_segments(data_dir / "solution_segments.npz", test)
                                  if self.solution is not None else {})
        self.cfg = cfg
        self.wave_augment = wave_augmenter(augment_config(cfg).wave, self.train)
        self.cache = state_cache(cfg) if cfg.get("embed") else None

    def loader(self, part: str, train: bool = False) -> DataLoader:
        table = {"train": self.train, "valid": self.valid, "test": self.test}[part]
        d = self.cfg.data
        if self.cache is not None:
            return self._state_loader(table, train)
        dataset = ClipDataset(table, self.segments, crop_s=d.crop_s if train else None, seed=self.cfg.seed,
                              augment=self.wave_augment if train else None)
        sampler = LengthGroupedBatchSampler(table.duration, d.batch_size, d.max_batch_s, shuffle=train,
                                            seed=self.cfg.seed)
        return DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=_workers(d.num_workers),
                          persistent_workers=False, pin_memory=torch.cuda.is_available())

    def _state_loader(self, table: pd.DataFrame, train: bool) -> DataLoader:
        """Cached encoder states instead of audio (frozen-encoder heads): no reading, no wave chain."""
        d, views = self.cfg.data, int(self.cfg.embed.views) if train else 1
        dataset = StateDataset(table, self.cache, self.segments, views=views, seed=self.cfg.seed)
        sampler = LengthGroupedBatchSampler(table.duration, d.batch_size, d.max_batch_s, shuffle=train,
                                            seed=self.cfg.seed)
        return DataLoader(dataset, batch_sampler=sampler, collate_fn=collate_states, num_workers=0)


def state_cache(cfg: DictConfig) -> StateCache:
    """The experiment's frozen-encoder cache (its `embed` section), embedding whatever is missing
    first: a fold run on a new data set starts with `antispoof embed` and resumes it."""
    from antispoof.embed import embed_dataset

    e = cfg.embed
    wave_cfg = load_config(f"augment/{e.views_augment}").wave if e.views > 1 else None
    root, layers = embed_dataset(cfg.data.dir, e.encoder, e.layers, e.root, cfg.output_root, e.batch_seconds,
                                 e.max_seconds, e.views, wave_cfg, cfg.seed)
    return StateCache(root, layers)


def augment_config(cfg: DictConfig) -> DictConfig:
    """The experiment's augmentation settings (configs written before augmentation had none: off)."""
    return cfg.augment if isinstance(cfg.get("augment"), DictConfig) else load_config("augment/none")


def wave_augmenter(wave_cfg: DictConfig, train: pd.DataFrame) -> WaveAugmenter:
    """The per-clip chain, with what its steps draw on: noise beds and effects for `background`,
    the fold's own bona fide training clips for `babble` (never validation or test clips)."""
    context = {"babble_clips": train.loc[train.label == "bonafide", "audio"].tolist()}
    if wave_cfg.background.p > 0:
        roots = [Path(r) for r in wave_cfg.background.roots]
        context["noise_beds"] = noise_beds(roots) + effect_sounds(roots)
    return WaveAugmenter(wave_cfg, context)
