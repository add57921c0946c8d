"""The data side of fold training: a fold's clips, their loaders and the per-clip augmentation.

The fold's training part and validation part (its OOF clips) come from folds.csv (written on
first use), the test split from test.csv; hidden test labels are kept apart, to score only.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from antispoof.augment import wave_augmenter
from antispoof.config import load_config
from antispoof.data.clip_check import CHECK_CACHE, ClipLimits, bad_clips_message, check_clips
from antispoof.data.dataset import ClipDataset, LengthGroupedBatchSampler, collate, speaker_names
from antispoof.data.folds import make_folds, training_mask
from antispoof.data.manifest import load_segments, load_split
from antispoof.features.state_cache import StateCache
from antispoof.features.state_dataset import StateDataset, collate_states
from antispoof.inference.states import embed_dataset
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
        folds_path = folds_csv(cfg.output_root, data_dir.name)
        train, self.skipped = usable_clips(load_split(data_dir, "train"), cfg, data_dir / "train.csv")
        if not folds_path.exists():
            make_folds(data_dir, k=cfg.data.folds, seed=cfg.data.fold_seed, out=folds_path)
        folds = pd.read_csv(folds_path, dtype={"utt_id": str, "exclude": str}).set_index("utt_id")
        missing = set(train.utt_id) - set(folds.index)
        if missing:
            raise ManifestError(f"{folds_path}: {len(missing)} training clips have no fold (stale file?); delete it")
        if fold not in set(folds["fold"]):
            raise ManifestError(f"{folds_path}: there is no fold {fold} (folds: {sorted(set(folds['fold']))})")
        rows = folds.loc[train.utt_id]
        in_fold = rows["fold"].to_numpy() == fold
        # Leave-one-attack-out folds also keep this fold's held-out attacks out of its training part.
        self.train, self.valid = train[training_mask(rows, fold)], train[in_fold]
        # ... and marks the validation clips of those attacks (model selection on unseen attacks)
        held = (rows["held_out"].fillna(0).astype(int).to_numpy() == 1 if "held_out" in rows.columns
                else np.zeros(len(rows), dtype=bool))
        self.held_out = set(rows.index[in_fold & held])
        self.segments = load_segments(data_dir / "train_segments.npz", train)
        test, _ = usable_clips(load_split(data_dir, "test"), cfg, data_dir / "test.csv", test=True)
        # The model and test.parquet never see hidden labels; they are joined only to score.
        self.test = test[[c for c in test.columns if c != "label"]]
        self.solution = test[[c for c in ("utt_id", "label", "condition") if c in test]] if "label" in test else None
        self.solution_segments = (load_segments(data_dir / "solution_segments.npz", test)
                                  if self.solution is not None else {})
        self.cfg = cfg
        self.wave_augment = wave_augmenter(augment_config(cfg).wave, self.train)
        self.cache = state_cache(cfg) if cfg.get("embed") else None
        speaker_task = (cfg.get("aux") or {}).get("speaker") or {}
        self.speakers = (speaker_index(self.train, data_dir / "train.csv", fold)
                         if float(speaker_task.get("weight", 0) or 0) > 0 else None)

    def loader(self, part: str, train: bool = False, shard: bool = True) -> DataLoader:
        """A part's loader. Under DDP the fit's loaders are sharded across ranks (`shard`); the
        prediction loaders after the fit are not (`shard=False`): one process scores every clip."""
        table = {"train": self.train, "valid": self.valid, "test": self.test}[part]
        d = self.cfg.data
        sampler = LengthGroupedBatchSampler(table.duration, d.batch_size, d.max_batch_s, shuffle=train,
                                            seed=self.cfg.seed, even=train,
                                            **({} if shard else {"num_replicas": 1, "rank": 0}))
        if self.cache is not None:  # cached encoder states instead of audio: no reading, no wave chain
            views = int(self.cfg.embed.views) if train else 1
            dataset = StateDataset(table, self.cache, self.segments, views=views, seed=self.cfg.seed,
                                   speakers=self.speakers if train else None)
            return DataLoader(dataset, batch_sampler=sampler, collate_fn=collate_states, num_workers=0)
        dataset = ClipDataset(table, self.segments, crop_s=d.crop_s if train else None, seed=self.cfg.seed,
                              augment=self.wave_augment if train else None, speakers=self.speakers if train else None)
        return DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=_workers(d.num_workers),
                          persistent_workers=False, pin_memory=torch.cuda.is_available())


def speaker_index(train: pd.DataFrame, csv_path: Path, fold: int) -> dict[str, int]:
    """Speaker -> class index over the bona fide clips of the fold's training part (speaker
    classification, aux.speaker); a data set without two such speakers is refused in one line."""
    if "speaker" not in train:
        raise ManifestError(f"{csv_path}: aux.speaker (speaker classification) needs a `speaker` column; "
                            "this data set has none (set aux.speaker.weight=0)")
    bona = train.label.to_numpy() == "bonafide"
    names = sorted({s for s, b in zip(speaker_names(train), bona) if b and s is not None})
    if len(names) < 2:
        raise ManifestError(f"{csv_path}: aux.speaker (speaker classification) needs at least 2 speakers among the "
                            f"bona fide clips of fold {fold}'s training part, the `speaker` column names "
                            f"{len(names)} (set aux.speaker.weight=0)")
    return {name: i for i, name in enumerate(names)}


def usable_clips(table: pd.DataFrame, cfg: DictConfig, csv_path: Path,
                 test: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The audio check over a split (cached beside folds.csv): unusable clips fail in one line, or,
    for training clips with `data.check.bad_train_clips: skip`, are dropped and returned to be listed."""
    check = cfg.data.get("check")
    policy = check.get("bad_train_clips", "error") if check is not None else "error"
    if policy not in ("error", "skip"):
        raise ManifestError(f"data.check.bad_train_clips must be error or skip, not {policy!r}")
    cache = folds_csv(cfg.output_root, Path(cfg.data.dir).name).parent / CHECK_CACHE
    result = check_clips(table["audio"], ClipLimits.from_config(check), cache, progress=f"checking {csv_path.name}")
    bad = (result["problem"] != "").to_numpy()
    if bad.any() and (test or policy == "error"):
        hint = ("a test clip is never skipped" if test else "data.check.bad_train_clips=skip drops them") + \
            f"; antispoof check --data {cfg.data.dir} lists them all"
        raise ManifestError(bad_clips_message(csv_path, result, hint))
    skipped = pd.DataFrame({"utt_id": table["utt_id"].to_numpy()[bad], "problem": result["problem"].to_numpy()[bad]})
    for row in skipped.itertuples():
        print(f"skipping training clip {row.utt_id}: {row.problem}")
    return table[~bad], skipped


