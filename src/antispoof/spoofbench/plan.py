"""SpoofBench's plan: which clips exist, of which kind, split, attack, channel and condition.

Everything here is decided from the file list and the seed alone, before any audio is made, so
a plan is reproducible and a build can resume: bona fide utterances are chosen per split
(round-robin over speakers, test = unseen speakers), each yields a *family* of clips (itself,
a TTS of its text, a vocoded copy, a partial spoof) or joins a concatenation, and every clip
draws a channel from one distribution shared by both classes.
"""
from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
from omegaconf import DictConfig

from antispoof.metrics.conditions import BONAFIDE
from antispoof.spoofbench.channel import PROFILES, draw_channel
from antispoof.spoofbench.attacks import ATTACKS, TTS_SYSTEMS
from antispoof.spoofbench.utterances import Utterance
from antispoof.utils import rng_for



@dataclass
class Piece:
    """One stretch of audio inside a clip: a bona fide utterance, or a spoof of it."""

    source: Utterance
    attack: str = "bonafide"  # "bonafide", a TTS system or a vocoder


@dataclass
class ClipPlan:
    utt_id: str
    split: str
    kind: str  # bonafide | tts | vocoder | partial | concat
    pieces: list[Piece]
    label: str
    group: str
    channel: dict = field(default_factory=dict)

    @property
    def attacks(self) -> list[str]:
        return sorted({p.attack for p in self.pieces if p.attack != "bonafide"})

    @property
    def corpus(self) -> str:
        return self.pieces[0].source.corpus


def _utt_id(seed: int, key: str) -> str:
    """Opaque ids: nothing in an id may reveal the class, the source or the attack."""
    return "sb_" + hashlib.sha256(f"{seed}/{key}".encode()).hexdigest()[:12]


def select_per_speaker(items: list[Utterance], limit: int | None, seed: int, key: str) -> list[Utterance]:
    """A random `limit` of the utterances, the same share of every speaker (largest remainders)."""
    if not limit or limit >= len(items):
        return items
    by_speaker: dict[str, list[Utterance]] = defaultdict(list)
    for item in items:
        by_speaker[item.speaker].append(item)
    speakers = sorted(by_speaker)
    quota = np.array([limit * len(by_speaker[s]) / len(items) for s in speakers])
    take = np.floor(quota).astype(int)
    take[np.argsort(-(quota - take), kind="stable")[: limit - take.sum()]] += 1
    rng = rng_for(seed, "select", key)
    chosen = []
    for speaker, n in zip(speakers, take):
        pool = by_speaker[speaker]
        chosen += [pool[i] for i in sorted(rng.permutation(len(pool))[:n])]
    return chosen


def pick_attack(names, cfg: DictConfig, rng) -> str:
    """One of `names`: a neural one with chance `attacks.neural_share` (where both generations
    are among them), then uniformly within the generation. Drawing the generation first keeps
    the neural share the same in every language, whichever classical voices speak it. The share
    is one number or one per kind ({tts: .., vocoder: ..})."""
    names = list(names)
    neural = [n for n in names if ATTACKS[n].generation == "neural"]
    classical = [n for n in names if n not in neural]
    share = cfg.attacks.get("neural_share", 0.0) or 0.0
    if isinstance(share, (dict, DictConfig)):
        share = share.get(ATTACKS[names[0]].kind, 0.0)
    share = float(share)
    if neural and classical:
        names = neural if rng.random() < share else classical
    return str(names[rng.integers(len(names))])


def _tts_for(language: str, split: str, cfg: DictConfig, rng) -> str | None:
    """A TTS system for a language; the unseen attacks only ever speak in the test split."""
    unseen = [a for a in cfg.attacks.unseen if TTS_SYSTEMS[a].supports(language)]
    if split == "test" and unseen and rng.random() < cfg.attacks.unseen_share:
        return pick_attack(unseen, cfg, rng)
    seen = [a for a in cfg.attacks.tts if TTS_SYSTEMS[a].supports(language)]
    return pick_attack(seen, cfg, rng) if seen else None


def _vocoder(cfg: DictConfig, rng) -> str:
    return pick_attack(list(cfg.attacks.vocoders), cfg, rng)


def _partial_attack(utt: Utterance, split: str, cfg: DictConfig, rng) -> str:
    """PartialSpoof replaces words by TTS of those words or by the utterance's vocoded twin."""
    if len(utt.clips) > 1 and utt.text and rng.random() < cfg.partial.tts_share:
        system = _tts_for(utt.language, split, cfg, rng)
        if system:
            return system
    return _vocoder(cfg, rng)


