"""The Lightning module of fold training: one for every detector family (models.Detector).

Batch augmentation on the batch's device, the detector's losses on its own segment targets,
validation EER per epoch, Adam with the learning rate halved every `optim.halve_every` epochs.

Auxiliary tasks (models.aux_tasks, the experiment's `aux` section) and OC-softmax heads add
optimisers, as in the reference (Mo & Wang): the OC-softmax centres their own SGD at the base
learning rate (halved with the detector's), the S2 converter and the S3 speaker classifier their
own Adam. Lightning's automatic optimisation takes one optimiser, so a run with several uses
manual optimisation; a run with one (P2SGrad or cross-entropy, at most S1, whose decoder shares
the detector's Adam) keeps the automatic path. Each manual batch is a detector step (detector,
centres, speaker classifier), then, with S2, the converter's step; neither moves the other's
weights, and the converter's step leaves the detector's buffers (BatchNorm statistics) as they were.

Sharpness-aware minimisation (`optim.sam`, train/sam.py) also takes the manual path: the detector's
step is two forward-backward passes on the batch, the second at the perturbed weights, and the
detector's optimisers (detector, centres, speaker classifier) step from the restored weights with
the second gradient. Clipping and learning-rate halving are as without it.
"""
from __future__ import annotations

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from antispoof.augment import BatchAugmenter
from antispoof.metrics.detection import compute_eer
from antispoof.models.aux_tasks import SPOOF, AuxConfig, AuxTasks
from antispoof.models.common import centre_parameters
from antispoof.models.detector import Detector
from antispoof.models.factory import build_model
from antispoof.train.data import augment_config
from antispoof.train.sam import SAM, SAMConfig, running_statistics_kept

