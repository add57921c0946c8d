"""The attack registry: every spoofing system SpoofBench can use, one plugin module per family.

Adding an attack is one module that declares `ATTACKS` (base.TextToSpeech / base.Vocoder entries)
and one line in FAMILIES. The plan reads `TTS_SYSTEMS` and `VOCODERS`, the data card and the
manifests read each attack's kind and generation, the builder its cost and tools.
"""
from __future__ import annotations

from shutil import which

from antispoof.spoofbench.attacks import classical_tts, classical_vocoders, hifigan, kokoro, piper_vits
from antispoof.spoofbench.attacks.base import Attack, SynthesisError, TextToSpeech, Vocoder, set_render_cache

FAMILIES = (classical_tts, classical_vocoders, piper_vits, hifigan, kokoro)

ATTACKS: dict[str, Attack] = {attack.name: attack for family in FAMILIES for attack in family.ATTACKS}
TTS_SYSTEMS: dict[str, TextToSpeech] = {n: a for n, a in ATTACKS.items() if a.kind == "tts"}
VOCODERS: dict[str, Vocoder] = {n: a for n, a in ATTACKS.items() if a.kind == "vocoder"}


def check_tools(names=None) -> list[str]:
    """Missing external programs of the named attacks (all by default); the builder refuses to
    start without them."""
    needed = {tool for name in (names or ATTACKS) for tool in ATTACKS[name].tools}
    return sorted(tool for tool in needed if which(tool) is None)


__all__ = ["ATTACKS", "TTS_SYSTEMS", "VOCODERS", "FAMILIES", "Attack", "SynthesisError", "check_tools",
           "set_render_cache"]
