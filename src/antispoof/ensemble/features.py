"""Per-utterance stacking features: every model's utterance scores and how its segment scores look.

The utterance scores say how spoof-like a clip is overall; the segment-score statistics say
where and how much: a partial spoof shows as a short low run in an otherwise bona fide clip,
a fully synthetic clip as low scores throughout. Per model:
  score, score_utt (when the model has an utterance branch), score_seg_min;
  seg_mean, seg_max, seg_std, seg_q<quantile> (seg_min is score_seg_min already);
  seg_below: share of segments below the model's threshold;
  longest_run_s: longest run of consecutive segments below it, in seconds;
  transitions: how often consecutive segments cross it;
plus the clip's duration. The threshold is fitted by the caller on training rows only
(stack.py: the EER threshold of score_seg_min), so features leak no held-out label.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from antispoof.ensemble.crossfit import select
from antispoof.ensemble.tables import Ensemble

SEP = "__"  # LightGBM refuses JSON punctuation (":", ",", "[") in feature names


def segment_statistics(arrays, hop_s: float, threshold: float, quantiles=(0.1, 0.25, 0.5, 0.75, 0.9)) -> pd.DataFrame:
    """One row per clip: statistics of its segment scores, vectorised over all clips at once."""
    arrays = [np.asarray(a, dtype=float) for a in arrays]
    n = len(arrays)
    lengths = np.array([a.size for a in arrays], dtype=int)
    flat = np.concatenate(arrays) if lengths.sum() else np.zeros(0)
    clip = np.repeat(np.arange(n), lengths)
    values = pd.Series(flat).groupby(clip)
    out = pd.DataFrame({"seg_mean": values.mean(), "seg_max": values.max(), "seg_std": values.std(ddof=0)})
    if len(quantiles):
        q = values.quantile(list(quantiles)).unstack()
        out = out.join(q.set_axis([f"seg_q{int(round(100 * v)):02d}" for v in q.columns], axis=1))
    below = flat < threshold
    same_clip = np.r_[False, clip[1:] == clip[:-1]]
    crossing = same_clip & np.r_[False, below[1:] != below[:-1]]
    run = np.cumsum(~same_clip | crossing)  # a new run at every clip start and every crossing
    run_length = pd.Series(below.astype(int)).groupby(run).transform("sum").to_numpy() * below
    out["seg_below"] = pd.Series(below.astype(float)).groupby(clip).mean()
    out["longest_run_s"] = pd.Series(run_length).groupby(clip).max() * hop_s
    out["transitions"] = pd.Series(crossing.astype(int)).groupby(clip).sum()
    return out.reindex(np.arange(n)).reset_index(drop=True)


def model_features(table: pd.DataFrame, hop_s: float, threshold: float, quantiles) -> pd.DataFrame:
    utterance = table[["score", "score_utt", "score_seg_min"]].reset_index(drop=True)
    if utterance["score_utt"].isna().all():
        utterance = utterance.drop(columns="score_utt")
    return pd.concat([utterance, segment_statistics(table["seg_scores"], hop_s, threshold, quantiles)], axis=1)


def build_features(ens: Ensemble, part: str, rows, thresholds: dict[str, float], quantiles) -> pd.DataFrame:
    """The stacking table of a part's rows: `<model>__<feature>` columns and duration."""
    blocks = []
    for name, t in ens.models.items():
        block = model_features(select(getattr(t, part), rows), t.hop, thresholds[name], quantiles)
        blocks.append(block.add_prefix(f"{name}{SEP}"))
    duration = select(ens.frame(part)["duration"], rows).to_numpy(float)
    return pd.concat([*blocks, pd.DataFrame({"duration": duration})], axis=1)
