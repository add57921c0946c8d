"""OC-softmax and the auxiliary tasks of Mo & Wang (ICASSP 2022) on this project's detectors.

Losses are checked against their formulas written out here; the tasks' isolation properties
(spoof rows ignored, steps that move only their own weights, weight 0 = the vanilla model) on
small random models and on fold runs over the tiny SpoofBench.
"""
from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from torch.nn import functional as F

from antispoof.config import load_config
from antispoof.losses import OCSoftmaxLoss
from antispoof.models.aux_tasks import AuxConfig, AuxTasks, bin_means
from antispoof.models.common import CentreHead, Features
from antispoof.runs import read_table
from antispoof.schema import ManifestError
from antispoof.train.data import FoldData
from antispoof.train.fold import experiment_config, train_fold
from antispoof.train.module import DetectorModule

from batches import detector_batch

FAST = ["trainer.max_epochs=1", "data.folds=3", "data.num_workers=0", "data.batch_size=8",
        "data.crop_s=2.0", "trainer.progress_every=0", "trainer.deterministic=true"]
# two training batches of 1 s crops, 5 folds (a smaller validation part): what the checks need, fast
SHORT = ["trainer.limit_train_batches=2", "data.crop_s=1.0", "trainer.log_every_n_steps=1", "data.folds=5"]
ALL_OFF = ["aux.reconstruction.weight=0", "aux.conversion.weight=0", "aux.speaker.weight=0"]


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def _cfg(tiny, tmp_path, model, extra=()):
    return experiment_config(model, str(tiny), [*FAST, f"output_root={tmp_path}", *extra])


# ---- OC-softmax ---------------------------------------------------------------------------------

def test_oc_softmax_value_by_hand():
    loss = OCSoftmaxLoss()  # r_real 0.9, r_fake 0.2, alpha 20
    cos = torch.tensor([[0.5], [0.1], [0.95]])
    # bona fide: softplus(20 (0.9 - 0.5)) = softplus(8); spoof: softplus(20 (0.1 - 0.2)) = softplus(-2)
    expected = (softplus(8.0) + softplus(-2.0) + softplus(20 * (0.95 - 0.2))) / 3
    assert float(loss(cos, torch.tensor([0, 1, 1]))) == pytest.approx(expected, rel=1e-6)
    other = OCSoftmaxLoss(r_real=0.5, r_fake=-0.3, alpha=10)
    assert float(other(cos[:1], torch.tensor([0]))) == pytest.approx(softplus(10 * (0.5 - 0.5)))
    # a soft (mixup) target weighs the two terms
    assert float(loss(cos[:1], torch.tensor([0.25]))) == pytest.approx(0.75 * softplus(8.0) + 0.25 * softplus(6.0))
    with pytest.raises(ValueError, match="r_fake < r_real"):
        OCSoftmaxLoss(r_real=0.2, r_fake=0.5)


def test_oc_softmax_gradient_is_its_formula():
    torch.manual_seed(0)
    loss = OCSoftmaxLoss()
    cos = (torch.rand(6, 1) * 2 - 1).requires_grad_()
    targets = torch.tensor([0, 1, 1, 0, 1, -1])
    loss(cos, targets).backward()
    s = cos.detach()[:, 0]
    # d/ds softplus(a (r - s)) = -a sigmoid(a (r - s)); d/ds softplus(a (s - r)) = a sigmoid(a (s - r)); mean over 5
    expected = torch.where(targets == 0, -20 * torch.sigmoid(20 * (0.9 - s)), 20 * torch.sigmoid(20 * (s - 0.2))) / 5
    expected[targets == -1] = 0
    torch.testing.assert_close(cos.grad[:, 0], expected)
    # through the head: score = cos(fc(x), centre), the gradient to x, fc and the centre by finite differences
    head = CentreHead(5, 4).double()
    x = torch.randn(6, 5, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, c: OCSoftmaxLoss(alpha=5.0)(_centre_cos(head, x, c), targets),
                                    (x, head.class_vectors.detach().clone().requires_grad_()))


def _centre_cos(head, x, centre):
    projected = head.fc(x)
    return F.cosine_similarity(projected, centre, dim=-1)[:, None]


