"""Training-time data: clips with their labels, length-grouped batches, padding collate.

Waveforms are read on the CPU workers and padded into one tensor; features (LFCC, log-mel)
are computed later on the device where the batch lives.
"""
from __future__ import annotations

import math
from typing import Callable, Iterator

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset, Sampler

from antispoof.data.audio import SR, read_audio
from antispoof.data.manifest import constant_segments
from antispoof.schema import SEGMENT_HOP_S, UNKNOWN
from antispoof.utils import rng_for

FRAME = int(SR * SEGMENT_HOP_S)  # samples per 10 ms label


def n_frames(n_samples: int) -> int:
    """10 ms label frames that cover n_samples (a partial last frame counts)."""
    return math.ceil(n_samples / FRAME)


class ClipDataset(Dataset):
    """Clips of a manifest: waveform, utterance label (1 bona fide, 0 spoof, -1 unknown), 10 ms labels.

    `crop_s` takes a random window of at most that length (aligned to 10 ms so the segment
    labels stay exact); the window depends only on (seed, epoch, clip), so a fixed seed
    gives the same batches on any number of workers. `augment` (augment.WaveAugmenter) runs the
    per-clip wave chain after the crop, with a generator seeded the same way. `speakers` (speaker
    -> index, for speaker classification) adds each clip's `speaker` index, -1 when unknown.
    """

    def __init__(self, table: pd.DataFrame, segments: dict[str, np.ndarray] | None = None,
                 crop_s: float | None = None, seed: int = 0, augment: Callable | None = None,
                 speakers: dict[str, int] | None = None):
        self.table = table.reset_index(drop=True)
        self.segments = segments or {}
        self.crop = int(crop_s * SR) // FRAME * FRAME if crop_s else None
        self.seed, self.epoch = seed, 0
        self.augment = augment
        self.speakers = None if speakers is None else speaker_indices(self.table, speakers)

    def __len__(self) -> int:
        return len(self.table)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, index: int) -> dict:
        row = self.table.iloc[index]
        wave = read_audio(row.audio)  # an unreadable file is one line naming it (AudioError)
        label, seg = clip_labels(row, self.segments)
        seg = fit_labels(seg, n_frames(len(wave)))
        if self.crop and len(wave) > self.crop:
            rng = rng_for(self.seed, self.epoch, row.utt_id, "crop")
            start = int(rng.integers(0, (len(wave) - self.crop) // FRAME + 1)) * FRAME
            wave = wave[start: start + self.crop]
            seg = seg[start // FRAME: (start + self.crop) // FRAME]
        relabelled = False
        if self.augment:
            clip = self.augment(wave, label, seg, rng_for(self.seed, self.epoch, row.utt_id, "wave"))
            wave, label, seg, relabelled = clip.wave, clip.label, clip.seg, clip.relabelled
        item = {"utt_id": row.utt_id, "wave": torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)),
                "label": label, "seg": torch.from_numpy(np.ascontiguousarray(seg)), "relabelled": relabelled}
        if self.speakers is not None:
            item["speaker"] = self.speakers[index]
        return item


def speaker_names(table: pd.DataFrame) -> list[str | None]:
    """Each row's `speaker` as a string (ids read as numbers included), None where unknown."""
    if "speaker" not in table:
        return [None] * len(table)
    return [None if pd.isna(s) or not str(s).strip() else str(s).strip() for s in table["speaker"]]


def speaker_indices(table: pd.DataFrame, speakers: dict[str, int]) -> list[int]:
    """Each row's index in `speakers` (-1 for a speaker outside it or none)."""
    return [-1 if s is None else speakers.get(s, -1) for s in speaker_names(table)]


def clip_labels(row, segments: dict[str, np.ndarray]) -> tuple[int, np.ndarray]:
    """A manifest row's utterance label (1 bona fide, 0 spoof, -1 unknown) and its 10 ms labels
    (from `segments`, else constant over the clip; all -1 when the label is unknown)."""
    label = getattr(row, "label", None)
    if label not in ("bonafide", "spoof"):
        return UNKNOWN, np.full(math.ceil(row.duration / SEGMENT_HOP_S), UNKNOWN, np.int64)
    seg = segments.get(row.utt_id)
    seg = constant_segments(label, row.duration) if seg is None else seg
    return int(label == "bonafide"), np.asarray(seg, np.int64)


def fit_labels(seg: np.ndarray, n: int) -> np.ndarray:
    """10 ms labels cut or extended (repeating the last one) to exactly n frames: a label file may
    be a frame or two off its audio (rounding at another rate), and splicing, cropping and
    stretching rely on frame i of the labels being samples [160 i, 160 (i + 1)) of the wave."""
    if len(seg) >= n or len(seg) == 0:
        return seg[:n]
    return np.concatenate([seg, np.full(n - len(seg), seg[-1], seg.dtype)])


def collate(items: list[dict], key: str = "wave", dtype: torch.dtype = torch.float32) -> dict:
    """Zero-pad each item's `key` tensor along its first axis (waveforms [S]; cached encoder
    states [T, layers, dim] with key="states") and -1-pad segment labels; keep the true lengths.
    Items with a `speaker` index (speaker classification) give the batch a `speaker` tensor."""
    lengths = torch.tensor([len(it[key]) for it in items])
    seg_lengths = torch.tensor([len(it["seg"]) for it in items])
    padded = torch.zeros(len(items), int(lengths.max()), *items[0][key].shape[1:], dtype=dtype)
    seg = torch.full((len(items), int(seg_lengths.max())), UNKNOWN, dtype=torch.long)
    for i, it in enumerate(items):
        padded[i, : lengths[i]] = it[key]
        seg[i, : seg_lengths[i]] = it["seg"]
    batch = {"utt_id": [it["utt_id"] for it in items], key: padded, "lengths": lengths,
             "label": torch.tensor([it["label"] for it in items]), "seg": seg, "seg_lengths": seg_lengths,
             "relabelled": torch.tensor([it.get("relabelled", False) for it in items])}
    if "speaker" in items[0]:
        batch["speaker"] = torch.tensor([it["speaker"] for it in items])
    return batch


class LengthGroupedBatchSampler(Sampler[list[int]]):
    """Batches of clips of similar length, so padding wastes little compute.

    Shuffles, sorts within pools of `pool_batches` batches by duration, cuts batches of at
    most `batch_size` clips and `max_batch_s` seconds of padded audio, then shuffles the
    batches. Under DDP each rank takes every world_size-th batch. For training (`even`) the last
    few are dropped so every rank takes the same number of gradient steps; for evaluation none
    is dropped, so every clip is scored exactly once (ranks may then differ by one batch, which
    evaluation allows; the module gathers uneven results).
    """

    def __init__(self, durations, batch_size: int, max_batch_s: float | None = None, shuffle: bool = True,
                 seed: int = 0, pool_batches: int = 50, num_replicas: int | None = None, rank: int | None = None,
                 even: bool = True):
        self.durations = np.asarray(durations, dtype=float)
        self.batch_size, self.max_batch_s = batch_size, max_batch_s
        self.shuffle, self.seed, self.pool = shuffle, seed, pool_batches * batch_size
        self._replicas, self._rank, self.epoch, self.even = num_replicas, rank, 0, even

    def _shard(self) -> tuple[int, int]:
        """(world size, rank), read when batches are drawn, not when the sampler is made: the fit's
        loaders are built before Lightning starts the process group."""
        if self._replicas is not None:
            return self._replicas, self._rank or 0
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized():
            return dist.get_world_size(), dist.get_rank()
        return 1, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[list[int]]:
        rng = rng_for(self.seed, self.epoch, "batches")
        order = rng.permutation(len(self.durations)) if self.shuffle else np.arange(len(self.durations))
        batches = []
        for start in range(0, len(order), self.pool):
            pool = order[start: start + self.pool]
            pool = pool[np.argsort(self.durations[pool], kind="stable")]
            batch: list[int] = []
            for index in pool:
                # The pool is sorted, so this clip is the longest: it sets the padded length.
                too_long = self.max_batch_s and batch and self.durations[index] * (len(batch) + 1) > self.max_batch_s
                if len(batch) == self.batch_size or too_long:
                    batches.append(batch)
                    batch = []
                batch.append(int(index))
            if batch:
                batches.append(batch)
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        replicas, rank = self._shard()
        usable = len(batches) - len(batches) % replicas if self.even else len(batches)
        return batches[rank: usable: replicas]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._batches())

    def __len__(self) -> int:
        return len(self._batches())
