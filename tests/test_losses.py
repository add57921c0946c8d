"""MSE for P2SGrad against hand-computed values, its closed-form gradient and Table 2's weighting."""
from __future__ import annotations

import pytest
import torch

from antispoof.losses import P2SGradLoss
from antispoof.models import SELCNNMTL, SELCNNMTLConfig

loss_fn = P2SGradLoss()


def test_value_by_hand():
    cos = torch.tensor([[0.5, -0.2], [0.1, 0.3]])
    # row 0 bona fide: (0.5 - 1)^2 + (-0.2)^2 = 0.29; row 1 spoof: 0.1^2 + (0.3 - 1)^2 = 0.50
    assert float(loss_fn(cos, torch.tensor([0, 1]))) == pytest.approx((0.29 + 0.50) / 2)


def test_gradient_is_closed_form():
    torch.manual_seed(0)
    cos = (torch.rand(5, 2) * 2 - 1).requires_grad_()
    targets = torch.tensor([0, 1, 1, 0, 1])
    loss_fn(cos, targets).backward()
    onehot = torch.nn.functional.one_hot(targets, 2).float()
    assert torch.allclose(cos.grad, 2 * (cos.detach() - onehot) / 5)


def test_padding_is_ignored():
    cos = torch.tensor([[0.5, -0.2], [0.9, 0.9], [0.1, 0.3]], requires_grad=True)
    loss = loss_fn(cos, torch.tensor([0, -1, 1]))
    assert float(loss.detach()) == pytest.approx(float(loss_fn(cos.detach()[[0, 2]], torch.tensor([0, 1]))))
    loss.backward()
    assert (cos.grad[1] == 0).all()
    empty = loss_fn(cos, torch.tensor([-1, -1, -1]))
    assert float(empty.detach()) == 0.0 and empty.requires_grad


def test_segments_weighted_per_utterance():
    torch.manual_seed(0)
    cos = torch.rand(2, 4, 2) * 2 - 1
    targets = torch.tensor([[0, -1, -1, -1], [1, 0, 1, -1]])  # M_1 = 1, M_2 = 3
    per_utt = []
    for j in range(2):
        terms = [sum((float(cos[j, m, k]) - float(targets[j, m] == k)) ** 2 for k in range(2))
                 for m in range(4) if targets[j, m] >= 0]
        per_utt.append(sum(terms) / len(terms))
    expected = sum(per_utt) / 2  # (1/|D|) sum_j (1/M_j) sum_m sum_k (cos - 1(y = k))^2
    assert float(loss_fn(cos, targets)) == pytest.approx(expected, abs=1e-6)
    pooled = float(loss_fn(cos.reshape(-1, 2), targets.reshape(-1)))  # mean over all 4 segments
    assert pooled != pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize("variant", ["mulbs", "utterance", "segment"])
def test_model_losses_by_variant(variant):
    torch.manual_seed(0)
    net = SELCNNMTL(SELCNNMTLConfig(variant=variant)).eval()
    wave = torch.zeros(2, 16000)
    wave[0], wave[1, :9000] = 0.1 * torch.randn(16000), 0.1 * torch.randn(9000)
    out = net(wave, torch.tensor([16000, 9000]))
    utt = torch.tensor([0, 1])
    seg = torch.tensor([[0, 0, 1, 1, 0, 0, 1], [1, 1, 0, 0, 0, 0, 0]])  # one column too many
    losses = net.losses(out, utt, seg)
    if variant == "utterance":
        assert losses["seg"] is None and torch.equal(losses["total"], losses["utt"])
    elif variant == "segment":
        assert losses["utt"] is None and torch.equal(losses["total"], losses["seg"])
    else:
        assert torch.allclose(losses["total"], losses["utt"] + losses["seg"])
    if losses["seg"] is not None:  # targets past seg_lengths (3 for clip 1) do not count
        expected = loss_fn(out["seg_cos"], torch.tensor([[0, 0, 1, 1, 0, 0], [1, 1, 0, -1, -1, -1]]))
        assert torch.allclose(losses["seg"], expected)
    losses["total"].backward()
