"""Batch-level augmentation on the device where the batch lives: splice-mix, mixup, noise, SpecAugment.

Every random choice is drawn on the CPU from a generator seeded by (seed, epoch, step): a handful
of numbers per clip. The tensor work then runs on the batch's device with no randomness of its own
(noise samples come from a counter-based hash of integer indices, not from the device's generator),
so the GPU and the CPU produce the same batch for the same seed, and a resumed run repeats it.

Batch keys (see data.dataset.collate): wave [B, T], lengths [B], label [B] (1 bona fide, 0 spoof,
-1 unknown; mixup makes it a float bona fide probability), seg [B, F] 10 ms labels (-1 padding),
seg_lengths [B], relabelled [B] (the wave chain already turned the clip to spoof).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from antispoof.augment.wave import AugmentError
from antispoof.data.audio import SR
from antispoof.data.dataset import FRAME
from antispoof.utils import rng_for, stable_seed

BATCH_STEPS = ("splice", "mixup", "noise")  # in this order; SpecAugment runs inside the model


# ---- splice-mix (the seed's "mixup") -----------------------------------------------------------

@dataclass(frozen=True)
class Piece:
    """Samples [start, end) of batch clip `source`; start and end lie on the 10 ms grid."""

    source: int
    start: int
    end: int


def _insert(pieces: list[Piece], donor: Piece, at: int) -> list[Piece]:
    """Insert `donor` at sample `at` (a 10 ms boundary) of the clip the pieces make up."""
    out, offset = [], 0
    for piece in pieces:
        size = piece.end - piece.start
        if offset <= at < offset + size or (at == offset + size and piece is pieces[-1]):
            cut = piece.start + (at - offset)
            out += [p for p in (Piece(piece.source, piece.start, cut), donor, Piece(piece.source, cut, piece.end))
                    if p.end > p.start]
        else:
            out.append(piece)
        offset += size
    return out


def plan_splice(lengths: np.ndarray, labels: np.ndarray, relabelled: np.ndarray, cfg, rng) -> dict[int, list[Piece]]:
    """Which clips get others spliced in, and where: {clip: pieces}.

    As in the seed: a clip of at most max_host_s (not already turned to spoof by the wave chain)
    is chosen with probability p; 1..max_pieces donors from the rest of the batch are inserted at
    random 10 ms boundaries while the total stays within max_total_s; a donor is bona fide with
    probability p_bonafide_donor (any clip when the batch has none of that class) and is cropped
    to the room left. Clips are cut to whole 10 ms frames first, so every label stays on its frame.
    """
    whole = (lengths // FRAME) * FRAME
    max_total, plans = int(cfg.max_total_s * SR) // FRAME * FRAME, {}
    for host in range(len(lengths)):
        if (rng.random() >= cfg.p or relabelled[host] or labels[host] < 0 or whole[host] == 0
                or lengths[host] > cfg.max_host_s * SR):
            continue
        pieces, total = [Piece(host, 0, int(whole[host]))], int(whole[host])
        for _ in range(int(rng.integers(1, cfg.max_pieces + 1))):
            room = max_total - total
            want = 1 if rng.random() < cfg.p_bonafide_donor else 0
            others = [j for j in range(len(lengths)) if j != host and labels[j] >= 0 and whole[j] > 0]
            matching = [j for j in others if labels[j] == want] or others
            if room < FRAME or not matching:
                break
            donor = int(rng.choice(matching))
            size = min(int(whole[donor]), room)
            start = int(rng.integers(0, (int(whole[donor]) - size) // FRAME + 1)) * FRAME
            at = int(rng.integers(0, total // FRAME + 1)) * FRAME
            pieces = _insert(pieces, Piece(donor, start, start + size), at)
            total += size
        if len(pieces) > 1:
            plans[host] = pieces
    return plans


def splice(batch: dict, plans: dict[int, list[Piece]]) -> dict:
    """Build the spliced clips on the batch's device; 10 ms labels follow every sample exactly and
    the utterance label is bona fide only if every frame of the result is."""
    if not plans:
        return batch
    waves, segs = list(_unpadded(batch["wave"], batch["lengths"])), list(_unpadded(batch["seg"], batch["seg_lengths"]))
    labels = batch["label"].clone()
    for host, pieces in plans.items():
        waves[host] = torch.cat([batch["wave"][p.source, p.start: p.end] for p in pieces])
        segs[host] = torch.cat([batch["seg"][p.source, p.start // FRAME: p.end // FRAME] for p in pieces])
        labels[host] = (segs[host] >= 1).all().to(labels.dtype)
    return _repack(batch, waves, segs, labels)


def _unpadded(padded: torch.Tensor, lengths: torch.Tensor):
    return (padded[i, : int(n)] for i, n in enumerate(lengths.tolist()))


def _repack(batch: dict, waves: list[torch.Tensor], segs: list[torch.Tensor], labels: torch.Tensor) -> dict:
    lengths = torch.tensor([len(w) for w in waves], device=batch["lengths"].device)
    seg_lengths = torch.tensor([len(s) for s in segs], device=batch["seg_lengths"].device)
    wave = batch["wave"].new_zeros(len(waves), int(lengths.max()))
    seg = batch["seg"].new_full((len(segs), int(seg_lengths.max())), -1)
    for i, (w, s) in enumerate(zip(waves, segs)):
        wave[i, : len(w)] = w
        seg[i, : len(s)] = s
    return {**batch, "wave": wave, "lengths": lengths, "seg": seg, "seg_lengths": seg_lengths, "label": labels}


# ---- mixup -------------------------------------------------------------------------------------

def plan_mixup(labels: np.ndarray, cfg, rng) -> list[tuple[int, int, float]]:
    """(clip, partner, lambda) for each labelled clip chosen with probability p; lambda ~ Beta(alpha, alpha)."""
    n, plans = len(labels), []
    for i in range(n):
        if rng.random() >= cfg.p or labels[i] < 0 or n < 2:
            continue
        partner = int(rng.choice([j for j in range(n) if j != i]))
        if labels[partner] >= 0:
            plans.append((i, partner, float(rng.beta(cfg.alpha, cfg.alpha))))
    return plans


def mixup(batch: dict, plans: list[tuple[int, int, float]]) -> dict:
    """x = lam x_i + (1 - lam) x_j over the longer of the two; labels are mixed the same way.

    Where only one clip has sound (the other has ended), the label is that clip's own: the
    other contributes silence there. Utterance and segment labels become bona fide probabilities.
    """
    if not plans:
        return batch
    # Every right-hand side reads the batch as it came in: a clip mixed earlier in the loop may
    # still be another clip's partner, and its partner role is its original audio and labels.
    wave, seg, label = batch["wave"], batch["seg"].float(), batch["label"].float()
    lengths, seg_lengths = batch["lengths"], batch["seg_lengths"]
    new_wave, new_seg, new_label = wave.clone(), seg.clone(), label.clone()
    new_lengths, new_seg_lengths = lengths.clone(), seg_lengths.clone()
    for i, j, lam in plans:
        new_wave[i] = lam * wave[i] + (1 - lam) * wave[j]
        both = (seg[i] >= 0) & (seg[j] >= 0)
        new_seg[i] = torch.where(both, lam * seg[i] + (1 - lam) * seg[j], torch.maximum(seg[i], seg[j]))
        new_label[i] = lam * label[i] + (1 - lam) * label[j]
        new_lengths[i] = torch.maximum(lengths[i], lengths[j])
        new_seg_lengths[i] = torch.maximum(seg_lengths[i], seg_lengths[j])
    return {**batch, "wave": new_wave, "seg": new_seg, "label": new_label, "lengths": new_lengths,
            "seg_lengths": new_seg_lengths}


# ---- noise at a random SNR -----------------------------------------------------------------------

_MASK32 = 0xFFFFFFFF


def _hash32(x: torch.Tensor) -> torch.Tensor:
    """An integer mixing hash on int64 tensors holding 32-bit values: the same on every device
    (each product stays below 2**63, so nothing depends on overflow behaviour)."""
    for _ in range(2):
        x = ((x ^ (x >> 16)) * 0x45D9F3B) & _MASK32
    return x ^ (x >> 16)


def hash_normal(seeds: list[int], n: int, device) -> torch.Tensor:
    """[len(seeds), n] standard normal samples from (seed, index) alone (Box-Muller on hashed uniforms)."""
    index = torch.arange(n, device=device, dtype=torch.int64)[None]
    base = torch.tensor([s & 0x7FFFFFFF for s in seeds], device=device, dtype=torch.int64)[:, None] * 0x9E3779B1
    u1 = (_hash32((2 * index + base) & _MASK32).float() + 0.5) / 2**32
    u2 = (_hash32((2 * index + 1 + base) & _MASK32).float() + 0.5) / 2**32
    return torch.sqrt(-2 * torch.log(u1)) * torch.cos(2 * math.pi * u2)


def plan_noise(n_clips: int, cfg, rng) -> list[tuple[int, float, int]]:
    """(clip, SNR in dB, noise seed) for each clip chosen with probability p."""
    return [(i, float(rng.uniform(cfg.min_snr_db, cfg.max_snr_db)), int(rng.integers(2**31)))
            for i in range(n_clips) if rng.random() < cfg.p]


def add_noise_at_snr(batch: dict, plans: list[tuple[int, float, int]]) -> dict:
    """White noise over each chosen clip's own samples, scaled so signal power / noise power is
    exactly the planned SNR (both measured over the clip's valid samples; silent clips are left)."""
    if not plans:
        return batch
    wave, lengths = batch["wave"].clone(), batch["lengths"]
    rows = [i for i, _, _ in plans]
    noise = hash_normal([seed for _, _, seed in plans], wave.shape[1], wave.device)
    valid = (torch.arange(wave.shape[1], device=wave.device)[None] < lengths[rows][:, None]).to(wave.dtype)
    noise = noise.to(wave.dtype) * valid
    count = valid.sum(1).clamp_min(1)
    signal_power = (wave[rows] ** 2 * valid).sum(1) / count
    noise_power = (noise**2).sum(1) / count
    snr = torch.tensor([snr for _, snr, _ in plans], device=wave.device, dtype=wave.dtype)
    gain = torch.sqrt(signal_power / (noise_power * 10 ** (snr / 10)).clamp_min(1e-20))
    wave[rows] = wave[rows] + gain[:, None] * noise
    return {**batch, "wave": wave}


# ---- SpecAugment on features (SELCNN) --------------------------------------------------------------

class SpecAugment(nn.Module):
    """Frequency and time masks on features [B, T, F] inside each clip's valid frames (Park et al.).

    torchaudio's FrequencyMasking / TimeMasking draw on the tensor's device generator, which makes
    GPU and CPU runs differ; here the masks are drawn on the CPU from a seed set per batch
    (`reseed`) and applied as tensor comparisons on the device. Per clip with probability p:
    `freq_masks` bands of width U[0, freq_width] and `time_masks` spans of width U[0, time_width],
    both only over the clip's own frames (padding stays as it was). Active only in training mode.
    """

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self._rng = np.random.default_rng(0)

    def reseed(self, seed: int) -> None:
        self._rng = np.random.default_rng(seed)

    def draw_seed(self) -> int:
        """A seed from this batch's generator, for a detector that draws its own masks (Whisper)."""
        return int(self._rng.integers(2**31))

    def _spans(self, n: int, extent: np.ndarray, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """n spans per clip inside [0, extent[b]): starts and widths, [B, n] each (width 0 = none)."""
        widths = self._rng.integers(0, width + 1, size=(len(extent), n))
        widths = np.minimum(widths, extent[:, None])
        starts = (self._rng.random((len(extent), n)) * (extent[:, None] - widths + 1)).astype(np.int64)
        return torch.from_numpy(starts), torch.from_numpy(widths)

    @staticmethod
    def _span_mask(starts: torch.Tensor, widths: torch.Tensor, size: int, device) -> torch.Tensor:
        position = torch.arange(size, device=device)[None, None]
        starts, widths = starts.to(device)[..., None], widths.to(device)[..., None]
        return ((position >= starts) & (position < starts + widths)).any(1)  # [B, size]

    def forward(self, feats: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        if not self.training or self.cfg.p <= 0:
            return feats
        batch, n_time, n_freq = feats.shape
        chosen = torch.from_numpy(self._rng.random(batch) < self.cfg.p)
        valid_frames = np.minimum(frames.cpu().numpy(), n_time).astype(np.int64)
        f_start, f_width = self._spans(self.cfg.freq_masks, np.full(batch, n_freq), self.cfg.freq_width)
        t_start, t_width = self._spans(self.cfg.time_masks, valid_frames, self.cfg.time_width)
        freq = self._span_mask(f_start, f_width, n_freq, feats.device)
        time = self._span_mask(t_start, t_width, n_time, feats.device)
        inside = torch.arange(n_time, device=feats.device)[None] < frames.to(feats.device)[:, None]
        mask = (time[:, :, None] | freq[:, None, :]) & (inside & chosen.to(feats.device)[:, None])[:, :, None]
        return feats.masked_fill(mask, 0.0)


# ---- the configured batch chain ------------------------------------------------------------------

class BatchAugmenter:
    """splice -> mixup -> noise on a training batch, each per the config (`augment.batch`).

    `spec_augment` is the feature-level SpecAugment module the detector applies inside its
    forward (None when off); it is reseeded here for every batch.
    """

    def __init__(self, batch_cfg, seed: int):
        known = (*BATCH_STEPS, "specaugment")
        unknown = set(batch_cfg) - set(known)
        if unknown:
            raise AugmentError(f"augment.batch: unknown step {sorted(unknown)[0]!r} (known: {', '.join(known)})")
        self.cfg, self.seed = batch_cfg, seed
        spec = batch_cfg.get("specaugment")
        self.spec_augment = SpecAugment(spec) if spec is not None and spec.p > 0 else None

    @property
    def names(self) -> list[str]:
        on = [name for name in BATCH_STEPS if name in self.cfg and self.cfg[name].p > 0]
        return on + (["specaugment"] if self.spec_augment is not None else [])

    def __call__(self, batch: dict, epoch: int, step: int) -> dict:
        rng = rng_for(self.seed, epoch, step, "batch")
        if self.spec_augment is not None:
            self.spec_augment.reseed(stable_seed(self.seed, epoch, step, "specaugment"))
        labels = batch["label"].cpu().numpy()
        if "splice" in self.cfg and self.cfg.splice.p > 0:
            relabelled = batch.get("relabelled", torch.zeros(len(labels), dtype=torch.bool)).cpu().numpy()
            batch = splice(batch, plan_splice(batch["lengths"].cpu().numpy(), labels, relabelled, self.cfg.splice, rng))
            labels = batch["label"].cpu().numpy()
        if "mixup" in self.cfg and self.cfg.mixup.p > 0:
            batch = mixup(batch, plan_mixup(labels, self.cfg.mixup, rng))
        if "noise" in self.cfg and self.cfg.noise.p > 0:
            batch = add_noise_at_snr(batch, plan_noise(len(labels), self.cfg.noise, rng))
        return batch

