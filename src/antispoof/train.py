"""Fold training: one entry point for every detector, Lightning's Trainer does the loop.

`antispoof train --model selcnn_segbw --data mini --fold 0` (or `make train FOLD=0`) writes
the fold folder of antispoof.runs, folds/<dataset>/<experiment>/fold<k>/: config.yaml, checkpoints/{best,last}.ckpt, logs/run<n>/
(CSV, one folder per run so a resumed run keeps the earlier log), oof.parquet (the fold's validation part), test.parquet, metrics.json. A killed run
resumes from last.ckpt; a finished fold (metrics.json present) is skipped unless forced.
"""
from __future__ import annotations

import os
import resource
import shutil
import time
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from antispoof.augment import BatchAugmenter, WaveAugmenter
from antispoof.config import data_dir, load_config
from antispoof.data.dataset import ClipDataset, LengthGroupedBatchSampler, collate
from antispoof.data.folds import make_folds
from antispoof.data.manifest import load_segments, load_split
from antispoof.data.sources import effect_sounds, noise_beds
from antispoof.metrics.detection import compute_eer
from antispoof.models.detector import Detector
from antispoof.models.factory import build_model
from antispoof.runs import METRICS, fold_dir, folds_csv, is_finished, write_metrics
from antispoof.schema import ManifestError
from antispoof.utils import write_text_atomic


# ---- configuration and paths ---------------------------------------------------------------

def experiment_config(model: str, data: str | None = None, overrides: list[str] | None = None) -> DictConfig:
    """configs/model/<model>.yaml (+ its defaults) with the data set and command-line overrides."""
    extra = list(overrides or [])
    if data:
        extra.insert(0, f"data.dir={data_dir(data)}")
    return load_config(f"model/{model}", extra)


def _precision(setting: str) -> str:
    if setting != "auto":
        return setting
    if torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "32-true"


# ---- data ------------------------------------------------------------------------------------

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
        self.solution = test[["utt_id", "label"]] if "label" in test else None
        self.solution_segments = (load_segments(data_dir / "solution_segments.npz", test)
                                  if self.solution is not None else {})
        self.cfg = cfg
        self.wave_augment = wave_augmenter(augment_config(cfg).wave, self.train)

    def loader(self, part: str, train: bool = False) -> DataLoader:
        table = {"train": self.train, "valid": self.valid, "test": self.test}[part]
        d = self.cfg.data
        dataset = ClipDataset(table, self.segments, crop_s=d.crop_s if train else None, seed=self.cfg.seed,
                              augment=self.wave_augment if train else None)
        sampler = LengthGroupedBatchSampler(table.duration, d.batch_size, d.max_batch_s, shuffle=train,
                                            seed=self.cfg.seed)
        return DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=_workers(d.num_workers),
                          persistent_workers=False, pin_memory=torch.cuda.is_available())


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


# ---- the Lightning module ------------------------------------------------------------------

def class_targets(labels: torch.Tensor) -> torch.Tensor:
    """Data labels (1 bona fide, 0 spoof, -1 unknown) -> loss targets: class indices (0 bona fide,
    1 spoof, -1), which read as spoof probabilities, so mixup's soft bona fide labels map the same way."""
    return torch.where(labels >= 0, 1 - labels, labels)


class DetectorModule(L.LightningModule):
    """Any detector (models.Detector: its forward gives scores, its `losses` the training loss)."""

    def __init__(self, cfg: DictConfig):
        super().__init__()
        self.cfg = cfg
        self.model: Detector = build_model(cfg.model)
        self.batch_augment = BatchAugmenter(augment_config(cfg).batch, cfg.seed)
        self.model.set_spec_augment(self.batch_augment.spec_augment)
        self._val_scores: list[torch.Tensor] = []
        self._val_labels: list[torch.Tensor] = []

    def on_after_batch_transfer(self, batch, dataloader_idx):
        """Batch-level augmentation runs here: on the device the batch now lives on, training only."""
        if self.trainer.training:
            batch = self.batch_augment(batch, self.current_epoch, self.global_step)
        return batch

    def _step(self, batch):
        out = self.model(batch["wave"], batch["lengths"])
        # Min-pool 10 ms labels to the model's segments in the data convention (any spoof frame
        # makes the segment spoof), then turn them into class indices.
        seg_targets = class_targets(self.model.segment_targets(batch["seg"], out["seg_lengths"]))
        losses = self.model.losses(out, class_targets(batch["label"]), seg_targets)
        return out, losses

    def training_step(self, batch, batch_idx):
        _, losses = self._step(batch)
        size = len(batch["utt_id"])
        self.log("train_loss", losses["total"], prog_bar=True, batch_size=size)
        for name in ("utt", "seg"):
            if losses.get(name) is not None:
                self.log(f"train_loss_{name}", losses[name], batch_size=size)
        return losses["total"]

    def validation_step(self, batch, batch_idx):
        out, losses = self._step(batch)
        self.log("val_loss", losses["total"], prog_bar=True, batch_size=len(batch["utt_id"]), sync_dist=True)
        self._val_scores.append(out["utt_score"].detach().float().cpu())
        self._val_labels.append(batch["label"].cpu())

    def on_validation_epoch_end(self):
        scores = self.all_gather(torch.cat(self._val_scores)).reshape(-1).cpu().numpy()
        labels = self.all_gather(torch.cat(self._val_labels)).reshape(-1).cpu().numpy()
        self._val_scores.clear()
        self._val_labels.clear()
        if (labels == 1).any() and (labels == 0).any():
            eer, _ = compute_eer(scores[labels == 1], scores[labels == 0])
            self.log("val_eer", float(eer), prog_bar=True)

    def configure_optimizers(self):
        o = self.cfg.optim
        # A detector may split its weights into groups (Whisper: layer-wise lr decay, frozen layers).
        params = (self.model.param_groups(o.lr) if hasattr(self.model, "param_groups")
                  else [p for p in self.parameters() if p.requires_grad])
        optimizer = torch.optim.Adam(params, lr=o.lr, weight_decay=o.weight_decay)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=o.halve_every, gamma=0.5)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}


