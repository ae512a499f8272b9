"""Auxiliary losses against hand-computed values on small tensors."""

import math

import pytest
import torch
from helpers import toy_task

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
    # the padding position holds the sample's own real-token gate, so the unmasked mean over T is the masked one
    manual = localized_balancing_loss(torch.tensor([[[0.5, 0.5], [1.0, 0.0]], [[0.0, 1.0], [0.0, 1.0]]]),
                                      torch.tensor([1, 0]), 0.1)
    assert masked.item() == pytest.approx(manual.item()) and masked.item() != pytest.approx(unmasked.item())


def cv_squared(values: list[float]) -> float:
    """Unbiased variance / mean^2, by hand."""
    mean = sum(values) / len(values)
    return sum((v - mean) ** 2 for v in values) / (len(values) - 1) / mean ** 2


def padded(lengths: list[int], num_experts: int, gate) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T, E) gate weights with `gate(b, t)` on real tokens and junk on padding, and the (B, T) mask."""
    longest = max(lengths)
    weights = torch.zeros(len(lengths), longest, num_experts)
    mask = torch.zeros(len(lengths), longest, dtype=torch.long)
    for b, n in enumerate(lengths):
        for t in range(longest):
            weights[b, t] = torch.tensor(gate(b, t)) if t < n else torch.eye(num_experts)[0]  # padding: junk
        mask[b, :n] = 1
    return weights, mask


@pytest.mark.parametrize("lengths", [[2, 5, 9, 3], [7, 7, 7, 7], [1, 12, 1, 12]])
def test_localized_balancing_loss_of_uniform_routing_ignores_sample_lengths(lengths):
    """Uniform routing is perfectly balanced: its LBC is 0 without delta, and I's own spread with delta."""
    weights, mask = padded(lengths, 4, lambda b, t: [0.25] * 4)
    types = torch.tensor([1, 0, 0, 1])
    assert localized_balancing_loss(weights, types, 0.0, mask).item() == pytest.approx(0.0, abs=1e-12)
    # delta 0.1, 4 experts: Z = I / 4, with I = [1.1, 1.1, .9, .9] (type 1) or [.9, .9, 1.1, 1.1] (type 0)
    z = [v / 4 for _ in lengths for v in (1.1, 1.1, 0.9, 0.9)]
    assert localized_balancing_loss(weights, types, 0.1, mask).item() == pytest.approx(cv_squared(z), rel=1e-5)
    assert cv_squared(z) == pytest.approx(0.16 / 15, rel=1e-9)  # 16 values at +-0.1/4 around 1/4


def test_localized_balancing_loss_uses_each_samples_mean_over_its_real_tokens():
    # sample 0 (type 1, 3 real tokens): gates [1, 0], [.5, .5], [0, 1] -> Q = [.5, .5]
    # sample 1 (type 0, 1 real token): gate [.2, .8] -> Q = [.2, .8]; its 2 padding positions are ignored
    gates = {0: [[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]], 1: [[0.2, 0.8]]}
    weights, mask = padded([3, 1], 2, lambda b, t: gates[b][t])
    # I: type 1 favours expert 0 -> [1.1, .9]; type 0 favours expert 1 -> [.9, 1.1]
    z = [0.5 * 1.1, 0.5 * 0.9, 0.2 * 0.9, 0.8 * 1.1]
    got = localized_balancing_loss(weights, torch.tensor([1, 0]), 0.1, mask).item()
    assert got == pytest.approx(cv_squared(z), rel=1e-5)


def test_localized_balancing_loss_is_the_official_value_without_padding():
    """Unpadded equal lengths: the same as the official sum over tokens (var/mean^2 ignores a common scale)."""
    weights = torch.softmax(torch.randn(3, 5, 4, generator=torch.Generator().manual_seed(0)), dim=-1)
    types = torch.tensor([1, 0, 1])
    q = weights.sum(dim=1)  # the official Q: sum over the sequence
    favoured = torch.tensor([[True, True, False, False], [False, False, True, True], [True, True, False, False]])
    z = (q * torch.where(favoured, 1.1, 0.9)).flatten()
    official = (z.var() / (z.mean() ** 2 + 1e-10)).item()
    assert localized_balancing_loss(weights, types, 0.1).item() == pytest.approx(official, rel=1e-5)
    full = torch.ones(3, 5, dtype=torch.long)
    assert localized_balancing_loss(weights, types, 0.1, full).item() == pytest.approx(official, rel=1e-5)


def test_localized_balancing_loss_leaves_out_all_padding_samples():
    weights, mask = padded([2, 3, 2], 2, lambda b, t: [0.3, 0.7] if b != 1 else [0.6, 0.4])
    mask[1] = 0  # sample 1 is all padding
    kept = localized_balancing_loss(weights[[0, 2]], torch.tensor([1, 0]), 0.1, mask[[0, 2]])
    assert localized_balancing_loss(weights, torch.tensor([1, 1, 0]), 0.1, mask).item() == pytest.approx(kept.item())
    assert localized_balancing_loss(weights[:1], torch.tensor([1]), 0.1, mask[1:2] * 0).item() == 0.0


def test_loramoe_loss_is_the_same_with_a_plain_transformers_trainer(tmp_path):
    """A user's own Trainer (batches without task_types) optimises what `loralab train` does (all type 0)."""
    from transformers import Trainer, TrainingArguments

    from loralab.library import LoRAHparams
    from loralab.training.trainer import ROUTING_KEYS, AnswerOnlyTrainer, PadCollator
    from loralab.models import build_tiny_model
    from loralab.recipes.train import build_method, method_features

    lm = build_tiny_model("llama", seed=0)
    tasks = [toy_task("toy_a", n=8), toy_task("toy_b", n=8, kind="generation")]
    moe = build_method("loramoe", lm, [t.name for t in tasks], config={"dropout": 0.0})
    with torch.no_grad():  # experts away from B = 0, so they take part in the LM loss too
        for name, p in moe.named_parameters():
            if name.endswith("lora_B"):
                p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(0)) * 0.05)
    features = method_features(tasks, lm.tokenizer, LoRAHparams(), {})  # loralab's own path: unlisted -> type 0
    batch = PadCollator(lm.tokenizer.pad_token_id)([features[1], features[2], features[7], features[8]])
    assert len(set(batch["attention_mask"].sum(dim=1).tolist())) > 1  # samples of different lengths
    assert batch["task_types"].tolist() == [0, 0, 0, 0]
    plain = {k: v for k, v in batch.items() if k not in ROUTING_KEYS}

    args = TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True)
    ours = AnswerOnlyTrainer(model=moe, args=args)
    ours.current_gradient_accumulation_steps = 1  # set by Trainer's training loop, which does not run here
    moe.train()
    loralab_loss = ours.compute_loss(moe, batch)
    user_loss = Trainer(model=moe, args=args).compute_loss(moe, plain)
    assert user_loss.item() == pytest.approx(loralab_loss.item(), rel=1e-6)
    moe.eval()
    with torch.no_grad():
        lm_only = moe(**plain).loss  # no constraint outside training
    assert user_loss.item() > lm_only.item() + 1e-4  # the constraint is part of the user's loss


def test_topk_gates_with_and_without_renormalisation():
    p = torch.tensor([[0.5, 0.3, 0.2]])
    assert torch.allclose(topk_gates(p, 2, renormalize=False), torch.tensor([[0.5, 0.3, 0.0]]))
    assert torch.allclose(topk_gates(p, 2, renormalize=True), torch.tensor([[0.625, 0.375, 0.0]]))
    assert torch.equal(topk_gates(p, None, True), p)
