"""The Lightning module of fold training: one for every detector family (models.Detector).

Batch augmentation on the batch's device, the detector's losses on its own segment targets,
validation EER per epoch, Adam with the learning rate halved every `optim.halve_every` epochs.
"""
from __future__ import annotations

import lightning as L
import torch
from omegaconf import DictConfig

from antispoof.augment import BatchAugmenter
from antispoof.metrics.detection import compute_eer
from antispoof.models.detector import Detector
from antispoof.models.factory import build_model
from antispoof.train.data import augment_config


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
        if self.model.input_key != "wave" and self.batch_augment.names:
            raise ValueError(f"{cfg.experiment}: batch augmentation ({', '.join(self.batch_augment.names)}) works on "
                             f"waveforms; this model reads cached {self.model.input_key} (use augment=none)")
        self.model.set_spec_augment(self.batch_augment.spec_augment)
        self._val_scores: list[torch.Tensor] = []
        self._val_labels: list[torch.Tensor] = []

    def on_after_batch_transfer(self, batch, dataloader_idx):
        """Batch-level augmentation runs here: on the device the batch now lives on, training only."""
        if self.trainer.training:
            batch = self.batch_augment(batch, self.current_epoch, self.global_step)
        return batch

    def _step(self, batch):
        out = self.model(batch[self.model.input_key], batch["lengths"])
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

    def _gather(self, parts: list[torch.Tensor]) -> torch.Tensor:
        """Every rank's values, concatenated: the ranks may hold different numbers of clips (the
        evaluation sampler drops none), so each pads to the longest before all_gather."""
        local = torch.cat(parts) if parts else torch.zeros(0)
        if self.trainer.world_size == 1:
            return local
        sizes = self.all_gather(torch.tensor(len(local), device=self.device)).reshape(-1)
        padded = torch.zeros(int(sizes.max()), dtype=local.dtype, device=self.device)
        padded[: len(local)] = local.to(self.device)
        gathered = self.all_gather(padded).reshape(len(sizes), -1)
        return torch.cat([gathered[r, : int(n)] for r, n in enumerate(sizes)])

    def on_validation_epoch_end(self):
        scores = self._gather(self._val_scores).float().cpu().numpy()
        labels = self._gather([t.float() for t in self._val_labels]).cpu().numpy()
        self._val_scores.clear()
        self._val_labels.clear()
        self.log("val_clips", float(len(scores)))  # every validation clip exactly once, on any number of ranks
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
