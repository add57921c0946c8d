"""Reading fold checkpoints safely: weights only, and a bad file is one line naming it and the fix.

A run killed while Lightning wrote last.ckpt leaves a truncated zip; a checkpoint copied from
another experiment holds other tensors. Either used to surface as a long traceback from inside
torch (`PytorchStreamReader failed ...`) without the path, and every rerun failed the same way.
Every load here is `weights_only` (no pickled code runs), including Lightning's own resume,
which `train_fold` calls with `weights_only=True` after `check_resumable` has read the file.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import torch

from antispoof.schema import ManifestError


class CheckpointError(ManifestError):
    """A checkpoint cannot be read or belongs to another model (the message names file and fix)."""


def read_checkpoint(path: Path, fix: str) -> dict:
    """A Lightning checkpoint as a dict of plain values and tensors (memory-mapped, weights only)."""
    path = Path(path)
    if path.is_file() and not zipfile.is_zipfile(path):  # torch's own error here is `[Errno 22] Invalid argument`
        raise CheckpointError(f"{path}: unreadable checkpoint, truncated or not a torch file (no complete zip "
                              f"archive in its {path.stat().st_size:,} bytes); {fix}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: checkpoint not found; {fix}") from None
    except Exception as err:  # torch raises RuntimeError, UnpicklingError, EOFError ... for bad files
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path}: unreadable checkpoint, truncated or not a torch file ({reason[:160]}); "
                              f"{fix}") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise CheckpointError(f"{path}: not a Lightning checkpoint (no state_dict); {fix}")
    return ckpt


def model_state(path: Path, fix: str) -> dict[str, torch.Tensor]:
    """The detector's weights of a fold checkpoint (the LightningModule keeps them under `model.`)."""
    state = read_checkpoint(path, fix)["state_dict"]
    return {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}


def check_matches(path: Path, state: dict[str, torch.Tensor], model: torch.nn.Module, fix: str) -> None:
    """Refuse weights made by another model: names it lacks or lacks itself, or shapes that differ."""
    expected = model.state_dict()
    unknown = sorted(set(state) - set(expected))
    missing = sorted(set(expected) - set(state))
    shapes = sorted(k for k in set(state) & set(expected) if tuple(state[k].shape) != tuple(expected[k].shape))
    for names, problem in ((unknown, "tensors this model does not have"), (missing, "tensors missing"),
                           (shapes, "tensors of another shape")):
        if names:
            raise CheckpointError(f"{path}: made by another model ({len(names)} {problem}, e.g. {names[0]}); {fix}")


def check_resumable(path: Path, model: torch.nn.Module) -> None:
    """Read last.ckpt before Lightning resumes from it, so a bad one fails here in one line."""
    fix = "delete it to start the fold again, or rerun with --force"
    check_matches(path, model_state(path, fix), model, fix)
