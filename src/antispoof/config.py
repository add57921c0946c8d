"""Experiment configuration: YAML files merged with OmegaConf, overridable from the command line.

A config may name parents under `defaults:` (paths relative to the configs/ folder); they are
merged first, so one experiment file only states what differs.
"""
from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

CONFIG_ROOT = Path("configs")


def _resolve(path: str | Path) -> Path:
    path = Path(path)
    for candidate in (path, CONFIG_ROOT / path, CONFIG_ROOT / f"{path}.yaml"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"config not found: {path}")


def load_config(path: str | Path, overrides: list[str] | None = None) -> DictConfig:
    """Load a YAML config with its `defaults:` parents, then apply `key=value` overrides."""
    file = _resolve(path)
    cfg = OmegaConf.load(file)
    parents = cfg.pop("defaults", []) or []
    merged = OmegaConf.merge(*(load_config(p) for p in parents), cfg) if parents else cfg
    bad = [o for o in overrides or [] if "=" not in o]
    if bad:
        raise ValueError(f"override must look like key=value, got {bad[0]!r}")
    return OmegaConf.merge(merged, OmegaConf.from_dotlist(list(overrides or [])))


def data_dir(name: str) -> Path:
    """`mini` / `full` -> data/spoofbench-<name>; anything with a slash is a folder already."""
    return Path(name) if "/" in name else Path("data") / f"spoofbench-{name}"
