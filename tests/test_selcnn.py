"""SELCNN against Table 1, the LFCC front end, and the SELCNN-MTL score rules of Table 2.

Expected shapes and parameter counts are written out from the paper's tables, not read from
the model; scores are checked against their definitions on small random models.
"""
from __future__ import annotations

import math

import pytest
import torch

from antispoof.features import LFCC
from antispoof.models import SELCNN, SELCNNMTL, SELCNNMTLConfig, segment_targets
from antispoof.models.selcnn import SEBlock
from antispoof.models.selcnn_mtl import masked_min

SR = 16000

# Table 1: (layer, output channels, divisor of T and F). SE blocks are named after the conv
# they precede.
TABLE_1 = [
    ("conv_0", 64, 1), ("mfm_1", 32, 1), ("maxpool_2", 32, 2),
    ("se_3", 32, 2), ("conv_3", 64, 2), ("mfm_4", 32, 2), ("bn_5", 32, 2),
    ("se_6", 32, 2), ("conv_6", 96, 2), ("mfm_7", 48, 2), ("maxpool_8", 48, 4), ("bn_9", 48, 4),
    ("se_10", 48, 4), ("conv_10", 96, 4), ("mfm_11", 48, 4), ("bn_12", 48, 4),
    ("se_13", 48, 4), ("conv_13", 128, 4), ("mfm_14", 64, 4), ("maxpool_15", 64, 8),
    ("se_16", 64, 8), ("conv_16", 128, 8), ("mfm_17", 64, 8), ("bn_18", 64, 8),
    ("se_19", 64, 8), ("conv_19", 64, 8), ("mfm_20", 32, 8), ("bn_21", 32, 8),
    ("se_22", 32, 8), ("conv_22", 64, 8), ("mfm_23", 32, 8), ("bn_24", 32, 8),
    ("se_25", 32, 8), ("conv_25", 64, 8), ("mfm_26", 32, 8), ("maxpool_27", 32, 16),
    ("dropout_28", 32, 16),
]
# Table 1 filters: conv -> (in channels, out channels, kernel, padding)
CONVS = {"conv_0": (1, 64, 5, 2), "conv_3": (32, 64, 1, 0), "conv_6": (32, 96, 3, 1),
         "conv_10": (48, 96, 1, 0), "conv_13": (48, 128, 3, 1), "conv_16": (64, 128, 1, 0),
         "conv_19": (64, 64, 3, 1), "conv_22": (32, 64, 1, 0), "conv_25": (32, 64, 3, 1)}
SE_CHANNELS = [32, 32, 48, 48, 64, 64, 32, 32]  # inputs of conv_3 ... conv_25
BN_CHANNELS = [32, 48, 48, 64, 32, 32]  # BatchNorm_5, 9, 12, 18, 21, 24


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def clips(lengths, seed=0):
    """Random noise clips zero-padded into one batch, with their lengths."""
    gen = torch.Generator().manual_seed(seed)
    wave = torch.zeros(len(lengths), max(lengths))
    for i, n in enumerate(lengths):
        wave[i, :n] = 0.1 * torch.randn(n, generator=gen)
    return wave, torch.tensor(lengths)


def harmonic(seconds=1.0, f0=180.0, amplitude=0.3):
    t = torch.arange(int(seconds * SR)) / SR
    return amplitude * sum(torch.sin(2 * math.pi * k * f0 * t) / k for k in range(1, 6))


def model(variant, seed=0, **kwargs):
    torch.manual_seed(seed)
    return SELCNNMTL(SELCNNMTLConfig(variant=variant, **kwargs)).eval()


# ---- SELCNN: Table 1 ---------------------------------------------------------------------------