def test_oc_softmax_segments_are_weighted_per_utterance_and_padding_ignored():
    torch.manual_seed(0)
    loss = OCSoftmaxLoss()
    cos = torch.rand(2, 4, 1) * 2 - 1
    targets = torch.tensor([[0, -1, -1, -1], [1, 0, 1, -1]])

    def term(s, t):
        return softplus(20 * (0.9 - s)) if t == 0 else softplus(20 * (s - 0.2))

    per_utt = [np.mean([term(float(cos[j, m, 0]), int(targets[j, m])) for m in range(4) if targets[j, m] >= 0])
               for j in range(2)]
    assert float(loss(cos, targets)) == pytest.approx(np.mean(per_utt), rel=1e-5)
    padded = cos.clone().requires_grad_()
    empty = loss(padded, torch.full((2, 4), -1))
    assert float(empty.detach()) == 0.0 and empty.requires_grad


def test_a_centre_head_learns_higher_scores_for_bona_fide():
    """Adam on the projection, SGD on the centre (the reference's split): bona fide ends near the
    centre (cos >= r_real), spoof away from it (cos <= r_fake) on two separable clouds."""
    torch.manual_seed(0)
    x = torch.cat([torch.randn(32, 6) + 2, torch.randn(32, 6) - 2])
    targets = torch.cat([torch.zeros(32), torch.ones(32)]).long()
    head, loss_fn = CentreHead(6, 4), OCSoftmaxLoss()
    adam = torch.optim.Adam(head.fc.parameters(), lr=1e-2)
    sgd = torch.optim.SGD([head.class_vectors], lr=1e-2)
    for _ in range(200):
        loss = loss_fn(head(x)[0], targets)
        adam.zero_grad(), sgd.zero_grad()
        loss.backward()
        adam.step(), sgd.step()
    with torch.no_grad():
        score = head(x)[0][:, 0]
    assert score[:32].min() > 0.8 and score[32:].max() < 0.3


def test_the_centre_heads_score_is_the_cosine_to_the_centre():
    from antispoof.models.frozen_heads import FrozenHeadConfig, MHFAHead
    from antispoof.models.selcnn_mtl import SELCNNMTL, SELCNNMTLConfig

    torch.manual_seed(0)
    net = SELCNNMTL(SELCNNMTLConfig(variant="mulbs", loss="ocsoftmax")).eval()
    wave = 0.1 * torch.randn(2, 16000)
    with torch.no_grad():
        out = net(wave)
        projected = net.utt_head.fc(out["utt_embedding"])
    torch.testing.assert_close(out["utt_score"], F.cosine_similarity(projected, net.utt_head.class_vectors, dim=-1))
    assert out["utt_cos"].shape == (2, 1) and out["seg_cos"].shape[-1] == 1
    head = MHFAHead(FrozenHeadConfig(n_states=3, dim=16, compression=8, heads=2, embedding=8, loss="ocsoftmax",
                                     oc_dim=6)).eval()
    with torch.no_grad():
        out = head(torch.randn(2, 30, 3, 16))
        projected = head.utt_head.fc(out["utt_embedding"])
    torch.testing.assert_close(out["utt_score"], F.cosine_similarity(projected, head.utt_head.class_vectors, dim=-1))
    assert (out["seg_scores"].abs() <= 1 + 1e-6).all()


# ---- the tasks' losses --------------------------------------------------------------------------

def test_bin_means_by_hand():
    values = torch.arange(12.0).view(2, 6, 1)  # clip 0: 4 frames, clip 1: 1 frame
    means, filled = bin_means(values, torch.tensor([4, 1]), bins=2)
    assert means[0, :, 0].tolist() == [0.5, 2.5]        # frames (0, 1), (2, 3)
    assert means[1, 0, 0].item() == 6.0 and filled.tolist() == [[True, True], [True, False]]


def _aux(embedding_dim=8, feature_dim=5, **weights):
    options = {name: {"weight": w} for name, w in weights.items()}
    if "speaker" in options:
        options["speaker"]["n_speakers"] = 3
    torch.manual_seed(0)
    return AuxTasks(AuxConfig.from_options(options), embedding_dim, feature_dim)


