"""Training-time data for heads on a frozen encoder: cached hidden states instead of waveforms.

Each item is a clip's [frames, layers, dim] float16 states from the StateCache with the same
labels as data.dataset.ClipDataset (utterance label, 10 ms segment labels fitted to 2 per
20 ms frame); `collate_states` pads them into one batch whose `states` the frozen heads read.
`views` > 1 (a cache with augmented copies) draws one copy per clip per epoch. `speakers` adds
each clip's speaker index, as data.dataset.ClipDataset does.
"""
from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from antispoof.data.dataset import clip_labels, collate, fit_labels, speaker_indices
from antispoof.features.state_cache import FRAME_HOP_S, StateCache
from antispoof.schema import SEGMENT_HOP_S
from antispoof.utils import rng_for

LABELS_PER_FRAME = round(FRAME_HOP_S / SEGMENT_HOP_S)  # two 10 ms labels per encoder frame


def view_id(utt_id: str, view: int) -> str:
    """The cache key of augmented copy `view` of a clip (view 0 is the clip itself)."""
    return utt_id if view == 0 else f"{utt_id}#aug{view}"


class StateDataset(Dataset):
    """Clips of a manifest, read from a state cache (every clip must be in it)."""

    def __init__(self, table: pd.DataFrame, cache: StateCache, segments: dict[str, np.ndarray] | None = None,
                 views: int = 1, seed: int = 0, speakers: dict[str, int] | None = None):
        self.utt_ids = table.utt_id.tolist()
        self.cache = cache
        self.views, self.seed, self.epoch = views, seed, 0
        cache.require([view_id(u, v) for u in self.utt_ids for v in range(views)])
        # labels once, not per item: an epoch over cached states is short enough for pandas to show
        self.labels = [clip_labels(row, segments or {}) for row in table.itertuples()]
        self.speakers = None if speakers is None else speaker_indices(table, speakers)

    def __len__(self) -> int:
        return len(self.utt_ids)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, index: int) -> dict:
        utt_id = self.utt_ids[index]
        view = 0
        if self.views > 1:
            view = int(rng_for(self.seed, self.epoch, utt_id, "view").integers(self.views))
        states = np.array(self.cache.states(view_id(utt_id, view)))
        label, seg = self.labels[index]
        seg = fit_labels(seg, LABELS_PER_FRAME * len(states))
        item = {"utt_id": utt_id, "states": torch.from_numpy(states), "label": label,
                "seg": torch.from_numpy(np.ascontiguousarray(seg))}
        if self.speakers is not None:
            item["speaker"] = self.speakers[index]
        return item


# states stay float16 in the batch (half the memory); the heads normalise them in float32
collate_states = functools.partial(collate, key="states", dtype=torch.float16)
