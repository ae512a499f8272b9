"""Auxiliary losses against hand-computed values on small tensors."""

import math

import pytest
import torch

from loralab.moe.losses import load_balancing_loss, localized_balancing_loss
from loralab.moe.routers import topk_gates


def test_load_balancing_loss_hand_computed():
    # one layer, B=1, T=2, E=2, top-1. probs: token0 = softmax([0, ln 3]) = [.25, .75]; token1 = [.75, .25]
    logits = torch.tensor([[[0.0, math.log(3.0)], [math.log(3.0), 0.0]]])
    # f = [.5, .5] (one token to each), P = [.5, .5] -> E * sum f P = 2 * (.25 + .25) = 1
    assert load_balancing_loss([logits], top_k=1).item() == pytest.approx(1.0)


def test_load_balancing_loss_imbalanced_and_masked():
    logits = torch.tensor([[[0.0, math.log(3.0)], [0.0, math.log(3.0)], [5.0, 0.0]]])  # last token is padding
    mask = torch.tensor([[1, 1, 0]])
    # real tokens both pick expert 1: f = [0, 1]; P = [.25, .75] -> 2 * .75 = 1.5
    assert load_balancing_loss([logits], top_k=1, attention_mask=mask).item() == pytest.approx(1.5)
    # layers are concatenated, not averaged per layer: two identical layers give the same value
    assert load_balancing_loss([logits, logits], 1, mask).item() == pytest.approx(1.5)


def test_load_balancing_top2_counts_both_slots():
    logits = torch.zeros(1, 4, 4)  # uniform: P = 1/4 each; top-2 of ties picks experts 0 and 1 for every token
    loss = load_balancing_loss([logits], top_k=2)
    # f[slot0] = [1,0,0,0], f[slot1] = [0,1,0,0]; sum f*P = 2 * 1/4; * E = 2
    assert loss.item() == pytest.approx(2.0)


def test_localized_balancing_loss_hand_computed():
    # B=2 samples, T=2 tokens, E=2 experts; sample 0 is type 1 (favours expert 0), sample 1 type 0 (favours expert 1)
    w = torch.tensor([[[0.5, 0.5], [1.0, 0.0]], [[0.0, 1.0], [0.5, 0.5]]])
    types = torch.tensor([1, 0])
    # Q = [[1.5, .5], [.5, 1.5]]; I = [[1.1, .9], [.9, 1.1]]; Z = [[1.65, .45], [.45, 1.65]]
    z = torch.tensor([1.65, 0.45, 0.45, 1.65])
    expected = z.var().item() / z.mean().item() ** 2  # unbiased variance / mean^2
    assert localized_balancing_loss(w, types, delta=0.1).item() == pytest.approx(expected, rel=1e-5)


def test_localized_balancing_loss_masks_padding():
    w = torch.tensor([[[0.5, 0.5], [1.0, 0.0]], [[0.0, 1.0], [0.9, 0.1]]])
    mask = torch.tensor([[1, 1], [1, 0]])
    unmasked = localized_balancing_loss(w[:, :, :], torch.tensor([1, 0]), 0.1)
    masked = localized_balancing_loss(w, torch.tensor([1, 0]), 0.1, attention_mask=mask)
    manual = localized_balancing_loss(torch.tensor([[[0.5, 0.5], [1.0, 0.0]], [[0.0, 1.0], [0.0, 0.0]]]),
                                      torch.tensor([1, 0]), 0.1)
    assert masked.item() == pytest.approx(manual.item()) and masked.item() != pytest.approx(unmasked.item())


def test_topk_gates_with_and_without_renormalisation():
    p = torch.tensor([[0.5, 0.3, 0.2]])
    assert torch.allclose(topk_gates(p, 2, renormalize=False), torch.tensor([[0.5, 0.3, 0.0]]))
    assert torch.allclose(topk_gates(p, 2, renormalize=True), torch.tensor([[0.625, 0.375, 0.0]]))
    assert torch.equal(topk_gates(p, None, True), p)