class EpochClock(Callback):
    """Wall time of every training epoch (for the results tables) and the dataset's crop epoch."""

    def __init__(self):
        self.seconds: list[float] = []
        self._start = 0.0

    def on_train_epoch_start(self, trainer, module):
        self._start = time.perf_counter()
        loader = trainer.train_dataloader
        if loader is not None and hasattr(loader.dataset, "set_epoch"):
            loader.dataset.set_epoch(trainer.current_epoch)

    def on_train_epoch_end(self, trainer, module):
        self.seconds.append(time.perf_counter() - self._start)


def make_trainer(cfg: DictConfig, out: Path, clock: EpochClock) -> L.Trainer:
    t = cfg.trainer
    checkpoint = ModelCheckpoint(dirpath=out / "checkpoints", filename="best", monitor="val_eer", mode="min",
                                 save_last=True, save_top_k=1, enable_version_counter=False)
    callbacks = [checkpoint, EarlyStopping(monitor="val_loss", patience=t.patience, mode="min"),
                 TQDMProgressBar(refresh_rate=t.progress_every), clock]
    return L.Trainer(
        max_epochs=t.max_epochs, accelerator=t.accelerator, devices=t.devices, precision=_precision(t.precision),
        strategy=t.strategy, deterministic=t.deterministic, callbacks=callbacks,
        logger=CSVLogger(out, name="logs", version=f"run{len(list((out / 'logs').glob('run*')))}"),
        limit_train_batches=t.limit_train_batches,
        limit_val_batches=t.limit_val_batches, gradient_clip_val=t.gradient_clip_val,
        use_distributed_sampler=False,  # LengthGroupedBatchSampler shards batches across ranks itself
        log_every_n_steps=t.log_every_n_steps, num_sanity_val_steps=0, enable_model_summary=False)


def peak_memory_gb(device: torch.device) -> float:
    """Peak GPU memory allocated by torch, or on the CPU the process's peak resident set size."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


# ---- folds ----------------------------------------------------------------------------------

def load_checkpoint_state(path: Path) -> dict[str, torch.Tensor]:
    """Model weights from a Lightning checkpoint (tensors only, so weights_only loading is safe)."""
    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    return {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}


def _warm_start(module: DetectorModule, cfg: DictConfig, fold: int) -> None:
    """Warm-up variants start from the same fold's single-level model, training it first if needed."""
    warm = cfg.get("warmup")
    if not warm or not warm.get("experiment"):
        return
    base = OmegaConf.merge(load_config(f"model/{warm.experiment}"),
                           {"data": cfg.data, "trainer": cfg.trainer, "seed": cfg.seed, "output_root": cfg.output_root})
    base_dir = fold_dir(base, fold)
    if not is_finished(base_dir):
        print(f"warm-up model {warm.experiment} fold {fold} missing: training it first")
        train_fold(base, fold)
    loaded, fresh = module.model.load_warmup(load_checkpoint_state(base_dir / "checkpoints" / "best.ckpt"))
    print(f"warm start from {base_dir}: {len(loaded)} tensors loaded, {len(fresh)} new")


def train_fold(cfg: DictConfig, fold: int, force: bool = False) -> Path:
    """Train (or resume) one fold, then write its OOF/test predictions and metrics."""
    from antispoof.predict import predict_table, write_predictions

    out = fold_dir(cfg, fold)
    if is_finished(out) and not force:
        print(f"{out} is complete ({METRICS} exists); --force retrains it")
        return out
    if force:  # a forced run starts from scratch: earlier checkpoints must not be resumed
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
        (out / METRICS).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    data = FoldData(cfg, fold)
    module = DetectorModule(cfg)
    print(f"augment {augment_config(cfg).get('name', 'custom')}: wave [{', '.join(data.wave_augment.names)}], "
          f"batch [{', '.join(module.batch_augment.names)}]")
    last = out / "checkpoints" / "last.ckpt"
    if not last.exists():
        _warm_start(module, cfg, fold)
    clock = EpochClock()
    trainer = make_trainer(cfg, out, clock)
    trainer.fit(module, data.loader("train", train=True), data.loader("valid"),
                ckpt_path=last if last.exists() else None)
    if trainer.interrupted:  # Ctrl-C: Lightning stops cleanly; last.ckpt is there to resume from
        print(f"interrupted: `antispoof train` again resumes from {last}")
        return out
    if not trainer.is_global_zero:
        return out
    best = out / "checkpoints" / "best.ckpt"
    module.model.load_state_dict(load_checkpoint_state(best if best.exists() else last))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tables = {part: predict_table(module.model, data.loader(part), device, _precision(cfg.trainer.precision))
              for part in ("valid", "test")}
    metrics = write_predictions(tables, out, data)
    metrics.update({"fold": fold, "experiment": cfg.experiment, "epochs": trainer.current_epoch,
                    "seconds_per_epoch": float(np.mean(clock.seconds)) if clock.seconds else None,
                    "n_parameters": int(sum(p.numel() for p in module.model.parameters())),
                    "peak_memory_gb": peak_memory_gb(device), "device": device.type,
                    "best_checkpoint": str(best)})
    write_metrics(out, metrics)
    return out
