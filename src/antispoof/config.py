"""Experiment configuration: YAML files merged with OmegaConf, overridable from the command line.

A config may name parents under `defaults:` (paths relative to the configs/ folder); they are
merged first, so one experiment file only states what differs. A few keys take a preset name
(`augment: finvolution` loads configs/augment/finvolution.yaml in its place); a name replaces
whatever the key held, while a mapping (or `augment.batch.mixup.p=0.5`) edits the preset.
"""
from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

CONFIG_ROOT = Path("configs")
PRESET_KEYS = ("augment",)  # keys whose string value names configs/<key>/<name>.yaml


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
    merged = _expand_presets(OmegaConf.merge(*(load_config(p) for p in parents), cfg) if parents else cfg)
    bad = [o for o in overrides or [] if "=" not in o]
    if bad:
        raise ValueError(f"override must look like key=value, got {bad[0]!r}")
    for override in overrides or []:  # one at a time, so `augment=none augment.x=1` edits the preset
        merged = _expand_presets(OmegaConf.merge(merged, OmegaConf.from_dotlist([override])))
    return merged


def _expand_presets(cfg: DictConfig) -> DictConfig:
    """Replace a preset key's name with the preset's contents (see the module docstring)."""
    for key in PRESET_KEYS:
        name = cfg.get(key)
        if isinstance(name, str):
            try:
                cfg[key] = load_config(f"{key}/{name}")
            except FileNotFoundError:
                known = sorted(p.stem for p in (CONFIG_ROOT / key).glob("*.yaml"))
                raise ValueError(f"{key}: unknown preset {name!r} (known: {', '.join(known)})") from None
    return cfg


def data_dir(name: str) -> Path:
    """`mini` / `full` -> data/spoofbench-<name>; anything with a slash is a folder already."""
    return Path(name) if "/" in name else Path("data") / f"spoofbench-{name}"
