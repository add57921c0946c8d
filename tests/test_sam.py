"""Sharpness-aware minimisation (train/sam.py, `optim.sam`): one step against the update written
out here by hand (SAM and ASAM), the exact restore, the detector step of every family through the
LightningModule's manual path, under a float16 loss scaler and under DDP, and a real fold run
on the micro SpoofBench (16 clips of the tiny one) with SAM on against SAM off."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch.func import functional_call

from antispoof.config import load_config
from antispoof.runs import read_table
from antispoof.train.fold import experiment_config, train_fold
from antispoof.train.module import DetectorModule
from antispoof.train.sam import SAM, SAMConfig, running_statistics_kept

from batches import detector_batch

REPO = Path(__file__).resolve().parents[1]

# ---- one step by hand ----------------------------------------------------------------------------


def _model_and_batch():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Tanh(), torch.nn.Linear(5, 2)).double()
    x, y = torch.randn(8, 3, dtype=torch.float64), torch.tensor([0, 1, 1, 0, 1, 0, 0, 1])
    return model, x, y


def _loss(model, params, x, y):
    return torch.nn.functional.cross_entropy(functional_call(model, params, (x,)), y)


def _grad(model, params, x, y):
    names = list(params)
    grads = torch.autograd.grad(_loss(model, params, x, y), [params[n] for n in names])
    return dict(zip(names, grads))


def _by_hand(model, x, y, rho, lr, wd, adaptive=False, eta=0.01):
    """-> (the ascent point w + e, the weights after the step), written out from the papers."""
    w = {n: p.detach().clone().requires_grad_() for n, p in model.named_parameters()}
    g = _grad(model, w, x, y)
    t = {n: (w[n].detach().abs() + eta) if adaptive else torch.ones_like(w[n]) for n in w}
    norm = sum(((t[n] * g[n]) ** 2).sum() for n in w).sqrt()  # ||T g|| over all the weights
    ascent = {n: (w[n].detach() + rho * t[n] ** 2 * g[n] / norm).requires_grad_() for n in w}
    g2 = _grad(model, ascent, x, y)
    after = {n: w[n].detach() - lr * (g2[n] + wd * w[n].detach()) for n in w}  # SGD from w, not from w + e
    return {n: a.detach() for n, a in ascent.items()}, after


@pytest.mark.parametrize("adaptive,rho", [(False, 0.05), (True, 1.0)])
def test_one_step_is_the_two_pass_update_by_hand(adaptive, rho):
    model, x, y = _model_and_batch()
    lr, wd = 0.1, 0.01
    ascent, want = _by_hand(model, x, y, rho, lr, wd, adaptive=adaptive)
    plain = {n: p.detach() - lr * (g + wd * p.detach()) for (n, p), g in
             zip(model.named_parameters(), torch.autograd.grad(torch.nn.functional.cross_entropy(model(x), y),
                                                                list(model.parameters())))}
    assert max((want[n] - plain[n]).abs().max() for n in want) > 1e-4, "the check tells SAM from plain SGD"
    optimiser = torch.optim.SGD(model.parameters(), lr=lr, weight_decay=wd)
    sam = SAM(optimiser, rho=rho, adaptive=adaptive)
    seen = []

    def closure():
        seen.append({n: p.detach().clone() for n, p in model.named_parameters()})
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        return loss

    sam.step(closure)
    assert len(seen) == 2, "two forward-backward passes"
    for n, p in model.named_parameters():
        torch.testing.assert_close(seen[1][n], ascent[n], atol=1e-6, rtol=0)  # the second pass ran at w + e
        torch.testing.assert_close(p.detach(), want[n], atol=1e-6, rtol=0)
        assert (p.detach() - seen[1][n]).abs().max() > 1e-4, "the step left the perturbed weights"


def test_asam_scales_the_ascent_per_weight():
    model, x, y = _model_and_batch()
    with torch.no_grad():
        model[0].weight[0].mul_(100)  # one row of large weights: ASAM moves them more, SAM alike
    moves = {}
    for adaptive in (False, True):
        model.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        before = model[0].weight.detach().clone()
        sam = SAM(torch.optim.SGD(model.parameters(), lr=0.1), rho=0.05, adaptive=adaptive)
        assert sam.perturb()
        moves[adaptive] = (model[0].weight.detach() - before) / model[0].weight.grad
        sam.restore()
    assert torch.allclose(moves[False], moves[False][0, 0]), "SAM: the same factor for every weight"
    factor = moves[True] / (model[0].weight.detach().abs() + 0.01) ** 2
    assert torch.allclose(factor, factor[0, 0]), "ASAM: a factor (|w| + eta)^2 per weight"


def test_restore_is_exact_and_nothing_moves_without_a_usable_gradient():
    model, x, y = _model_and_batch()
    sam = SAM(torch.optim.SGD(model.parameters(), lr=0.1), rho=0.05)
    w = [p.detach().clone() for p in model.parameters()]
    assert not sam.perturb(), "no gradient yet"
    torch.nn.functional.cross_entropy(model(x), y).backward()
    assert sam.perturb()
    assert all(not torch.equal(p, q) for p, q in zip(model.parameters(), w))
    with pytest.raises(RuntimeError, match="twice"):
        sam.perturb()
    sam.restore()
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), w)), "bit for bit, not w + e - e"
    for bad in (0.0, float("inf")):  # a zero gradient, a float16 overflow
        for p in model.parameters():
            p.grad.fill_(bad)
        assert not sam.perturb() and all(torch.equal(p, q) for p, q in zip(model.parameters(), w))


def test_the_second_pass_leaves_batchnorm_statistics_alone():
    norm = torch.nn.BatchNorm1d(3).train()
    norm(torch.randn(8, 3))
    after_one = {k: v.clone() for k, v in norm.state_dict().items()}
    with running_statistics_kept(norm):
        norm(torch.randn(8, 3) + 5)
    assert all(torch.equal(v, after_one[k]) for k, v in norm.state_dict().items())


def test_config_is_off_by_default_and_refuses_nonsense():
    plain = DetectorModule(load_config("model/selcnn_mulbs"))
    assert plain.sam == SAMConfig() and not plain.sam.enabled and plain.automatic_optimization
    assert SAMConfig.from_options(None) == SAMConfig(), "a config from before optim.sam: off"
    with pytest.raises(ValueError, match="unknown"):
        SAMConfig.from_options({"enabled": True, "radius": 0.1})
    with pytest.raises(ValueError, match="rho"):
        SAMConfig.from_options({"enabled": True, "rho": 0})


# ---- the detector step of every family -------------------------------------------------------------

SAM_ON = ["optim.sam.enabled=true"]
CONFIGS = {  # a small detector of each family
    "selcnn": ("selcnn_mulbs", SAM_ON),
    # MHFA on 3 cached states of 16 dims, OC-softmax: a second optimiser (the centre's SGD), ASAM
    "mhfa_oc": ("whisper_base_mhfa_oc", [*SAM_ON, "optim.sam.adaptive=true", "optim.sam.rho=1.0", "+model.n_states=3",
                                         "+model.dim=16", "model.compression=8", "model.heads=2", "model.embedding=8"]),
    # Whisper tiny.en fine-tuned (clips its gradients at 1.0), cut into 0.5 s chunks
    "whisper": ("whisper_tiny", [*SAM_ON, "augment=none", "model.max_seconds=0.5"]),
}



def _state(module):
    return {"params": [p.detach().clone() for p in module.parameters()],
            "grads": [None if p.grad is None else p.grad.clone() for p in module.parameters()],
            "buffers": {k: v.clone() for k, v in module.model.named_buffers()}}


@pytest.mark.parametrize("family", list(CONFIGS))
def test_the_detector_step_of_every_family(family):
    model, overrides = CONFIGS[family]
    torch.manual_seed(0)
    module, batch = DetectorModule(load_config(f"model/{model}", overrides)), detector_batch(family)
    assert module.sam.enabled and not module.automatic_optimization, "SAM takes the manual path"
    optimisers, schedulers = module.configure_optimizers()
    assert [type(o) for o in optimisers] == [torch.optim.Adam] + ([torch.optim.SGD] if module.centres else [])
    assert len(schedulers) == len(optimisers), "the learning rates are still halved"
    events, start = [], _state(module)

    def backward(loss):
        loss.backward()
        events.append(("backward", _state(module)))

    def stepping(optimiser):
        step = optimiser.step

        def recorded(*args, **kwargs):
            events.append(("step", _state(module)))
            return step(*args, **kwargs)
        return recorded

    for optimiser in optimisers:
        optimiser.step = stepping(optimiser)
    module.optimizers = lambda: optimisers
    module.manual_backward = backward
    module.clip_gradients = lambda optimiser, **how: events.append(("clip", optimiser, how))
    module.train()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # self.log without a Trainer
        module.training_step(batch, 0)
    kinds = [e[0] for e in events]
    clip = module.cfg.trainer.gradient_clip_val
    assert kinds == ["backward", "backward", *(["clip"] if clip else []), *["step"] * len(optimisers)]
    first, second, at_step = events[0][1], events[1][1], events[-len(optimisers)][1]
    if clip:
        assert events[2][1] is optimisers[0] and events[2][2]["gradient_clip_val"] == clip
    moved = [(a - b) for a, b in zip(second["params"], start["params"])]
    assert all(m.abs().max() > 0 for m, g in zip(moved, first["grads"]) if g is not None and g.abs().max() > 1e-6), \
        "every weight with a gradient (the centres too) is perturbed for the second pass"
    if not module.sam.adaptive:
        norm = torch.stack([m.norm() for m in moved]).norm()
        assert norm.item() == pytest.approx(module.sam.rho, rel=1e-4), "||e|| = rho"
    assert all(torch.equal(a, b) for a, b in zip(at_step["params"], start["params"])), "the step starts from w"
    assert all(torch.equal(a, b) for a, b in zip(at_step["grads"], second["grads"]) if a is not None)
    assert any(not torch.equal(a, b) for a, b in zip(second["grads"], first["grads"]) if a is not None), \
        "the optimiser gets the second pass's gradient"
    for name, buffer in module.model.named_buffers():
        assert torch.equal(buffer, first["buffers"][name]), f"{name}: only the first pass counts"


def test_under_a_float16_loss_scaler_the_unscaled_gradients_are_clipped(tmp_path):
    """A real Trainer with a GradScaler (16-mixed, which a GPU without bf16 gets; forced onto the CPU
    here): SAM's step clips the detector's gradients after Lightning unscaled them, and the rate is
    still halved every `halve_every` epochs."""
    import lightning as L
    from lightning.pytorch.plugins.precision import MixedPrecision

    model, overrides = CONFIGS["mhfa_oc"]
    torch.manual_seed(0)
    module = DetectorModule(load_config(f"model/{model}", [*overrides, "trainer.gradient_clip_val=0.01",
                                                           "optim.halve_every=1"]))
    norms = []

    class Record(L.Callback):
        def on_train_start(self, trainer, _):
            detector = trainer.optimizers[0]
            step = detector.step

            def recorded(*args, **kwargs):  # what the scaler's step hands Adam
                grads = [p.grad for g in detector.param_groups for p in g["params"] if p.grad is not None]
                norms.append(torch.stack([g.norm() for g in grads]).norm().item())
                return step(*args, **kwargs)
            detector.step = recorded

    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", plugins=[MixedPrecision("16-mixed", "cpu", scaler=scaler)],
                        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[Record()], num_sanity_val_steps=0, limit_val_batches=0, default_root_dir=tmp_path)
    loader = torch.utils.data.DataLoader([detector_batch("mhfa_oc") for _ in range(3)], batch_size=None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(module, loader)
    assert scaler.get_scale() == 1024.0, "no overflow: every step was taken"
    assert len(norms) == 6 and all(n == pytest.approx(0.01, rel=1e-3) for n in norms), \
        "clipped to 0.01 once unscaled (clipping the scaled ones gives 0.01 / 1024)"
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(module.cfg.optim.lr / 4)


# ---- DDP: both passes are the ranks' mean ------------------------------------------------------------

RANKS = textwrap.dedent("""
    import os, sys, warnings, torch, lightning as L
    sys.path.insert(0, sys.argv[1])
    import test_sam as T
    from antispoof.config import load_config
    from antispoof.train.module import DetectorModule

    class Batches(torch.utils.data.Dataset):  # each rank its own states: its own gradients
        def __len__(self):
            return 3

        def __getitem__(self, i):
            batch = T.detector_batch("mhfa_oc")
            batch["states"] = (batch["states"].float() * (1 + int(os.environ.get("LOCAL_RANK", 0))) + i).half()
            return batch

    warnings.simplefilter("ignore")
    model, overrides = T.CONFIGS["mhfa_oc"]
    torch.manual_seed(0)
    module = DetectorModule(load_config(f"model/{model}", overrides))
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", devices=2, strategy="ddp", logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0, limit_val_batches=0, use_distributed_sampler=False,
                        default_root_dir=sys.argv[2])
    trainer.fit(module, torch.utils.data.DataLoader(Batches(), batch_size=None, sampler=range(3)))
    torch.save([p.detach() for p in module.parameters()], f"{sys.argv[2]}/rank{trainer.global_rank}.pt")
