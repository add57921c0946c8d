"""Experiment configuration: YAML files merged with OmegaConf, overridable from the command line.

A config may name parents under `defaults:` (paths relative to the configs/ folder); they are
merged first, so one experiment file only states what differs. A few keys take a preset name
(`augment: finvolution` loads configs/augment/finvolution.yaml in its place); a name replaces
whatever the key held, while a mapping (or `augment.batch.mixup.p=0.5`) edits the preset.

An override must name a key the config already has (a typo such as `vote.mdoe=hard` would
otherwise do nothing, silently); `+key=value` adds a new one, e.g. an extra LightGBM argument.
Keys under an empty mapping (`model.lfcc: {}`, a bag of keyword arguments) are free to add.
"""
from __future__ import annotations

import difflib
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

CONFIG_ROOT = Path("configs")
PRESET_KEYS = ("augment",)  # keys whose string value names configs/<key>/<name>.yaml
_ABSENT = object()


class ConfigError(ValueError):
    """A config problem the user can fix: a malformed or unknown override, an unknown preset."""


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
    bad = [o for o in overrides or [] if "=" not in o.lstrip("+")]
    if bad:
        raise ConfigError(f"override must look like key=value, got {bad[0]!r}")
    for override in overrides or []:  # one at a time, so `augment=none augment.x=1` edits the preset
        if not override.startswith("+"):
            _check_known(merged, override.split("=", 1)[0], file)
        merged = _expand_presets(OmegaConf.merge(merged, OmegaConf.from_dotlist([override.lstrip("+")])))
    return merged


def _check_known(cfg: DictConfig, key: str, file: Path) -> None:
    """Refuse an override of a key `cfg` does not have, unless its parent is an empty mapping."""
    if OmegaConf.select(cfg, key, default=_ABSENT) is not _ABSENT:
        return
    parent = OmegaConf.select(cfg, key.rpartition(".")[0], default=_ABSENT) if "." in key else cfg
    if isinstance(parent, DictConfig) and len(parent) == 0:
        return
    close = difflib.get_close_matches(key, _leaf_keys(cfg), n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    raise ConfigError(f"{file}: unknown config key {key!r}{hint}; write +{key}=... to add a new key")


def _leaf_keys(cfg: DictConfig, prefix: str = "") -> list[str]:
    keys = []
    for name, value in cfg.items():
        path = f"{prefix}{name}"
        keys += _leaf_keys(value, path + ".") if isinstance(value, DictConfig) and len(value) else [path]
    return keys


def _expand_presets(cfg: DictConfig) -> DictConfig:
    """Replace a preset key's name with the preset's contents (see the module docstring)."""
    for key in PRESET_KEYS:
        name = cfg.get(key)
        if isinstance(name, str):
            try:
                cfg[key] = load_config(f"{key}/{name}")
            except FileNotFoundError:
                known = sorted(p.stem for p in (CONFIG_ROOT / key).glob("*.yaml"))
                raise ConfigError(f"{key}: unknown preset {name!r} (known: {', '.join(known)})") from None
    return cfg


def data_dir(name: str) -> Path:
    """`mini` / `full` -> data/spoofbench-<name>; anything with a slash is a folder already."""
    return Path(name) if "/" in name else Path("data") / f"spoofbench-{name}"