@pytest.mark.parametrize("use_se", [True, False])
def test_every_layer_has_table_1_output_size(use_se):
    cnn = SELCNN(60, reduction=2, use_se=use_se).eval()
    seen = []
    for name, layer in cnn.layers.named_children():
        layer.register_forward_hook(lambda mod, inp, out, name=name: seen.append((name, tuple(out.shape))))
    with torch.no_grad():
        out = cnn(torch.randn(2, 1, 200, 60))
    expected = [(name, (2, c, 200 // k, 60 // k)) for name, c, k in TABLE_1 if use_se or not name.startswith("se_")]
    assert seen == expected
    assert out.shape == (2, 32, 200 // 16, 60 // 16) == (2, 32, 12, 3)
    assert SELCNN.output_dim(60) == 96


def test_filters_and_blocks_follow_table_1():
    cnn = SELCNN(60, reduction=2)
    for name, (c_in, c_out, kernel, pad) in CONVS.items():
        conv = cnn.layers[name]
        assert (conv.in_channels, conv.out_channels) == (c_in, c_out)
        assert conv.kernel_size == (kernel, kernel) and conv.padding == (pad, pad) and conv.stride == (1, 1)
    assert sum(isinstance(m, SEBlock) for m in cnn.modules()) == 8
    assert sum(isinstance(m, SEBlock) for m in SELCNN(60, use_se=False).modules()) == 0
    assert cnn.layers["dropout_28"].p == 0.7


def test_parameter_counts_from_table_1():
    def conv(c_in, c_out, kernel):
        return c_in * c_out * kernel * kernel + c_out

    def se(c, r):  # FC(C -> C/r) and FC(C/r -> C), weights and biases
        return c * (c // r) + c // r + (c // r) * c + c

    convs = sum(conv(c_in, c_out, k) for c_in, c_out, k, _ in CONVS.values())
    bn = sum(2 * c for c in BN_CHANNELS)  # scale and shift
    se_total = sum(se(c, 2) for c in SE_CHANNELS)
    assert (convs, bn, se_total) == (157504, 512, 17424)
    assert n_params(SELCNN(60, reduction=2)) == convs + bn + se_total == 175440
    assert n_params(SELCNN(60, use_se=False)) == convs + bn == 158016


def test_masked_selcnn_matches_clips_alone():
    cnn = SELCNN(60).eval()
    x = torch.randn(2, 1, 75, 60)
    x[1, :, 41:] = 0  # clip 1 has 41 frames, padded with zeros
    with torch.no_grad():
        batch = cnn(x, torch.tensor([75, 41]))
        alone = cnn(x[1:, :, :41])
    assert torch.allclose(batch[1, :, : 41 // 16], alone[0], atol=1e-5)


# ---- LFCC ------------------------------------------------------------------------------------

def test_lfcc_shape_and_frame_lengths():
    lengths = [SR + 37, 9000]
    wave = torch.zeros(2, lengths[0])
    wave[0] = torch.nn.functional.pad(harmonic(), (0, 37))
    wave[1, :9000] = harmonic(9000 / SR, f0=120)
    feats, frames = LFCC()(wave, torch.tensor(lengths))
    assert feats.shape == (2, lengths[0] // 160 + 1, 60) and feats.dtype == torch.float32
    assert frames.tolist() == [n // 160 + 1 for n in lengths]
    assert torch.isfinite(feats).all() and (feats[1, frames[1]:] == 0).all()


def test_lfcc_energy_tracks_loudness():
    lfcc = LFCC()
    quiet, _ = lfcc(harmonic(amplitude=0.1)[None])
    loud, _ = lfcc(harmonic(amplitude=0.2)[None])
    assert torch.allclose(loud[..., 0] - quiet[..., 0], torch.full_like(loud[..., 0], math.log(4)), atol=1e-4)


def test_lfcc_deltas_of_constant_signal_are_zero():
    flat, _ = LFCC(pre_emphasis=0.0)(torch.full((1, 8000), 0.5))
    assert flat[0, :, 20:].abs().max() < 1e-4
    # With pre-emphasis only sample 0 differs (frames 0-1), so from frame 6 on every delta is
    # 0, including the last frames of a clip padded in a batch: no padding leaks in.
    wave = torch.zeros(2, 12000)
    wave[0], wave[1, :8000] = 0.3 * torch.randn(12000), 0.5
    feats, frames = LFCC()(wave, torch.tensor([12000, 8000]))
    assert feats[1, 6: frames[1], 20:].abs().max() < 1e-4


def test_lfcc_batch_equals_clips_alone_and_runs_under_autocast():
    lfcc = LFCC()
    wave, lengths = clips([12000, 7001, 300])
    feats, frames = lfcc(wave, lengths)
    for b, n in enumerate(lengths.tolist()):
        alone, _ = lfcc(wave[b: b + 1, :n])
        assert torch.allclose(feats[b, : frames[b]], alone[0], atol=1e-4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cast, _ = lfcc(wave, lengths)
    assert cast.dtype == torch.float32 and torch.allclose(cast, feats, atol=1e-5)


# ---- SELCNN-MTL scores (Table 2) --------------------------------------------------------------

LENGTHS = [SR, 9000, 2000]  # 6, 3 and 1 segments (the last clip is shorter than one segment)


def test_variant_parameter_counts():
    single = 175440 + 2 * 2 * (4 * 48 * (96 + 48) + 2 * 4 * 48) + (96 * 64 + 64 + 2 * 64)
    counts = {v: model(v).n_parameters() for v in ("utterance", "segment", "uttu", "segu", "mulbs", "uttbw", "segbw")}
    assert counts == {"utterance": single, "segment": single, "uttu": single, "segu": single,
                      "mulbs": single + 6336, "uttbw": single + 6336, "segbw": single + 6336}
    assert single == 293904


def test_segment_variant_utterance_score_is_min_of_valid_segments():
    net = model("segment")
    with torch.no_grad():
        out = net(*clips(LENGTHS))
    assert out["seg_lengths"].tolist() == [6, 3, 1] and out["utt_cos"] is None
    for b, n in enumerate(out["seg_lengths"].tolist()):
        assert out["utt_score"][b] == out["seg_cos"][b, :n, 0].min() == out["seg_scores"][b, :n].min()
        assert out["seg_scores"][b, n:].isnan().all()
    scores = torch.tensor([[0.5, 0.2, -0.9], [0.1, 0.4, 0.3]])
    assert masked_min(scores, torch.tensor([[True, True, False], [True, True, True]])).tolist() == pytest.approx([0.2, 0.1])


def test_utterance_variant_segment_scores_average_to_utterance_score():
    net = model("utterance")
    with torch.no_grad():
        out = net(*clips(LENGTHS))
    assert out["seg_cos"] is None
    for b, n in enumerate(out["seg_lengths"].tolist()):
        assert out["seg_scores"][b, :n].mean() == pytest.approx(float(out["utt_score"][b]), abs=1e-5)
        assert out["utt_score"][b] == out["utt_cos"][b, 0]


def test_segu_utterance_cosine_is_the_lowest_segment_row():
    net = model("segu")
    with torch.no_grad():
        out = net(*clips(LENGTHS))
    for b, n in enumerate(out["seg_lengths"].tolist()):
        row = out["seg_cos"][b, :n, 0].argmin()
        assert torch.equal(out["utt_cos"][b], out["seg_cos"][b, row])
        assert out["utt_score"][b] == out["seg_scores"][b, :n].min()


def test_uttu_uses_one_head_for_both_levels():
    net = model("uttu")
    assert not hasattr(net, "seg_head")
    with torch.no_grad():
        h, _ = net.embed(*clips(LENGTHS[:1]))
        out = net(*clips(LENGTHS[:1]))
    assert torch.allclose(out["seg_cos"], net.utt_head(h)[0])
    assert torch.allclose(out["utt_cos"], net.utt_head(h.mean(1))[0], atol=1e-6)


@pytest.mark.parametrize("variant", ["mulbs", "utterance", "segu"])
def test_batch_gives_the_same_outputs_as_clips_alone(variant):
    net = model(variant)
    wave, lengths = clips(LENGTHS)
    with torch.no_grad():
        out = net(wave, lengths)
        for b, n in enumerate(lengths.tolist()):
            alone = net(wave[b: b + 1, :n])
            m = int(out["seg_lengths"][b])
            assert int(alone["seg_lengths"][0]) == m
            assert torch.allclose(out["utt_score"][b], alone["utt_score"][0], atol=1e-4)
            assert torch.allclose(out["seg_scores"][b, :m], alone["seg_scores"][0], atol=1e-4)
            if out["seg_cos"] is not None:
                assert torch.allclose(out["seg_cos"][b, :m], alone["seg_cos"][0], atol=1e-4)


# ---- warm-up ---------------------------------------------------------------------------------

@pytest.mark.parametrize("source, target, branch, fresh", [("segment", "segbw", "seg_head", "utt_head"),
                                                          ("utterance", "uttbw", "utt_head", "seg_head")])
def test_load_warmup_copies_trunk_and_branch(source, target, branch, fresh):
    warm = model(source, seed=1)
    for bn in (m for m in warm.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        bn.running_mean.uniform_(-1, 1)  # trained statistics must come along too
    net = model(target, seed=2)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    loaded, new = net.load_warmup(warm.state_dict())
    state = net.state_dict()
    assert set(loaded) == set(warm.state_dict())
    for key, value in warm.state_dict().items():
        assert torch.equal(state[key], value), key
    assert any(k.startswith("cnn.") for k in loaded) and any(k.startswith("lstm.") for k in loaded)
    assert any(k.startswith(f"{branch}.") for k in loaded)
    assert new and all(k.startswith(f"{fresh}.") for k in new)
    for key in new:
        assert torch.equal(state[key], before[key])


def test_load_warmup_rejects_unmatched_names():
    with pytest.raises(ValueError):
        model("segbw").load_warmup({f"model.{k}": v for k, v in model("segment").state_dict().items()})


# ---- segment targets --------------------------------------------------------------------------

def test_segment_targets_min_pool_16_frames():
    labels = torch.tensor([[1] * 16 + [1] * 15 + [0]])
    assert segment_targets(labels, torch.tensor([2])).tolist() == [[1, 0]]


def test_segment_targets_padding_and_truncation():
    labels = torch.full((3, 40), -1)
    labels[0, :40] = 1
    labels[0, 20] = 0  # spoof frame in the second segment
    labels[1, :20] = 1  # second window: 4 valid bona fide frames + padding -> bona fide
    labels[2, :10] = 0
    out = segment_targets(labels, torch.tensor([2, 2, 1]))
    # clip 0: its frames 32..39 lie past 2 segments and are dropped
    assert out.tolist() == [[1, 0], [1, 1], [0, -1]]
    # more segments than labels: the missing ones are -1
    assert segment_targets(labels[:1, :20], torch.tensor([3])).tolist() == [[1, 1, -1]]