def test_reconstruction_ignores_spoof_rows_and_scales_as_the_reference():
    aux = _aux(reconstruction=0.04)
    torch.manual_seed(1)
    embedding, values = torch.randn(4, 8), torch.randn(4, 20, 5)
    frames = torch.tensor([20, 12, 20, 7])
    targets = torch.tensor([0, 1, 0, 1])  # rows 1 and 3 spoof
    loss = aux.reconstruction_loss(embedding, Features(values, frames), targets).detach()
    # by hand: MSE over the bona fide rows' stretch means, times batch size / bona fide count
    bona = targets == 0
    target, _ = bin_means(values[bona], frames[bona], 16)
    mse = (aux.decoder(embedding[bona]) - target).square().mean().detach()
    assert float(loss) == pytest.approx(float(mse) * 4 / 2, rel=1e-5)
    changed_embedding, changed_values = embedding.clone(), values.clone()
    changed_embedding[[1, 3]] += 5.0
    changed_values[[1, 3]] *= -3.0
    again = aux.reconstruction_loss(changed_embedding, Features(changed_values, frames), targets)
    assert float(again) == float(loss)
    changed_values[0] += 1.0
    assert float(aux.reconstruction_loss(embedding, Features(changed_values, frames), targets)) != float(loss)
    assert aux.reconstruction_loss(embedding, Features(values, frames), torch.ones(4, dtype=torch.long)) is None


def test_speaker_classification_ignores_spoof_rows():
    aux = _aux(speaker=5e-5)
    torch.manual_seed(1)
    embedding = torch.randn(5, 8)
    targets = torch.tensor([0, 1, 0, 1, 0])
    speakers = torch.tensor([0, 1, 2, 2, -1])  # the last bona fide clip has no known speaker
    loss = aux.speaker_loss(embedding, speakers, targets)
    expected = F.cross_entropy(aux.speaker_head(embedding[[0, 2]]), speakers[[0, 2]])
    assert float(loss) == pytest.approx(float(expected), rel=1e-6)
    changed, other_speakers = embedding.clone(), speakers.clone()
    changed[[1, 3]] = torch.randn(2, 8)
    other_speakers[[1, 3]] = torch.tensor([0, 1])
    assert float(aux.speaker_loss(changed, other_speakers, targets)) == float(loss)
    assert aux.speaker_loss(embedding, speakers, torch.ones(5, dtype=torch.long)) is None


def test_converter_starts_as_the_identity_and_keeps_padding_zero():
    aux = _aux(conversion=3e-4)
    values = torch.randn(3, 10, 5)
    frames = torch.tensor([10, 6, 3])
    values = values * (torch.arange(10)[None, :, None] < frames[:, None, None])
    converted = aux.convert(Features(values, frames))
    torch.testing.assert_close(converted.values, values)
    with torch.no_grad():
        aux.converter.out.bias.fill_(1.0)
    moved = aux.convert(Features(values, frames)).values
    assert (moved[1, 6:] == 0).all() and (moved[1, :6] != values[1, :6]).all()


def test_features_of_chunked_clips_select_and_join():
    values = torch.arange(2 * 3 * 4.0).view(3, 4, 2)  # rows: clip 0 (2 chunks), clip 1
    f = Features(values, torch.tensor([4, 2, 3]), owner=torch.tensor([0, 0, 1]), n_clips=2)
    joined, frames = f.clips()
    assert frames.tolist() == [6, 3] and torch.equal(joined[0, 4:6], values[1, :2])
    picked = f.select(torch.tensor([False, True]))
    assert picked.n_clips == 1 and picked.owner.tolist() == [0] and torch.equal(picked.values, values[2:])


def test_aux_config_refuses_unknown_knobs():
    with pytest.raises(ValueError, match="unknown option 'wieght'"):
        AuxConfig.from_options({"speaker": {"wieght": 1}})
    with pytest.raises(ValueError, match="unknown task"):
        AuxConfig.from_options({"recon": {}})
    assert AuxConfig.from_options(None).active == []


# ---- alternating steps --------------------------------------------------------------------------

ALL_TASKS = ["aux.reconstruction.weight=0.04", "aux.conversion.weight=3e-4", "aux.speaker.weight=5e-5",
             "aux.speaker.n_speakers=3"]
