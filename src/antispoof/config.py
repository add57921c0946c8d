"""Experiment configuration: YAML files merged with OmegaConf, overridable from the command line.

A config may name parents under `defaults:` (paths relative to the configs/ folder); they are
merged first, so one experiment file only states what differs. A few keys take a preset name
(`augment: finvolution` loads configs/augment/finvolution.yaml in its place, `aux: none`
configs/aux/none.yaml); a name replaces whatever the key held, while a mapping (or
`augment.batch.mixup.p=0.5`) edits the preset.

An override must name a key the config already has (a typo such as `vote.mdoe=hard` would
otherwise do nothing, silently); `+key=value` adds a new one, e.g. an extra LightGBM argument.
Keys under an empty mapping (`model.lfcc: {}`, a bag of keyword arguments) are free to add.

An override's value must also fit the type of the value it replaces, checked before any work
starts (`trainer.max_epochs=abc` would otherwise fail deep inside Lightning after the data are
loaded, and be saved in config.yaml): an integer stays an integer, a float takes any number, a
bool takes true/false, a list a list, a mapping a mapping (or, for a preset key, a preset name);
a string default takes any single value (`devices: auto` also takes 2), a null default anything. A key measured in a unit
(`_s`, `_ms`, `_hz`, `_db`, `seconds`) is a real number (or null) even where its default reads `15` or null.
"""
from __future__ import annotations

import difflib
import re
from pathlib import Path

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf

CONFIG_ROOT = Path("configs")
PRESET_KEYS = ("augment", "aux")  # keys whose string value names configs/<key>/<name>.yaml
_ABSENT = object()
_UNIT_KEY = re.compile(r"(_s|_ms|_hz|_db|seconds)$")  # real-valued even when the default reads `15`


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
            _check_type(merged, override, file)
        merged = _expand_presets(OmegaConf.merge(merged, _dotlist(override.lstrip("+"), file)))
    return merged


def _dotlist(override: str, file: Path) -> DictConfig:
    """One override as a config. Its value is read as YAML, so a value that starts with `{` or `[`
    but is not a YAML mapping or list fails here in one line instead of in the YAML parser."""
    try:
        return OmegaConf.from_dotlist([override])
    except yaml.YAMLError as err:
        problem = str(getattr(err, "problem", None) or err).splitlines()[0]
        raise ConfigError(f"{file}: cannot read the override {override!r} ({problem}); "
                          f"quote a text value, e.g. 'key=\"{{kind}}_x\"'") from None


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


def _kind(value) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, (list, ListConfig)):
        return "list"
    if isinstance(value, (dict, DictConfig)):
        return "mapping"
    return "null" if value is None else "string"


_ACCEPTS = {"int": {"int"}, "float": {"int", "float"}, "bool": {"bool"}, "list": {"list"},
            "mapping": {"mapping"}, "string": {"string", "int", "float", "bool"}}
_NAMES = {"int": "an integer", "float": "a number", "bool": "true or false", "list": "a list [a, b]",
          "mapping": "a mapping", "string": "a single value"}


def _check_type(cfg: DictConfig, override: str, file: Path) -> None:
    """Refuse `key=value` when the value does not fit the type of the key's current value (module doc)."""
    key, text = override.split("=", 1)
    old = OmegaConf.select(cfg, key, default=None)
    new = OmegaConf.select(_dotlist(override, file), key, default=None)
    want, got = _kind(old), _kind(new)
    if want in ("int", "null") and _UNIT_KEY.search(key.rsplit(".", 1)[-1]):
        want = "float"  # seconds, hertz, decibels: a number (or null) whatever the default looks like
    if key.split(".")[0] in PRESET_KEYS and "." not in key and got == "string":
        return  # `augment=finvolution` names a preset in place of the mapping
    if want in _ACCEPTS and got not in _ACCEPTS[want] and got != "null":
        raise ConfigError(f"{file}: {key} must be {_NAMES[want]} (its default is {old!r}), got {text!r}")


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