""")


@pytest.mark.skipif(sys.platform != "linux", reason="gloo DDP on the CPU is exercised on Linux")
def test_ranks_stay_identical_under_ddp(tmp_path):
    """Two processes on different data: the weights stay the same on both ranks only if the second
    pass's gradients are the ranks' mean too (Lightning re-arms DDP's sync for each manual_backward)."""
    script = tmp_path / "ranks.py"
    script.write_text(RANKS)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(script), str(REPO / "tests"), str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    torch.manual_seed(0)
    start = list(DetectorModule(load_config(f"model/{CONFIGS['mhfa_oc'][0]}", CONFIGS["mhfa_oc"][1])).parameters())
    assert any(not torch.equal(a, s) for a, s in zip(ranks[0], start)), "the ranks trained"
    assert all(torch.equal(a, b) for a, b in zip(*ranks))


# ---- a real fold run -------------------------------------------------------------------------------

# on the 16-clip micro set: two training batches of three 1 s crops, one validation batch
FAST = ["trainer.max_epochs=1", "data.folds=3", "data.num_workers=0", "data.batch_size=3", "data.crop_s=1.0",
        "trainer.progress_every=0", "trainer.deterministic=true", "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1", "trainer.log_every_n_steps=1"]


def test_a_fold_trains_with_sam_and_takes_another_path(micro, tmp_path):
    runs = {}
    for name, extra in (("off", []), ("on", [*SAM_ON, "experiment=selcnn_mulbs_sam"])):
        cfg = experiment_config("selcnn_mulbs", str(micro), [*FAST, f"output_root={tmp_path}", *extra])
        out = train_fold(cfg, 0)
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics["epochs"] == 1 and 0 <= metrics["oof"]["eer"] <= 1
        assert read_table(out / "oof.parquet").score.notna().all() and (out / "test.parquet").exists()
        runs[name] = pd.read_csv(out / "logs" / "run0" / "metrics.csv")
    losses = {name: log.dropna(subset=["train_loss"]).set_index("step").train_loss for name, log in runs.items()}
    assert list(losses["on"].index) == list(losses["off"].index) == [0, 1], "one logged loss per batch"
    assert losses["on"][0] == pytest.approx(losses["off"][0], abs=1e-6), "the same start, the same first batch"
    assert (losses["on"][1:] - losses["off"][1:]).abs().min() > 1e-6, "then the SAM steps lead elsewhere"
    assert "train_loss_perturbed" in runs["on"] and "train_loss_perturbed" not in runs["off"]
    assert runs["on"].train_loss_perturbed.notna().sum() == 2