CONFIGS = {  # model config and overrides of a small detector of each kind
    "selcnn": ("selcnn_oc_all", ["aux.speaker.n_speakers=3"]),
    # MHFA on 3 cached states of 16 dims
    "mhfa": ("whisper_base_mhfa_oc_all", ["+model.n_states=3", "+model.dim=16", "model.compression=8",
                                          "model.heads=2", "model.embedding=8", "aux.speaker.n_speakers=3"]),
    # Whisper tiny.en fine-tuned, cut into 0.5 s chunks: a clip spans several rows of features
    "whisper": ("whisper_tiny", ["augment=none", "model.max_seconds=0.5", "model.loss=ocsoftmax", *ALL_TASKS]),
}



def _module_and_batch(family: str):
    """A DetectorModule with every task on and a batch for it."""
    model, overrides = CONFIGS[family]
    torch.manual_seed(0)
    return DetectorModule(load_config(f"model/{model}", overrides)), detector_batch(family)


def _snapshot(module):
    groups = {"detector": dict(module.model.named_parameters()), "buffers": dict(module.model.named_buffers())}
    for name in ("decoder", "converter", "speaker_head"):
        groups[name] = dict(getattr(module.aux, name).named_parameters())
    return {g: {k: v.detach().clone() for k, v in params.items()} for g, params in groups.items()}