def state_cache(cfg: DictConfig) -> StateCache:
    """The experiment's frozen-encoder cache (its `embed` section), embedding whatever is missing
    first: a fold run on a new data set starts with `antispoof embed` and resumes it."""
    return StateCache(*embed_experiment(cfg))


def embed_experiment(cfg: DictConfig, root: str | None = None, device: str | None = None, force: bool = False,
                     shard: tuple[int, int] | None = None) -> tuple[Path, list[int]]:
    """Embed what the experiment's cache lacks with the very settings its folds read it with (layers,
    augmented views and their wave chain, seed, quantize), so `antispoof embed --model <experiment>`,
    sharded or not, fills the cache training then finds complete. -> the cache folder and its layers."""
    e = cfg.embed
    wave_cfg = load_config(f"augment/{e.views_augment}").wave if e.views > 1 else None
    return embed_dataset(cfg.data.dir, e.encoder, e.layers, root or e.root, cfg.output_root, e.batch_seconds,
                         e.max_seconds, e.views, wave_cfg, cfg.seed, device=device, force=force, shard=shard,
                         quantize=e.get("quantize", "none"))


def augment_config(cfg: DictConfig) -> DictConfig:
    """The experiment's augmentation settings (configs written before augmentation had none: off)."""
    return cfg.augment if isinstance(cfg.get("augment"), DictConfig) else load_config("augment/none")
