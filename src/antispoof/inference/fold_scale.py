"""One scale for the fold models of an experiment, learnt without a label.

The k fold models of an experiment are trained apart, and their scores drift apart in offset and
spread: on the demo (mini v2, MHFA), fold 0's own calibration has offset -0.68 and fold 1's +0.87.
Everything that pools OOF scores across folds then mixes scales: a calibration fitted on the other
folds' scores and applied to a held-out fold carries the wrong offset, and the cross-fitted Cllr
got worse than no calibration at all (0.64 -> 0.76); a vote or stacker learns the same muddle.

Every fold model scores the same test clips, so its scores there are a common, unlabelled reference:
a fold model's utterance scores are standardised by the median and the normal-consistent IQR
(IQR / 1.349) of its own test-split scores, and that one affine map is applied to its OOF scores,
its test scores and any new clip `antispoof predict` scores with it. Same inputs, so what differs
between the fold models' test scores is their scale, not the data. No label is read, so OOF
figures computed after the map stay honest without nesting (with it, the demo's cross-fitted Cllr
falls to 0.57). The map is monotone increasing, so no fold model's own ranking or EER moves.

Segment scores keep their own scale (their thresholds are fitted on pooled OOF segments, and
regions are cut from them); only the utterance columns are mapped.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from antispoof.runs import read_predictions
from antispoof.schema import fail

MODES = ("test", "none")
DEFAULT = "test"
COLUMNS = ("score", "score_utt")
IQR_TO_SD = 1.349  # the IQR of a standard normal


def robust_scale(values) -> tuple[float, float]:
    """(median, IQR / 1.349) of the finite values: a normal's mean and sd, unmoved by a few wild
    scores; the spread falls back to the sd, then 1, when the IQR is 0. Needs >= 1 finite value."""
    s = np.asarray(values, dtype=np.float64)
    s = s[np.isfinite(s)]
    q1, centre, q3 = np.percentile(s, [25, 50, 75])
    return float(centre), float((q3 - q1) / IQR_TO_SD or float(s.std()) or 1.0)


@dataclass(frozen=True)
class FoldScale:
    """column -> (centre, spread) of one fold model; `apply` maps (s - centre) / spread."""

    stats: tuple[tuple[str, float, float], ...] = ()

    @classmethod
    def fit(cls, reference: pd.DataFrame) -> "FoldScale":
        """The fold model's map from its scores on the reference (test) clips."""
        stats = []
        for column in COLUMNS:
            if column not in reference.columns:
                continue
            s = reference[column].to_numpy(float)
            if np.isfinite(s).sum() < 2:
                continue
            stats.append((column, *robust_scale(s)))
        return cls(tuple(stats))

    def apply(self, table: pd.DataFrame) -> pd.DataFrame:
        """A copy of `table` with its utterance score columns on the common scale."""
        out = table.copy()
        for column, centre, spread in self.stats:
            if column in out.columns:
                out[column] = (out[column].to_numpy(float) - centre) / spread
        return out

    def to_dict(self) -> dict:
        return {column: {"centre": centre, "spread": spread} for column, centre, spread in self.stats}


IDENTITY = FoldScale()


def check_mode(mode: str, where) -> str:
    if mode not in MODES:
        fail(Path(str(where)), f"align_folds must be one of {', '.join(MODES)}, not {mode!r}")
    return mode


def scale_of(test_table: pd.DataFrame, mode: str = DEFAULT) -> FoldScale:
    """A fold model's map from its test predictions (identity with mode 'none')."""
    return IDENTITY if mode == "none" else FoldScale.fit(test_table)


def fold_scales(folds: dict[int, Path], mode: str = DEFAULT) -> dict[int, FoldScale]:
    """Each fold model's map, from the test predictions in its folder."""
    if check_mode(mode, next(iter(folds.values()), ".")) == "none":
        return {k: IDENTITY for k in folds}
    return {k: FoldScale.fit(read_predictions(d, "test")) for k, d in folds.items()}
