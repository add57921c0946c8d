"""Augmentation: label bookkeeping, SNRs, reproducibility, device independence, configuration."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from antispoof.augment import AugmentError, BatchAugmenter, SpecAugment, WaveAugmenter
from antispoof.augment.batch import (FRAME, add_noise_at_snr, hash_normal, mixup, plan_mixup, plan_noise,
                                     plan_splice, splice)
from antispoof.augment.wave import WAVE_STEPS, crop_clip, Clip, stretch_labels
from antispoof.config import ConfigError, load_config
from antispoof.data.audio import read_audio
from antispoof.data.dataset import ClipDataset, collate
from antispoof.data.manifest import load_segments, load_split
from antispoof.data.sounds import effect_sounds, noise_beds
from antispoof.losses import P2SGradLoss, soft_cross_entropy
from antispoof.train.fold import experiment_config
from antispoof.train.module import DetectorModule

ROOTS = [Path(".deps/debian"), Path("/")]


def _snr_db(clean: np.ndarray, noisy: np.ndarray) -> float:
    return 10 * np.log10(np.mean(clean.astype(np.float64) ** 2) / np.mean((noisy - clean).astype(np.float64) ** 2))


def _wave_cfg(**on):
    """The `none` wave settings with the named steps switched on (p=1) and knobs overridden."""
    cfg = load_config("augment/none").wave
    for step, knobs in on.items():
        cfg[step].p = 1.0
        for key, value in knobs.items():
            cfg[step][key] = value
    return cfg


@pytest.fixture(scope="module")
def partial_clips(tiny):
    """Real partially spoofed clips with their 10 ms labels (both classes inside one clip)."""
    train = load_split(tiny, "train")
    segments = load_segments(tiny / "train_segments.npz", train)
    rows = train[train.kind == "partial"].head(4)
    return [(read_audio(r.audio), np.asarray(segments[r.utt_id])) for r in rows.itertuples()]


# ---- label bookkeeping -------------------------------------------------------------------------

def _frame_coded(n_frames: int, source: int) -> np.ndarray:
    """A wave whose every sample says which clip and which 10 ms frame it came from."""
    return np.repeat(source * 10_000 + np.arange(n_frames), FRAME).astype(np.float32)


def test_crop_keeps_every_frame_with_its_label():
    seg = np.array([1] * 30 + [0] * 25 + [1] * 45)
    clip = Clip(_frame_coded(100, 0), 1, seg)
    out = crop_clip(clip, 40 * FRAME, 33 * FRAME)
    origin = out.wave[::FRAME].astype(int)
    np.testing.assert_array_equal(out.seg, seg[origin])
    with pytest.raises(ValueError, match="multiple"):
        crop_clip(clip, 7, 100)


def test_wave_crop_step_follows_the_samples(partial_clips):
    crop = WaveAugmenter(_wave_cfg(crop={"min_s": 0.3}))
    for k, (wave, seg) in enumerate(partial_clips):
        coded = Clip(_frame_coded(len(seg), 0), 0, seg)
        out = crop(coded.wave, 0, seg, np.random.default_rng(k))
        assert len(out.seg) == -(-len(out.wave) // FRAME)
        np.testing.assert_array_equal(out.seg, seg[out.wave[::FRAME].astype(int)])


def test_stretch_labels_oracle():
    seg = np.array([1, 1, 0, 0, 1, 1, 1, 0])
    np.testing.assert_array_equal(stretch_labels(seg, 1.0, 8), seg)
    np.testing.assert_array_equal(stretch_labels(seg, 2.0, 4), [1, 0, 1, 0])  # min over each pair
    # rate 1.5: output frame j covers input frames [1.5 j, 1.5 (j + 1)) -> touched frames floor..ceil
    np.testing.assert_array_equal(stretch_labels(seg, 1.5, 5), [1, 0, 0, 1, 0])
    np.testing.assert_array_equal(stretch_labels(np.array([-1, -1, 1]), 1.0, 3), [-1, -1, 1])


def test_speed_stretches_the_labels_with_the_audio(partial_clips):
    speed = WaveAugmenter(_wave_cfg(speed={"min_rate": 1.25, "max_rate": 1.25, "relabel_spoof": False}))
    wave, seg = partial_clips[0]
    out = speed(wave, 0, seg, np.random.default_rng(0))
    assert abs(len(out.wave) - len(wave) / 1.25) < 0.01 * len(wave)
    assert len(out.seg) == -(-len(out.wave) // FRAME)
    # every spoof sample keeps its label at its new time (input frame i -> output frame i / 1.25) ...
    spoof_in = np.flatnonzero(seg == 0)
    assert (out.seg[(spoof_in / 1.25).astype(int)] == 0).all()
    # ... and a spoof run grows by at most a frame at each end (a frame that touches spoof is spoof)
    runs = np.count_nonzero(np.diff(np.r_[1, seg, 1] == 0) == 1)
    assert (out.seg == 0).sum() <= len(spoof_in) / 1.25 + 2 * runs
    assert (out.seg == 1).any() and (out.seg == 0).any()


def test_pitch_and_speed_turn_the_clip_to_spoof(partial_clips):
    wave, seg = partial_clips[1]
    bona = np.ones_like(seg)
    for step in ("pitch_shift", "speed"):
        out = WaveAugmenter(_wave_cfg(**{step: {}}))(wave, 1, bona, np.random.default_rng(1))
        assert out.label == 0 and out.relabelled and (out.seg == 0).all()
        assert len(out.seg) == -(-len(out.wave) // FRAME)


@pytest.mark.parametrize("step", [s for s in WAVE_STEPS if s not in ("background",)])
def test_every_wave_step_keeps_labels_consistent(partial_clips, tiny, step):
    train = load_split(tiny, "train")
    context = {"babble_clips": train.loc[train.label == "bonafide", "audio"].tolist()}
    augment = WaveAugmenter(_wave_cfg(**{step: {}}), context)
    assert augment.names == [step]
    wave, seg = partial_clips[2]
    out = augment(wave, 0, seg, np.random.default_rng(2))
    assert out.wave.dtype == np.float32 and np.isfinite(out.wave).all()
    assert len(out.seg) == -(-len(out.wave) // FRAME)
    if step not in ("crop", "speed", "pitch_shift"):  # length and labels untouched
        assert len(out.wave) == len(wave)
        np.testing.assert_array_equal(out.seg, seg)
        assert not np.allclose(out.wave, wave), f"{step} did nothing"


def test_splice_labels_follow_every_sample():
    lengths = np.array([95, 120, 60, 140]) * FRAME + np.array([37, 0, 80, 5])  # not all on the grid
    segs = [np.r_[np.ones(40), np.zeros(30), np.ones(80)][: -(-n // FRAME)] for n in lengths]
    segs[1][:] = 1
    segs[3][:] = 0
    batch = collate([{"utt_id": str(i), "wave": torch.from_numpy(_frame_coded(-(-n // FRAME), i)[:n]),
                      "label": int(segs[i].min()), "seg": torch.from_numpy(segs[i].astype(np.int64))}
                     for i, n in enumerate(lengths)])
    cfg = load_config("augment/splice").batch.splice
    cfg.p, cfg.max_host_s, cfg.max_total_s = 1.0, 1.3, 2.5
    plans = plan_splice(lengths, batch["label"].numpy(), np.zeros(4, bool), cfg, np.random.default_rng(5))
    assert plans and all(lengths[h] <= 1.3 * 16000 for h in plans)
    out = splice(batch, plans)
    for host in plans:
        n = int(out["lengths"][host])
        assert n <= 2.5 * 16000 and n % FRAME == 0
        code = out["wave"][host, :n:FRAME].long().numpy()
        source, frame = code // 10_000, code % 10_000
        expected = np.array([segs[s][f] for s, f in zip(source, frame)])
        np.testing.assert_array_equal(out["seg"][host, : out["seg_lengths"][host]].numpy(), expected)
        assert out["label"][host] == int(expected.min()), "spoof if any part is spoof"
        assert len(set(source)) > 1
    untouched = [i for i in range(4) if i not in plans]
    for i in untouched:
        assert torch.equal(out["wave"][i, : lengths[i]], batch["wave"][i, : lengths[i]])


def test_splice_skips_relabelled_and_long_hosts():
    lengths = np.array([3, 8, 2]) * 16000
    cfg = load_config("augment/finvolution").batch.splice
    cfg.p = 1.0
    plans = plan_splice(lengths, np.array([1, 1, 0]), np.array([True, False, False]), cfg, np.random.default_rng(0))
    assert set(plans) == {2}, "clip 0 was relabelled by pitch/speed, clip 1 is over 5 s"


def test_mixup_is_a_convex_combination_with_soft_labels():
    batch = collate([{"utt_id": str(i), "wave": torch.randn(n), "label": lab,
                      "seg": torch.full((-(-n // FRAME),), lab)} for i, (n, lab) in enumerate([(1600, 1), (2400, 0)])])
    out = mixup(batch, [(0, 1, 0.7)])
    torch.testing.assert_close(out["wave"][0], 0.7 * batch["wave"][0] + 0.3 * batch["wave"][1])
    assert out["label"][0].item() == pytest.approx(0.7) and out["label"][1].item() == 0
    seg = out["seg"][0]
    assert torch.allclose(seg[:10], torch.tensor(0.7)) and (seg[10:15] == 0).all(), "past clip 0's end: clip 1's label"
    assert out["lengths"][0] == 2400
    plans = plan_mixup(np.array([1, 0, 1, -1]), load_config("augment/mixup").batch.mixup, np.random.default_rng(0))
    assert all(i != j and 0 <= lam <= 1 and i != 3 for i, j, lam in plans)


def test_mixup_partners_contribute_their_original_clip():
    """A clip mixed earlier in the loop is still its original self as a later clip's partner."""
    sizes, labels = [1600, 2400, 800], [1, 0, 1]
    batch = collate([{"utt_id": str(i), "wave": torch.randn(n), "label": lab,
                      "seg": torch.full((-(-n // FRAME),), lab)} for i, (n, lab) in enumerate(zip(sizes, labels))])
    out = mixup(batch, [(0, 1, 0.5), (1, 0, 0.5), (2, 0, 0.25)])
    torch.testing.assert_close(out["wave"][1], 0.5 * batch["wave"][1] + 0.5 * batch["wave"][0])
    torch.testing.assert_close(out["wave"][2], 0.25 * batch["wave"][2] + 0.75 * batch["wave"][0])
    assert out["label"].tolist() == pytest.approx([0.5, 0.5, 1.0])
    assert out["lengths"].tolist() == [2400, 2400, 1600], "clip 2 ends where the original clip 0 ends"
    assert out["seg_lengths"].tolist() == [15, 15, 10]


# ---- SNRs ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("snr", [0.0, 12.0, 30.0])
def test_batch_noise_hits_the_snr(partial_clips, snr):
    waves = [torch.from_numpy(w) for w, _ in partial_clips[:3]]
    batch = collate([{"utt_id": str(i), "wave": w, "label": 1, "seg": torch.ones(-(-len(w) // FRAME))}
                     for i, w in enumerate(waves)])
    cfg = load_config("augment/noise").batch.noise
    cfg.p, cfg.min_snr_db, cfg.max_snr_db = 1.0, snr, snr
    plans = plan_noise(3, cfg, np.random.default_rng(0))
    assert [i for i, _, _ in plans] == [0, 1, 2]
    out = add_noise_at_snr(batch, plans)
    for i, w in enumerate(waves):
        n = len(w)
        assert abs(_snr_db(w.numpy(), out["wave"][i, :n].numpy()) - snr) < 0.5
        assert (out["wave"][i, n:] == 0).all(), "padding stays silent"


@pytest.mark.parametrize("step", ["noise", "background", "babble"])
def test_wave_noises_hit_the_snr(partial_clips, tiny, step):
    train = load_split(tiny, "train")
    context = {"noise_beds": noise_beds(ROOTS) + effect_sounds(ROOTS),
               "babble_clips": train.loc[train.label == "bonafide", "audio"].tolist()}
    if step == "background" and not context["noise_beds"]:
        pytest.fail("no noise beds: `make setup` extracts them")
    augment = WaveAugmenter(_wave_cfg(**{step: {"min_snr_db": 15.0, "max_snr_db": 15.0}}), context)
    for k, (wave, seg) in enumerate(partial_clips):
        out = augment(wave, 0, seg, np.random.default_rng(k))
        assert abs(_snr_db(wave, out.wave) - 15.0) < 0.5


# ---- reproducibility and devices --------------------------------------------------------------------

def _batch(partial_clips):
    items = [{"utt_id": str(i), "wave": torch.from_numpy(w), "label": int(s.min()),
              "seg": torch.from_numpy(s.astype(np.int64))} for i, (w, s) in enumerate(partial_clips)]
    return collate(items)


def test_same_seed_same_batch_and_steps_differ(partial_clips):
    cfg = load_config("augment/all").batch
    cfg.splice.max_host_s = 15.0
    augmenter = BatchAugmenter(cfg, seed=3)
    first, again = augmenter(_batch(partial_clips), 0, 7), augmenter(_batch(partial_clips), 0, 7)
    for key in ("wave", "seg", "label", "lengths"):
        assert torch.equal(first[key], again[key])
    other = augmenter(_batch(partial_clips), 0, 8)
    assert not (first["wave"].shape == other["wave"].shape and torch.equal(first["wave"], other["wave"]))


def test_hash_noise_is_normal_and_seeded():
    x = hash_normal([1, 2], 200_000, "cpu")
    assert abs(x[0].mean()) < 0.01 and abs(x[0].std() - 1) < 0.01
    assert abs(np.corrcoef(x[0], x[1])[0, 1]) < 0.01
    torch.testing.assert_close(hash_normal([1], 1000, "cpu")[0], x[0, :1000])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_gpu_and_cpu_give_the_same_batch(partial_clips):
    cfg = load_config("augment/all").batch
    cfg.splice.max_host_s, cfg.splice.p, cfg.mixup.p, cfg.noise.p = 15.0, 1.0, 1.0, 1.0
    cpu = BatchAugmenter(cfg, seed=1)(_batch(partial_clips), 2, 5)
    plain = _batch(partial_clips)
    assert cpu["wave"].shape[1] > plain["wave"].shape[1], "splice ran"
    assert cpu["label"].dtype.is_floating_point, "mixup ran"
    gpu_batch = {k: v.cuda() if torch.is_tensor(v) else v for k, v in _batch(partial_clips).items()}
    gpu = BatchAugmenter(cfg, seed=1)(gpu_batch, 2, 5)
    for key in ("wave", "seg", "label", "lengths"):
        torch.testing.assert_close(gpu[key].cpu(), cpu[key], atol=1e-5, rtol=1e-5)
    feats = torch.randn(4, 300, 60)
    frames = torch.tensor([300, 250, 120, 80])
    spec_cpu, spec_gpu = SpecAugment(cfg.specaugment), SpecAugment(cfg.specaugment)
    spec_cpu.reseed(9), spec_gpu.reseed(9)
    torch.testing.assert_close(spec_gpu(feats.cuda(), frames.cuda()).cpu(), spec_cpu(feats, frames))


def test_dataset_wave_chain_is_reproducible_per_seed_and_epoch(tiny):
    train = load_split(tiny, "train").head(6)
    segments = load_segments(tiny / "train_segments.npz", load_split(tiny, "train"))
    chain = WaveAugmenter(load_config("augment/finvolution").wave)
    a, b = ClipDataset(train, segments, seed=4, augment=chain), ClipDataset(train, segments, seed=4, augment=chain)
    for i in range(len(train)):
        assert torch.equal(a[i]["wave"], b[i]["wave"]) and torch.equal(a[i]["seg"], b[i]["seg"])
    b.set_epoch(1)
    assert any(not (a[i]["wave"].shape == b[i]["wave"].shape and torch.equal(a[i]["wave"], b[i]["wave"]))
               for i in range(len(train)))


# ---- SpecAugment ----------------------------------------------------------------------------------

def test_specaugment_masks_inside_valid_frames_only_in_training():
    spec = SpecAugment(load_config("augment/specaugment").batch.specaugment)
    feats, frames = torch.randn(3, 200, 60) + 5, torch.tensor([200, 120, 40])
    spec.reseed(0)
    masked = spec(feats, frames)
    zero = masked == 0
    assert zero.any()
    for b, n in enumerate(frames.tolist()):
        assert not zero[b, n:].any(), "no mask past the clip's frames"
        time_masked = zero[b].all(1)
        assert time_masked.sum() <= 2 * 20
    spec.reseed(0)
    assert torch.equal(spec(feats, frames), masked)
    spec.eval()
    assert torch.equal(spec(feats, frames), feats)


# ---- losses with soft labels --------------------------------------------------------------------------

def test_soft_targets_reduce_to_class_indices_and_mix_linearly():
    logits, hard = torch.randn(6, 2), torch.tensor([0, 1, -1, 1, 0, 0])
    torch.testing.assert_close(soft_cross_entropy(logits, hard), F.cross_entropy(logits, hard, ignore_index=-1))
    soft = torch.tensor([0.3])
    mixed = 0.7 * F.cross_entropy(logits[:1], torch.tensor([0])) + 0.3 * F.cross_entropy(logits[:1], torch.tensor([1]))
    torch.testing.assert_close(soft_cross_entropy(logits[:1], soft), mixed)
    assert soft_cross_entropy(logits, torch.full((6,), -1)) is None
    cos = torch.tensor([[0.2, -0.4]])
    torch.testing.assert_close(P2SGradLoss()(cos, torch.tensor([0.25])), torch.tensor((0.2 - 0.75) ** 2 + (-0.4 - 0.25) ** 2))


# ---- configuration --------------------------------------------------------------------------------------

def test_presets_and_none():
    fin = load_config("augment/finvolution")
    assert [fin.wave[s].p for s in ("crop", "echo", "noise", "resample", "pitch_shift", "speed")] == \
        [0.1, 0.1, 0.2, 0.2, 0.05, 0.05]
    assert (fin.batch.splice.p, fin.batch.splice.max_host_s, fin.batch.splice.max_total_s,
            fin.batch.splice.p_bonafide_donor) == (0.3, 5.0, 15.0, 0.8)
    cfg = experiment_config("whisper_tiny", None, ["augment=none"])
    assert cfg.augment.name == "none"
    assert not WaveAugmenter(cfg.augment.wave) and BatchAugmenter(cfg.augment.batch, 0).names == []
    edited = experiment_config("selcnn_segbw", None, ["augment=finvolution", "augment.batch.mixup.p=0.5"])
    assert edited.augment.batch.mixup.p == 0.5 and edited.augment.wave.crop.p == 0.1
    with pytest.raises(ValueError, match="unknown preset"):
        experiment_config("selcnn_segbw", None, ["augment=loud"])


def test_nothing_is_silently_skipped():
    with pytest.raises(AugmentError, match="background"):
        WaveAugmenter(_wave_cfg(background={}), {"noise_beds": []})
    with pytest.raises(AugmentError, match="babble"):
        WaveAugmenter(_wave_cfg(babble={}), {})
    with pytest.raises(AugmentError, match="codec"):
        WaveAugmenter(_wave_cfg(codec={"codecs": ["amr"]}))
    bad = load_config("augment/none").wave
    bad["wobble"] = {"p": 1.0}
    with pytest.raises(AugmentError, match="wobble"):
        WaveAugmenter(bad)
    bad_batch = load_config("augment/none").batch
    bad_batch["mixupp"] = {"p": 1.0}
    with pytest.raises(AugmentError, match="mixupp"):
        BatchAugmenter(bad_batch, 0)
    with pytest.raises(ConfigError, match="did you mean augment.batch.mixup.p"):
        experiment_config("selcnn_segbw", None, ["augment=all", "augment.batch.mixupp.p=0.5"])


def test_module_augments_training_batches_only(tiny, partial_clips):
    cfg = experiment_config("selcnn_segbw", str(tiny), ["augment=all", "augment.batch.mixup.p=1.0"])
    module = DetectorModule(cfg)
    assert module.model.spec_augment is module.batch_augment.spec_augment is not None

    class Stage:  # what the hook reads of the Trainer
        training, current_epoch, global_step = True, 0, 0
    module._trainer = Stage()
    out = module.on_after_batch_transfer(_batch(partial_clips), 0)
    assert out["label"].dtype.is_floating_point, "mixup made soft labels"
    _, losses = module._step(out)
    assert torch.isfinite(losses["total"])
    Stage.training = False
    assert torch.equal(module.on_after_batch_transfer(_batch(partial_clips), 0)["wave"], _batch(partial_clips)["wave"])
