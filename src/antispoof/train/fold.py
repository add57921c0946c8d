"""The fold runner: one entry point for every detector, Lightning's Trainer does the loop.

`antispoof train --model selcnn_segbw --data mini --fold 0` (or `make train FOLD=0`) writes the
fold folder of antispoof.runs: config.yaml, checkpoints/{best,last}.ckpt, logs/run<n>/ (CSV,
one folder per run so a resumed run keeps the earlier log), oof.parquet (the fold's validation
part), test.parquet, metrics.json (last). A killed run resumes from last.ckpt; a finished fold
is skipped unless forced. Once a fold is finished, the experiment's calibration.json is refitted
on every finished fold (antispoof.train.calibration).
"""
from __future__ import annotations

import json
import resource
import shutil
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from antispoof.config import ConfigError, data_dir, load_config
from antispoof.features.state_cache import dataset_fingerprint
from antispoof.locks import output_lock
from antispoof.runs import METRICS, fold_dir, folds_csv, is_finished, write_metrics
from antispoof.models.checkpoints import CheckpointError, check_resumable, model_state
from antispoof.train.calibration import refresh as refresh_calibration
from antispoof.train.data import FoldData, augment_config
from antispoof.train.module import DetectorModule
from antispoof.utils import atomic_path, write_csv_atomic, write_text_atomic

# trainer.select -> the validation metric that picks best.ckpt (and stops early, for held_out):
# every validation clip, or bona fide against the attacks the fold never trained on (LOAO folds)
SELECT = {"all": "val_eer", "held_out": "val_eer_held_out"}


# ---- configuration -------------------------------------------------------------------------

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


# ---- the loop ------------------------------------------------------------------------------

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


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written whole or not at all. Lightning opens the target itself and writes into
    it, so an interrupt or a full disk during the write of last.ckpt used to destroy the epoch
    before it; here the new file is written beside it and renamed over it (utils.atomic_path)."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        with atomic_path(path) as tmp:
            super().save_checkpoint(checkpoint, tmp, storage_options)


def make_trainer(cfg: DictConfig, out: Path, clock: EpochClock, module: DetectorModule | None = None) -> L.Trainer:
    """The fold's Trainer. A module under manual optimisation (several optimisers: OC-softmax,
    auxiliary tasks) clips its gradients itself, and auxiliary networks a batch may leave without
    a gradient (no bona fide or spoof clip in it) need DDP's search for unused parameters."""
    t = cfg.trainer
    manual = module is not None and not module.automatic_optimization
    extras = module is not None and (module.aux is not None or bool(module.centres))
    select = str(t.get("select", "all"))
    if select not in SELECT:
        raise ConfigError(f"trainer.select must be one of {', '.join(SELECT)}, not {select!r}")
    monitor = SELECT[select]
    best = ModelCheckpoint(dirpath=out / "checkpoints", filename="best", monitor=monitor, mode="min",
                           save_top_k=1, enable_version_counter=False)
    # Not save_last: Lightning writes that only on epochs that also wrote best.ckpt, so a run killed
    # after an epoch that did not improve would train it again. An unmonitored top-1 checkpoint
    # named "last" is rewritten after every epoch.
    last = ModelCheckpoint(dirpath=out / "checkpoints", filename="last", save_top_k=1, enable_version_counter=False)
    stop_on = "val_loss" if select == "all" else monitor
    callbacks = [best, last, EarlyStopping(monitor=stop_on, patience=t.patience, mode="min"),
                 TQDMProgressBar(refresh_rate=t.progress_every), clock]
    return L.Trainer(
        max_epochs=t.max_epochs, accelerator=t.accelerator, devices=t.devices, num_nodes=t.get("num_nodes", 1),
        precision=_precision(t.precision),
        strategy="ddp_find_unused_parameters_true" if extras and t.strategy == "ddp" else t.strategy,
        deterministic=t.deterministic, callbacks=callbacks,
        logger=CSVLogger(out, name="logs", version=f"run{len(list((out / 'logs').glob('run*')))}"),
        limit_train_batches=t.limit_train_batches,
        limit_val_batches=t.limit_val_batches, gradient_clip_val=None if manual else t.gradient_clip_val,
        use_distributed_sampler=False,  # LengthGroupedBatchSampler shards batches across ranks itself
        log_every_n_steps=t.log_every_n_steps, num_sanity_val_steps=0, enable_model_summary=False,
        plugins=[AtomicCheckpointIO()])