def _family_plans(utt: Utterance, split: str, cfg: DictConfig) -> list[ClipPlan]:
    rng = rng_for(cfg.seed, "family", utt.key)
    make = lambda kind, pieces, label: ClipPlan(  # noqa: E731
        _utt_id(cfg.seed, f"{utt.key}/{kind}"), split, kind, pieces, label, utt.speaker)
    plans = [make("bonafide", [Piece(utt)], "bonafide")]
    p = cfg.per_source
    tts = _tts_for(utt.language, split, cfg, rng) if utt.text else None
    if tts and rng.random() < p.tts:
        plans.append(make("tts", [Piece(utt, tts)], "spoof"))
    if rng.random() < p.vocoder:
        plans.append(make("vocoder", [Piece(utt, _vocoder(cfg, rng))], "spoof"))
    if rng.random() < p.partial:
        plans.append(make("partial", [Piece(utt), Piece(utt, _partial_attack(utt, split, cfg, rng))], "spoof"))
    return plans


def _concat_plan(host: list[Utterance], split: str, cfg: DictConfig, texts: list[Utterance]) -> ClipPlan:
    """Utterances of one speaker, some of them replaced by a vocoded or TTS version.

    A TTS piece may speak another utterance's text (often in another language). Bona fide-only
    concatenations exist too, so a splice is not by itself a sign of spoofing.
    """
    key = "+".join(u.key for u in host)
    rng = rng_for(cfg.seed, "concat", key)
    c = cfg.concat
    all_bonafide = rng.random() < c.bonafide_share
    pieces = []
    for utt in host:
        if all_bonafide or rng.random() >= c.spoof_piece_prob:
            pieces.append(Piece(utt))
        elif rng.random() < 0.5 or not texts:
            pieces.append(Piece(utt, _vocoder(cfg, rng)))
        else:
            other = texts[rng.integers(len(texts))] if rng.random() < c.foreign_text_prob else utt
            other = other if other.text else utt
            system = _tts_for(other.language, split, cfg, rng) if other.text else None
            pieces.append(Piece(other, system) if system else Piece(utt, "voc_world"))
    if not all_bonafide and all(p.attack == "bonafide" for p in pieces):
        pieces[rng.integers(len(pieces))].attack = _vocoder(cfg, rng)
    label = "bonafide" if all(p.attack == "bonafide" for p in pieces) else "spoof"
    return ClipPlan(_utt_id(cfg.seed, f"concat/{key}"), split, "concat", pieces, label, host[0].speaker)


def _profile_quotas(n: int, n_forced: int, n_full_eligible: int, shares) -> dict[str, int]:
    """How many of a class's n clips get each channel profile (full-band ones only where eligible)."""
    quotas = {name: int(round(shares[name] * n)) for name in PROFILES}
    for name in ("full_band", "noisy_full_band"):
        quotas[name] = min(quotas[name], n_full_eligible)
        n_full_eligible -= quotas[name]
    quotas["telephone"] = max(quotas["telephone"], n_forced)
    quotas["band_limited"] = n - quotas["telephone"] - quotas["full_band"] - quotas["noisy_full_band"]
    return quotas


def assign_channels(plans: list[ClipPlan], cfg: DictConfig) -> None:
    """Give each class of each split the same share of every channel profile.

    Codec2 output is narrowband by nature, so those clips always get the telephone profile and
    others of their class get it less often. Recordings that are band-limited already (the G.722
    Asterisk prompts; festvox-ru, with nothing above 7 kHz) are kept out of the full-band
    profiles, together with every spoof made from them, or bandwidth would tell the classes apart there.
    """
    shares = cfg.channel.profiles
    for split, label in [(s, lab) for s in ("train", "test") for lab in ("bonafide", "spoof")]:
        members = [p for p in plans if p.label == label and p.split == split]
        order = rng_for(cfg.seed, "profiles", split, label).permutation(len(members))
        members = [members[i] for i in order]
        narrow_only = [p.kind == "vocoder" and p.attacks == ["voc_codec2"] for p in members]
        forced = [p for p, f in zip(members, narrow_only) if f]
        free = [p for p, f in zip(members, narrow_only) if not f]
        excluded = set(cfg.channel.band_limited_corpora)
        full_ok = [p for p in free if p.corpus not in excluded]
        rest = [p for p in free if p.corpus in excluded]
        quotas = _profile_quotas(len(members), len(forced), len(full_ok), shares)
        profile_of = {id(p): "telephone" for p in forced}
        n_full = quotas["full_band"] + quotas["noisy_full_band"]
        for i, p in enumerate(full_ok[:n_full]):
            profile_of[id(p)] = "full_band" if i < quotas["full_band"] else "noisy_full_band"
        remaining = rest + full_ok[n_full:]
        remaining = [remaining[i] for i in rng_for(cfg.seed, "narrow", split, label).permutation(len(remaining))]
        n_tel = quotas["telephone"] - len(forced)
        for i, p in enumerate(remaining):
            profile_of[id(p)] = "telephone" if i < n_tel else "band_limited"
        for plan in members:
            rng = rng_for(cfg.seed, "channel", plan.utt_id)
            plan.channel = draw_channel(rng, profile_of[id(plan)], cfg.channel).to_dict()


