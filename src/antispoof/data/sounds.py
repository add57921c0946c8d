"""Sound files installed on this machine that are not speech to detect: music-on-hold beds and
Tux Paint's sound effects. SpoofBench's channel mixes the beds in as background noise, and the
wave augmenter's `background` step draws on both (configs/augment/*.yaml, `roots`).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable


def first_existing(roots: Iterable[Path], relative: str) -> Path | None:
    """The first root under which `relative` exists (a system-wide install or `.deps/debian`)."""
    for root in roots:
        candidate = Path(root) / relative
        if candidate.exists():
            return candidate
    return None


def noise_beds(roots: Iterable[Path]) -> list[str]:
    """Music-on-hold recordings used as background noise in the channel chain."""
    base = first_existing(roots, "usr/share/asterisk/moh")
    return sorted(str(p) for p in base.glob("*.wav")) if base else []


_SPOKEN = re.compile(r"(_desc.*|_[a-z]{2,3}(_[a-zA-Z]{2,4})?|\d+)$")


def effect_sounds(roots: Iterable[Path]) -> list[str]:
    """Tux Paint's stamp sound effects (animals, vehicles, weather, ...), not its spoken names:
    files named after a language (`cat_fr.ogg`), descriptions (`cat_desc.ogg`) and digits are
    speech and are left out."""
    base = first_existing(roots, "usr/share/tuxpaint/stamps")
    if not base:
        return []
    return sorted(str(p) for p in base.rglob("*.ogg") if not _SPOKEN.search(p.stem))
