"""Bona fide recordings shipped in Debian packages, with their texts, languages and speakers.

`make setup` (scripts/install_debian.sh) extracts the data-only packages under `.deps/debian`
(dpkg -x) and installs the synthesizers system-wide; each corpus is looked up under every root in turn, so a system-wide
install of the same package works as well.
"""
from __future__ import annotations

import gzip
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from antispoof.data.sounds import first_existing

LICENCES = {
    "tuxpaint": "GPL-2.0 (Tux Paint stamps, tuxpaint-stamps-default)",
    "asterisk": "CC-BY-SA-3.0 (Asterisk core sounds, Digium / Allison Smith and others)",
    "festvox_ru": "festvox-ru licence (Nickolay V. Shmyrev, free, see /usr/share/doc/festvox-ru/copyright)",
    "ktuberling": "GPL-2.0+ (KTuberling, KDE)",
}


@dataclass(frozen=True)
class SourceClip:
    """One real recording: where it is, what is said, in which language, by whom."""

    clip_id: str
    path: str
    corpus: str
    language: str
    speaker: str
    text: str = ""
    extra: dict = field(default_factory=dict, compare=False, hash=False)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()


# ---- Tux Paint stamp narrations ------------------------------------------------------------

_DESC = re.compile(r"^(?P<stamp>.+)_desc(?:_(?P<lang>[A-Za-z]{2,3}))?\.ogg$")


def _stamp_texts(txt_path: Path) -> dict[str, str]:
    """Tux Paint stamp .txt: first line English, then `lang.utf8=text` lines."""
    texts: dict[str, str] = {}
    try:
        lines = txt_path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return texts
    if lines and "=" not in lines[0]:
        texts["en"] = lines[0].strip()
    for line in lines:
        key, sep, value = line.partition("=")
        if sep and key.endswith(".utf8"):
            lang = key[: -len(".utf8")].split("_")[0].split("@")[0]
            texts.setdefault(lang, value.strip())
    return texts


def tuxpaint_clips(roots: Iterable[Path]) -> list[SourceClip]:
    base = first_existing(roots, "usr/share/tuxpaint/stamps")
    if base is None:
        return []
    clips = []
    for ogg in sorted(base.rglob("*_desc*.ogg")):
        match = _DESC.match(ogg.name)
        if not match:
            continue
        lang = (match["lang"] or "en").lower()
        texts = _stamp_texts(ogg.with_name(match["stamp"] + ".txt"))
        rel = ogg.relative_to(base).with_suffix("")
        clips.append(SourceClip(
            clip_id=f"tux-{_slug(str(rel))}", path=str(ogg), corpus="tuxpaint", language=lang,
            speaker=f"tuxpaint-{lang}", text=texts.get(lang, ""),
            extra={"english": texts.get("en", "")}))
    return clips


# ---- Asterisk telephone prompts -------------------------------------------------------------

def _asterisk_transcripts(roots, lang: str) -> dict[str, str]:
    doc = first_existing(roots, f"usr/share/doc/asterisk-core-sounds-{lang}/core-sounds-{lang}.txt.gz")
    if doc is None:
        return {}
    texts = {}
    with gzip.open(doc, "rt", encoding="utf-8", errors="replace") as fh:
        for line in fh:
            key, sep, value = line.partition(":")
            value = value.strip()
            if sep and not line.startswith(";") and value and not value.startswith("["):
                texts[key.strip()] = value
    return texts


def asterisk_clips(roots: Iterable[Path]) -> list[SourceClip]:
    roots = list(roots)
    base = first_existing(roots, "usr/share/asterisk/sounds")
    if base is None:
        return []
    clips = []
    for voice_dir in sorted(p for p in base.iterdir() if p.is_dir()):
        lang = voice_dir.name.split("_")[0]
        texts = _asterisk_transcripts(roots, lang)
        for f in sorted(voice_dir.rglob("*.g722")):
            key = str(f.relative_to(voice_dir).with_suffix(""))
            text = texts.get(key, "")
            if not text:  # tones, beeps and untranscribed fragments are not speech we can use
                continue
            clips.append(SourceClip(
                clip_id=f"ast-{lang}-{_slug(key)}", path=str(f), corpus="asterisk", language=lang,
                speaker=f"asterisk-{voice_dir.name}", text=text))
    return clips


# ---- festvox-ru: the recordings behind festival's msu_ru_nsh_clunits voice ------------------

def festvox_ru_clips(roots: Iterable[Path]) -> list[SourceClip]:
    voice = first_existing(roots, "usr/share/festival/voices/russian/msu_ru_nsh_clunits")
    if voice is None or not (voice / "etc/txt.done.data").exists():
        return []
    clips = []
    pattern = re.compile(r'^\(\s*(\S+)\s+"(.*)"\s*\)\s*$')
    for line in (voice / "etc/txt.done.data").read_text(encoding="utf-8", errors="replace").splitlines():
        match = pattern.match(line)
        if match and (voice / "wav" / f"{match[1]}.wav").exists():
            clips.append(SourceClip(
                clip_id=f"fvru-{match[1]}", path=str(voice / "wav" / f"{match[1]}.wav"), corpus="festvox_ru",
                language="ru", speaker="msu_ru_nsh", text=match[2]))
    return clips


# ---- KTuberling: single words in many languages ---------------------------------------------

def ktuberling_clips(roots: Iterable[Path]) -> list[SourceClip]:
    base = first_existing(roots, "usr/share/ktuberling/sounds")
    if base is None:
        return []
    clips = []
    for lang_dir in sorted(p for p in base.iterdir() if p.is_dir()):
        for f in sorted(lang_dir.iterdir()):
            if f.suffix.lower() in (".ogg", ".wav", ".opus"):
                clips.append(SourceClip(
                    clip_id=f"ktub-{lang_dir.name}-{_slug(f.stem)}", path=str(f), corpus="ktuberling",
                    language=lang_dir.name.split("_")[0], speaker=f"ktuberling-{lang_dir.name}",
                    text="", extra={"english": f.stem.replace("_", " ")}))
    return clips


CORPORA: dict[str, Callable[[Iterable[Path]], list[SourceClip]]] = {
    "tuxpaint": tuxpaint_clips,
    "asterisk": asterisk_clips,
    "festvox_ru": festvox_ru_clips,
    "ktuberling": ktuberling_clips,
}


def file_digest(path: str) -> str:
    with open(path, "rb") as fh:
        return hashlib.blake2b(fh.read(), digest_size=12).hexdigest()


def discover(roots: Iterable[Path], corpora: Iterable[str]) -> list[SourceClip]:
    """All clips of the named corpora, byte-identical files de-duplicated (first one kept)."""
    roots = [Path(r) for r in roots]
    unknown = [c for c in corpora if c not in CORPORA]
    if unknown:
        raise ValueError(f"unknown corpora {unknown}; known: {sorted(CORPORA)}")
    seen, clips = set(), []
    for corpus in corpora:
        for clip in CORPORA[corpus](roots):
            digest = file_digest(clip.path)
            if digest not in seen:
                seen.add(digest)
                clips.append(clip)
    return clips