def configured_attacks(cfg: DictConfig) -> list[str]:
    """Every attack the preset names, checked against the registry: a TTS system where one speaks
    (`tts`, `unseen`) and a vocoder where a waveform is resynthesised (`vocoders`)."""
    wanted = {"tts": list(cfg.attacks.tts) + list(cfg.attacks.unseen), "vocoder": list(cfg.attacks.vocoders)}
    for kind, names in wanted.items():
        for name in names:
            if name not in ATTACKS:
                raise ValueError(f"attack {name!r} is not in the registry (spoofbench/attacks); known: "
                                 f"{', '.join(sorted(ATTACKS))}")
            if ATTACKS[name].kind != kind:
                raise ValueError(f"attack {name!r} is a {ATTACKS[name].kind}, listed where a {kind} is expected")
    return wanted["tts"] + wanted["vocoder"]


def make_plan(cfg: DictConfig, utterances: list[Utterance]) -> list[list[ClipPlan]]:
    """Families of clip plans; every clip of a family derives from the same recordings."""
    configured_attacks(cfg)
    test_speakers = set(cfg.test_speakers)
    chosen = (select_per_speaker([u for u in utterances if u.speaker not in test_speakers],
                                 cfg.max_utterances, cfg.seed, "train")
              + select_per_speaker([u for u in utterances if u.speaker in test_speakers],
                                   cfg.max_test_utterances, cfg.seed, "test"))
    by_speaker: dict[str, list[Utterance]] = defaultdict(list)
    for utt in chosen:
        by_speaker[utt.speaker].append(utt)
    # Foreign texts come from the same split: a test utterance's words (or language) never reach training.
    texts = {split: [u for u in chosen if u.text and (u.speaker in test_speakers) == (split == "test")]
             for split in ("train", "test")}
    families: list[list[ClipPlan]] = []
    for speaker in sorted(by_speaker):
        split = "test" if speaker in test_speakers else "train"
        items = by_speaker[speaker]
        families.extend(_family_plans(utt, split, cfg) for utt in items)
        # Concatenations re-use the speaker's utterances (a family of their own, rendered apart).
        rng = rng_for(cfg.seed, "concat-donors", speaker)
        for _ in range(int(round(cfg.concat.share * len(items)))):
            k = int(rng.integers(cfg.concat.min_pieces, cfg.concat.max_pieces + 1))
            if len(items) < k:
                break
            host = [items[i] for i in sorted(rng.choice(len(items), k, replace=False))]
            families.append([_concat_plan(host, split, cfg, texts[split])])
    assign_channels([p for fam in families for p in fam], cfg)
    return families


def generation_of(attack: str) -> str:
    """`bonafide`, or the generations (classical / neural) of a clip's attacks, '+'-joined."""
    names = [a for a in attack.split("+") if a != "bonafide"]
    return "+".join(sorted({ATTACKS[a].generation for a in names})) or BONAFIDE


def condition_of(language: str, label: str, kind: str, attack: str, train_languages: set[str],
                 unseen_attacks: set[str]) -> str:
    """The condition of one clip (`antispoof.metrics.conditions`); bona fide clips of seen languages:
    `bonafide`. Whole-utterance spoofs are `seen_` or `unseen_` + their attack's generation
    (seen_classical, seen_neural, unseen_neural), so no table mixes 1990s synthesis with neural speech."""
    if any(lang not in train_languages for lang in language.split("+")):
        return "unseen_language"
    if label == "bonafide":
        return BONAFIDE
    if kind == "partial":
        return "partial"
    if kind == "concat":
        return "concatenation"
    seen = "unseen" if set(attack.split("+")) & unseen_attacks else "seen"
    return f"{seen}_{generation_of(attack)}"


def region_lengths(segments: np.ndarray, hop_s: float) -> list[float]:
    """Lengths in seconds of the spoofed runs (0s) of a 10 ms label array."""
    spoof = np.concatenate([[0], (np.asarray(segments) == 0).astype(int), [0]])
    edges = np.flatnonzero(np.diff(spoof))
    return ((edges[1::2] - edges[::2]) * hop_s).round(3).tolist()


__all__ = ["ClipPlan", "Piece", "make_plan", "condition_of", "generation_of", "assign_channels", "pick_attack"]