AUX_LOSSES = ("reconstruction", "conversion", "speaker")  # logged as train_loss_<name>, unweighted


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
        self._val_held: list[torch.Tensor] = []
        self.held_out: set[str] = set()  # validation clips of attacks the fold never trains on (LOAO folds)
        self.aux_config = aux_config(cfg)
        self.aux = (AuxTasks(self.aux_config, self.model.embedding_dim, self.model.feature_dim)
                    if self.aux_config.active else None)
        self.centres = centre_parameters(self.model)
        self.sam = SAMConfig.from_options(cfg.optim.get("sam"))
        self.automatic_optimization = len(self.optimiser_names) == 1 and not self.sam.enabled
        self._batches = 0  # training batches done under manual optimisation (global_step counts every step)

    @property
    def optimiser_names(self) -> list[str]:
        """The run's optimisers, in configure_optimizers' order."""
        names = ["detector"] + (["centre"] if self.centres else [])
        if self.aux is not None:
            names += (["adversary"] if self.aux.converter is not None else []) + \
                (["speaker"] if self.aux.speaker_head is not None else [])
        return names

    def on_after_batch_transfer(self, batch, dataloader_idx):
        """Batch-level augmentation runs here: on the device the batch now lives on, training only.
        Its draws follow the batch, not the number of optimisers stepped so far."""
        if self.trainer.training:
            step = self.global_step if self.automatic_optimization else self._batches
            batch = self.batch_augment(batch, self.current_epoch, step)
        return batch

    def on_save_checkpoint(self, checkpoint):
        checkpoint["manual_batches"] = self._batches

    def on_load_checkpoint(self, checkpoint):
        self._batches = int(checkpoint.get("manual_batches", 0))

    def _step(self, batch):
        out = self.model(batch[self.model.input_key], batch["lengths"])
        # Min-pool 10 ms labels to the model's segments in the data convention (any spoof frame
        # makes the segment spoof), then turn them into class indices.
        seg_targets = class_targets(self.model.segment_targets(batch["seg"], out["seg_lengths"]))
        losses = self.model.losses(out, class_targets(batch["label"]), seg_targets)
        return out, losses

    def training_step(self, batch, batch_idx):
        if not self.automatic_optimization:
            return self._manual_step(batch)
        if self.aux is None:
            _, losses = self._step(batch)
        else:
            losses, _ = self._training_losses(batch)
        self._log_train(losses, len(batch["utt_id"]))
        return losses["total"]

    def _log_train(self, losses: dict, size: int) -> None:
        self.log("train_loss", losses["total"], prog_bar=True, batch_size=size)
        for name in ("utt", "seg", *AUX_LOSSES):
            if losses.get(name) is not None:
                self.log(f"train_loss_{name}", losses[name], batch_size=size)

    # ---- auxiliary tasks -------------------------------------------------------------------

    def _training_losses(self, batch):
        """The detector's losses plus the weighted auxiliary ones -> (losses, context for the
        converter's step: features, utterance and segment targets)."""
        model, aux, weights = self.model, self.aux, self.aux_config
        features = model.input_features(batch[model.input_key], batch["lengths"])
        out = model.forward_features(features)
        utt_targets = class_targets(batch["label"])
        seg_targets = class_targets(model.segment_targets(batch["seg"], out["seg_lengths"]))
        losses = dict(model.losses(out, utt_targets, seg_targets))
        extra = {}
        if aux is not None and aux.decoder is not None:
            extra["reconstruction"] = aux.reconstruction_loss(out["utt_embedding"], features, utt_targets)
        if aux is not None and aux.speaker_head is not None:
            extra["speaker"] = aux.speaker_loss(out["utt_embedding"], batch["speaker"], utt_targets)
        spoof = utt_targets == SPOOF
        if aux is not None and aux.converter is not None and spoof.any():
            with torch.no_grad():  # the detector's step: the converter is a fixed opponent
                disguised = aux.convert(features.select(spoof))
            converted = model.forward_features(disguised)
            extra["conversion"] = model.losses(converted, utt_targets[spoof], seg_targets[spoof])["total"]
        total = losses["total"]
        for name, loss in extra.items():
            if loss is not None:
                losses[name] = loss
                total = total + getattr(weights, name).weight * loss
        losses["total"] = total
        return losses, (features, utt_targets, seg_targets)

    def _adversary_loss(self, context) -> torch.Tensor | None:
        """The converter's loss: delta * (detector loss on converted spoofs with bona fide targets)
        + MSE to the spoof features; None without a spoof in the batch."""
        features, utt_targets, seg_targets = context
        spoof = utt_targets == SPOOF
        if not spoof.any():
            return None
        original = features.select(spoof)
        disguised = self.aux.convert(original)
        out = self.model.forward_features(disguised)
        fool = self.model.losses(out, *self.aux.bona_fide_targets(utt_targets[spoof], seg_targets[spoof]))["total"]
        return self.aux_config.conversion.delta * fool + self.aux.fidelity(disguised, original)

    def _manual_step(self, batch):
        optimisers = self.optimizers()
        optimisers = dict(zip(self.optimiser_names, optimisers if isinstance(optimisers, list) else [optimisers]))
        context = self._detector_phase(batch, optimisers)
        if "adversary" in optimisers:
            self._adversary_phase(context, optimisers, len(batch["utt_id"]))
        self._batches += 1

    def _detector_phase(self, batch, optimisers: dict):
        """One step of the detector, its centres and the speaker classifier on the detector's loss."""
        _zero_grad(optimisers)
        losses, context = self._training_losses(batch)
        self.manual_backward(losses["total"])
        if self.sam.enabled:
            self._sharpness_pass(batch, optimisers)
        if not self._loss_scaled():  # with a loss scaler: once unscaled, in on_before_optimizer_step
            self._clip(optimisers["detector"])
        for name in ("detector", "centre", "speaker"):
            if name in optimisers:
                _step_if_gradients(optimisers[name])
        self._log_train(losses, len(batch["utt_id"]))
        return context

    def _sharpness_pass(self, batch, optimisers: dict) -> None:
        """SAM's second pass: the gradient at w + e replaces the first-pass one, and the weights
        are back at w before any optimiser steps. BatchNorm statistics keep the first pass's update.
        Under DDP Lightning re-arms the gradient sync for every manual_backward, so both gradients are
        the ranks' mean: every rank takes the same ascent step and the same descent step."""
        sam = SAM.from_config([getattr(optimisers[n], "optimizer", optimisers[n])
                               for n in ("detector", "centre", "speaker") if n in optimisers], self.sam)
        if not sam.perturb():
            return
        try:
            with running_statistics_kept(self):
                _zero_grad(optimisers)
                losses, _ = self._training_losses(batch)
                self.manual_backward(losses["total"])
        finally:
            sam.restore()
        self.log("train_loss_perturbed", losses["total"].detach(), batch_size=len(batch["utt_id"]))

    def _loss_scaled(self) -> bool:
        """Whether a float16 loss scaler is active (its gradients stay scaled until the step)."""
        return self._trainer is not None and getattr(self.trainer.precision_plugin, "scaler", None) is not None

    def _clip(self, optimiser) -> None:
        clip = self.cfg.trainer.get("gradient_clip_val")
        if clip:
            self.clip_gradients(optimiser, gradient_clip_val=clip, gradient_clip_algorithm="norm")

    def on_before_optimizer_step(self, optimizer):
        """Manual optimisation under a loss scaler: Lightning has just unscaled the gradients, so
        the detector's are clipped here (clipping the scaled ones would clip at clip x scale)."""
        if not self.automatic_optimization and self._loss_scaled() and optimizer is self.trainer.optimizers[0]:
            self._clip(optimizer)

    def _adversary_phase(self, context, optimisers: dict, size: int) -> None:
        """One step of the converter. The detector runs as it trains (dropout, batch statistics, as
        in the reference); its gradients are dropped and its buffers put back afterwards."""
        _zero_grad(optimisers)
        buffers = {name: b.detach().clone() for name, b in self.model.named_buffers()}
        loss = self._adversary_loss(context)
        if loss is not None:
            self.manual_backward(loss)
            _step_if_gradients(optimisers["adversary"])
            self.log("train_loss_adversary", loss.detach(), batch_size=size)
        _zero_grad(optimisers)
        with torch.no_grad():
            for name, b in self.model.named_buffers():
                b.copy_(buffers[name])

    def on_train_epoch_end(self):
        if not self.automatic_optimization:  # Lightning steps schedulers itself only when automatic
            schedulers = self.lr_schedulers()
            for scheduler in schedulers if isinstance(schedulers, list) else [schedulers]:
                scheduler.step()

    def validation_step(self, batch, batch_idx):
        out, losses = self._step(batch)
        self.log("val_loss", losses["total"], prog_bar=True, batch_size=len(batch["utt_id"]), sync_dist=True)
        self._val_scores.append(out["utt_score"].detach().float().cpu())
        self._val_labels.append(batch["label"].cpu())
        self._val_held.append(torch.tensor([float(u in self.held_out) for u in batch["utt_id"]]))

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
        held = self._gather(self._val_held).cpu().numpy() == 1
        for parts in (self._val_scores, self._val_labels, self._val_held):
            parts.clear()
        self.log("val_clips", float(len(scores)))  # every validation clip exactly once, on any number of ranks
        if (labels == 1).any() and (labels == 0).any():
            eer, _ = compute_eer(scores[labels == 1], scores[labels == 0])
            self.log("val_eer", float(eer), prog_bar=True)
        if (labels == 1).any() and (held & (labels == 0)).any():  # bona fide against the unseen attacks only
            eer, _ = compute_eer(scores[labels == 1], scores[held & (labels == 0)])
            self.log("val_eer_held_out", float(eer), prog_bar=True)

    def configure_optimizers(self):
        o = self.cfg.optim
        if self.automatic_optimization and self.aux is None and not self.centres:
            # A detector may split its weights into groups (Whisper: layer-wise lr decay, frozen layers).
            params = (self.model.param_groups(o.lr) if hasattr(self.model, "param_groups")
                      else [p for p in self.parameters() if p.requires_grad])
            optimizer = torch.optim.Adam(params, lr=o.lr, weight_decay=o.weight_decay)
            scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=o.halve_every, gamma=0.5)
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
        optimisers = {"detector": torch.optim.Adam(self._detector_groups(o.lr), lr=o.lr, weight_decay=o.weight_decay)}
        if self.automatic_optimization:
            scheduler = torch.optim.lr_scheduler.StepLR(optimisers["detector"], step_size=o.halve_every, gamma=0.5)
            return {"optimizer": optimisers["detector"], "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
        if self.centres:  # the reference: SGD at the base learning rate, decayed with the detector's
            optimisers["centre"] = torch.optim.SGD(self.centres, lr=o.lr)
        for name, net, task in (("adversary", self.aux and self.aux.converter, self.aux_config.conversion),
                                ("speaker", self.aux and self.aux.speaker_head, self.aux_config.speaker)):
            if net is not None:  # own Adam at a constant rate, as in the reference
                optimisers[name] = torch.optim.Adam(net.parameters(), lr=task.lr or o.lr, weight_decay=task.weight_decay)
        assert list(optimisers) == self.optimiser_names
        schedulers = [torch.optim.lr_scheduler.StepLR(optimisers[name], step_size=o.halve_every, gamma=0.5)
                      for name in ("detector", "centre") if name in optimisers]
        return list(optimisers.values()), schedulers

    def _detector_groups(self, lr: float) -> list[dict]:
        """The detector's weight groups without its OC-softmax centres, plus the S1 decoder's."""
        groups = (self.model.param_groups(lr) if hasattr(self.model, "param_groups")
                  else [{"params": [p for p in self.model.parameters() if p.requires_grad]}])
        centres = {id(p) for p in self.centres}
        groups = [{**g, "params": [p for p in g["params"] if id(p) not in centres]} for g in groups]
        if self.aux is not None and self.aux.decoder is not None:
            groups.append({"params": list(self.aux.decoder.parameters())})
        return [g for g in groups if g["params"]]


def aux_config(cfg: DictConfig) -> AuxConfig:
    """The experiment's auxiliary tasks (configs written before they existed: none)."""
    options = cfg.get("aux")
    return AuxConfig.from_options(OmegaConf.to_container(options, resolve=True) if options is not None else None)


def _zero_grad(optimisers: dict) -> None:
    for optimiser in optimisers.values():
        optimiser.zero_grad(set_to_none=True)


def _step_if_gradients(optimiser) -> None:
    """Step only an optimiser whose weights got a gradient (a batch without a bona fide clip gives
    the speaker classifier none; mixed-precision scalers refuse a step without gradients)."""
    if any(p.grad is not None for group in optimiser.param_groups for p in group["params"]):
        optimiser.step()
