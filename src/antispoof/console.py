"""A quiet console: what a command prints is our progress bars, our lines and our own warnings.

The pinned third-party versions print things a user cannot act on between the progress bars:
Lightning's advertising tips (litlogger, litmodels) through its rank-zero logger, and deprecation
warnings raised inside torch, Lightning, transformers and their dependencies about calls they
make themselves. Both are filtered here, by origin, so a deprecation in our own code (or a
warning of ours) still shows. Every command entry point calls `quiet_third_party()` first.
"""
from __future__ import annotations

import logging
import warnings

THIRD_PARTY = r"(lightning|lightning_fabric|pytorch_lightning|torch|torchaudio|torchmetrics|transformers|" \
              r"huggingface_hub|audiomentations|pyroomacoustics|sklearn|lightgbm|onnxruntime|librosa|numba|" \
              r"pandas|matplotlib|google|tensorboard|jsonargparse)(\.|$)"
ADVERT_PREFIX = "💡 Tip:"
# Lightning's own lines about an interrupt: the command prints one line of its own (signals.message).
DROPPED_PREFIXES = (ADVERT_PREFIX, "Detected KeyboardInterrupt", "Received SIGTERM")


class DropAdverts(logging.Filter):
    """Drops Lightning's "💡 Tip: ... try installing ..." lines (and its interrupt chatter, which
    our one-line interrupt message replaces); keeps everything else."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).lstrip().startswith(DROPPED_PREFIXES)


def quiet_third_party() -> None:
    """Filter adverts and third-party deprecation warnings (idempotent; safe in every process)."""
    # Lightning's rank_zero_info logs through these loggers (a logger's own filter sees each record
    # it creates, and getLogger gives the same object before and after Lightning is imported).
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero",
                 "lightning.pytorch.trainer.connectors.signal_connector"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, DropAdverts) for f in logger.filters):
            logger.addFilter(DropAdverts())
    for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category, module=THIRD_PARTY)


def close_progress_bars() -> None:
    """End every open tqdm bar on its own line, so the one line a command prints when it stops
    (an interrupt, an error) starts a line of its own instead of trailing a half-drawn bar."""
    from tqdm import tqdm

    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()