def _same(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("family", ["selcnn", "mhfa", "whisper"])
def test_each_step_moves_only_its_own_weights(family):
    module, batch = _module_and_batch(family)
    with torch.no_grad():
        out = module.model.eval()(batch[module.model.input_key], batch["lengths"])
    assert out["utt_score"].abs().max() <= 1 and out["utt_embedding"].shape == (4, module.model.embedding_dim)
    assert not module.automatic_optimization
    assert module.optimiser_names == ["detector", "centre", "adversary", "speaker"]
    optimisers, schedulers = module.configure_optimizers()
    assert isinstance(optimisers[1], torch.optim.SGD) and optimisers[1].param_groups[0]["lr"] == module.cfg.optim.lr
    assert len(schedulers) == 2, "the detector's and the centre's rates are halved; the others are constant"
    centres = {id(p) for p in module.centres}
    assert centres == {id(p) for p in optimisers[1].param_groups[0]["params"]}
    assert not centres & {id(p) for g in optimisers[0].param_groups for p in g["params"]}
    module.optimizers = lambda: optimisers
    module.manual_backward = lambda loss: loss.backward()
    clipped = []  # Lightning's clip_gradients needs a Trainer: record what it is asked to clip
    module.clip_gradients = lambda optimiser, **how: clipped.append((optimiser, how))
    snapshots = []
    detector_phase, adversary_phase = module._detector_phase, module._adversary_phase

    def detector(*args):
        snapshots.append(_snapshot(module))
        out = detector_phase(*args)
        snapshots.append(_snapshot(module))
        return out

    def adversary(*args):
        adversary_phase(*args)
        snapshots.append(_snapshot(module))

    module._detector_phase, module._adversary_phase = detector, adversary
    module.train()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # self.log without a Trainer
        module.training_step(batch, 0)
    start, between, end = snapshots
    assert _same(start["converter"], between["converter"]), "the detector's step moved the adversary"
    assert not _same(start["detector"], between["detector"])
    assert not _same(start["decoder"], between["decoder"]) and not _same(start["speaker_head"], between["speaker_head"])
    for group in ("detector", "buffers", "decoder", "speaker_head"):
        assert _same(between[group], end[group]), f"the adversary's step moved the detector's {group}"
    assert not _same(between["converter"], end["converter"])
    assert all(p.grad is None for p in module.parameters()), "no gradient is left for the next step"
    assert module._batches == 1
    if module.cfg.trainer.gradient_clip_val:  # whisper_tiny clips at 1.0: the detector's optimiser, by norm
        assert clipped == [(optimisers[0], {"gradient_clip_val": 1.0, "gradient_clip_algorithm": "norm"})]


def test_one_optimiser_keeps_lightnings_automatic_path():
    plain = DetectorModule(load_config("model/selcnn_mulbs"))
    assert plain.automatic_optimization and plain.aux is None and plain.optimiser_names == ["detector"]
    module, batch = DetectorModule(load_config("model/selcnn_mulbs", ["aux.reconstruction.weight=0.04"])), detector_batch("selcnn")
    assert module.automatic_optimization, "P2SGrad + S1: the decoder shares the detector's Adam"
    optimiser = module.configure_optimizers()["optimizer"]
    held = {id(p) for g in optimiser.param_groups for p in g["params"]}
    assert held == {id(p) for p in module.parameters()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # self.log without a Trainer
        loss = module.training_step(batch, 0)
        losses, _ = module._training_losses(batch)
    assert losses["reconstruction"] is not None and loss.requires_grad


# ---- fold runs on the tiny set --------------------------------------------------------------------

def test_every_aux_weight_at_zero_trains_exactly_the_vanilla_model(tiny, tmp_path):
    vanilla = train_fold(_cfg(tiny, tmp_path, "selcnn_oc", SHORT), 0)
    zero = train_fold(_cfg(tiny, tmp_path, "selcnn_oc_all", [*SHORT, *ALL_OFF, "experiment=selcnn_oc_all_zero"]), 0)
    for part in ("oof", "test"):
        a, b = read_table(vanilla / f"{part}.parquet"), read_table(zero / f"{part}.parquet")
        np.testing.assert_array_equal(a.score.to_numpy(), b.score.to_numpy())
        np.testing.assert_array_equal(np.concatenate(a.seg_scores.to_list()), np.concatenate(b.seg_scores.to_list()))
    # every task on: the same fold contract, other scores, each task's loss logged
    full = train_fold(_cfg(tiny, tmp_path, "selcnn_oc_all", SHORT), 0)
    metrics = json.loads((full / "metrics.json").read_text())
    assert 0 <= metrics["oof"]["eer"] <= 1 and 0 <= metrics["test"]["segment_eer"] <= 1
    oof = read_table(full / "oof.parquet")
    assert ((oof.score >= -1) & (oof.score <= 1)).all(), "scores are cosines to the bona fide centre"
    assert not np.array_equal(oof.score.to_numpy(), read_table(vanilla / "oof.parquet").score.to_numpy())
    log = pd.read_csv(full / "logs" / "run0" / "metrics.csv")
    for name in ("reconstruction", "conversion", "speaker", "adversary"):
        assert log[f"train_loss_{name}"].notna().any(), name
    saved = load_config(full / "config.yaml")
    assert saved.aux.speaker.n_speakers >= 2 and saved.model.loss == "ocsoftmax"


def test_batches_carry_speakers_only_for_speaker_classification(tiny, tmp_path):
    data = FoldData(_cfg(tiny, tmp_path, "selcnn_oc_s3"), 0)
    train = load_table(tiny)
    bona_speakers = set(train.speaker[(train.label == "bonafide") & train.utt_id.isin(data.train.utt_id)])
    assert sorted(data.speakers) == sorted(bona_speakers)
    batch = next(iter(data.loader("train", train=True)))
    bona = batch["label"] == 1
    assert (batch["speaker"][bona] >= 0).all() and int(batch["speaker"].max()) < len(data.speakers)
    assert "speaker" not in next(iter(data.loader("valid")))
    plain = FoldData(_cfg(tiny, tmp_path, "selcnn_oc"), 0)
    assert plain.speakers is None and "speaker" not in next(iter(plain.loader("train", train=True)))


def load_table(tiny):
    return pd.read_csv(tiny / "train.csv", dtype={"utt_id": str})


@pytest.mark.parametrize("change", ["drop", "empty"])
def test_a_data_set_without_speakers_refuses_speaker_classification(tiny, tmp_path, change):
    copy = tmp_path / "nospeakers"
    copy.mkdir()
    for item in tiny.iterdir():
        if item.name != "train.csv":
            (copy / item.name).symlink_to(item)
    table = load_table(tiny)
    table = table.drop(columns="speaker") if change == "drop" else table.assign(speaker="")
    table.to_csv(copy / "train.csv", index=False)
    cfg = experiment_config("selcnn_oc_s3", str(copy), [*FAST, f"output_root={tmp_path}"])
    with pytest.raises(ManifestError) as error:
        FoldData(cfg, 0)
    message = str(error.value)
    assert "\n" not in message and str(copy / "train.csv") in message and "aux.speaker" in message