def peak_memory_gb(device: torch.device) -> float:
    """Peak GPU memory allocated by torch, or on the CPU the process's peak resident set size."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


# ---- folds ----------------------------------------------------------------------------------

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
    best = base_dir / "checkpoints" / "best.ckpt"
    fix = f"retrain it: antispoof train --model {warm.experiment} --fold {fold} --force"
    state = model_state(best, fix)
    try:  # a warm-up model shares the trunk only; load_warmup refuses one with no trunk weight in common
        loaded, fresh = module.model.load_warmup(state)
    except ValueError as err:
        raise CheckpointError(f"{best}: made by another model ({err}); {fix}") from None
    print(f"warm start from {base_dir}: {len(loaded)} tensors loaded, {len(fresh)} new")


def train_fold(cfg: DictConfig, fold: int, force: bool = False) -> Path:
    """Train (or resume) one fold, then write its OOF/test predictions and metrics; the only run
    writing that fold folder (a second one refuses in one line, antispoof.locks)."""
    out = fold_dir(cfg, fold)
    with output_lock(out, f"fold {fold} of {cfg.experiment}"):
        return _train_fold(cfg, fold, out, force)


def _fit(trainer: L.Trainer, module: DetectorModule, data: FoldData, last: Path) -> None:
    """trainer.fit; an interrupt, which Lightning turns into sys.exit(1) after its clean-up, goes
    on as the KeyboardInterrupt it was (the command prints one line; last.ckpt resumes)."""
    try:
        trainer.fit(module, data.loader("train", train=True), data.loader("valid"),
                    ckpt_path=last if last.exists() else None, weights_only=True)
    except SystemExit:
        if trainer.interrupted:
            raise KeyboardInterrupt from None
        raise


def check_same_data(out: Path, data_dir: str | Path) -> None:
    """A finished fold is kept only for the data set it was trained on: one made before the data set
    was rebuilt (another train.csv / test.csv) would mix two versions in every table, so it is refused
    in one line. Folds finished before metrics.json recorded the fingerprint cannot be checked."""
    made_on = json.loads((out / METRICS).read_text()).get("dataset_sha256")
    if made_on is not None and made_on != dataset_fingerprint(Path(data_dir)):
        raise ConfigError(f"{out}: trained on another build of {data_dir} (its train.csv / test.csv changed "
                          "since); --force retrains it")


def _train_fold(cfg: DictConfig, fold: int, out: Path, force: bool) -> Path:
    from antispoof.inference.tables import predict_table, write_predictions

    # Under DDP every rank runs this function (Lightning starts ranks > 0 as copies of the command,
    # once rank 0 reaches the fit); only rank 0 writes or removes anything in the fold folder.
    writer = rank_zero_only.rank == 0
    if is_finished(out) and not force:
        check_same_data(out, cfg.data.dir)
        print(f"{out} is complete ({METRICS} exists); --force retrains it")
        return out
    if force and writer:  # a forced run starts from scratch: earlier checkpoints must not be resumed
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
        (out / METRICS).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    data = FoldData(cfg, fold)
    if data.cache is not None:  # a head on cached states takes their shape from the cache
        cfg.model.n_states, cfg.model.dim = data.cache.n_states, data.cache.dim
    if data.speakers is not None:  # speaker classification: the fold's training speakers
        cfg.aux.speaker.n_speakers = len(data.speakers)
    if writer:
        write_text_atomic(out / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
        if len(data.skipped):  # data.check.bad_train_clips=skip: what the fold trained without
            write_csv_atomic(data.skipped, out / "skipped_clips.csv")
    module = DetectorModule(cfg)
    module.held_out = data.held_out
    if cfg.trainer.get("select", "all") == "held_out" and not data.held_out:
        raise ConfigError(f"{folds_csv(cfg.output_root, Path(cfg.data.dir).name)}: trainer.select=held_out needs "
                          f"leave-one-attack-out folds (antispoof folds --by attack; output_root=folds_loao)")
    print(f"augment {augment_config(cfg).get('name', 'custom')}: wave [{', '.join(data.wave_augment.names)}], "
          f"batch [{', '.join(module.batch_augment.names)}]")
    last = out / "checkpoints" / "last.ckpt"
    if last.exists():
        check_resumable(last, module.model)
    else:
        _warm_start(module, cfg, fold)
    clock = EpochClock()
    trainer = make_trainer(cfg, out, clock, module)
    _fit(trainer, module, data, last)
    if not trainer.is_global_zero:
        return out
    best = out / "checkpoints" / "best.ckpt"
    module.model.load_state_dict(model_state(best if best.exists() else last, "rerun with --force"))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tables = {part: predict_table(module.model, data.loader(part, shard=False), device,
                                  _precision(cfg.trainer.precision)) for part in ("valid", "test")}
    metrics = write_predictions(tables, out, data)
    metrics.update({"fold": fold, "experiment": cfg.experiment, "epochs": trainer.current_epoch,
                    "seconds_per_epoch": float(np.mean(clock.seconds)) if clock.seconds else None,
                    "n_parameters": int(sum(p.numel() for p in module.model.parameters())),
                    "peak_memory_gb": peak_memory_gb(device), "device": device.type,
                    "best_checkpoint": str(best), "skipped_train_clips": int(len(data.skipped)),
                    "dataset_sha256": dataset_fingerprint(Path(cfg.data.dir))})
    write_metrics(out, metrics)
    refresh_calibration(out.parent, cfg.data.dir)  # the experiment's score -> LLR map, now with this fold
    return out
