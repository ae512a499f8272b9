"""The contract every method passes, on tiny models of several architectures.

* save/load round trip gives identical logits;
* gradients reach exactly the parameters the paper trains, and nothing else;
* one expert whose gate is 1 reproduces plain PEFT LoRA output (the library LoRA it came from);
* mergeable methods give the same logits merged and unmerged (see the per-method tests).
"""

from __future__ import annotations

import re

import pytest
import torch
from peft import PeftModel

from loralab.library import Library
from loralab.models import build_tiny_model
from loralab.moe.model import load_method
from loralab.train import build_method

ARCHS = ["llama", "gpt2", "falcon"]
# method -> (config overrides for the contract, regex of the parameter names the paper trains)
METHODS = {
    "loramoe": ({"targets": "all", "num_experts": 3}, r"(lora_A|lora_B|router\.gate\.weight)$"),
    "rocket": ({"targets": "all"}, r"(lora_A|lora_B|router\.gate\.weight)$"),
    "xlora": ({"depth": 2, "size": 16}, r"^xlora_classifier\."),
}
LIBRARY_METHODS = {"rocket", "xlora"}


def build(method, arch, tiny_libraries, n_experts=3, **overrides):
    lib, tasks = tiny_libraries(arch)
    lm = build_tiny_model(arch, seed=0)
    use_library = overrides.pop("use_library", False) or method in LIBRARY_METHODS
    config = {**METHODS[method][0], **overrides}
    experts = tasks[:n_experts] if use_library else None
    moe = build_method(method, lm, ["toy"], config=config, library=lib if experts else None, experts=experts)
    return lm, moe


def batch(tokenizer):
    enc = tokenizer(["Q: is 3 even?\nA: no", "Q: 10?"], return_tensors="pt", padding=True, add_special_tokens=False)
    labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
    return {**enc, "labels": labels, "task_ids": torch.tensor([0, 0]), "task_types": torch.tensor([1, 0])}


def perturb(moe):
    """Move every adapter tensor away from its init so the round trip is not trivially zero == zero."""
    with torch.no_grad():
        for name, p in moe.named_parameters():
            if ".base_layer." not in name and name not in moe._base_keys:
                p.add_(torch.randn_like(p) * 0.05)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("method", sorted(METHODS))
def test_save_load_round_trip_identical_logits(tmp_path, tiny_libraries, method, arch):
    lm, moe = build(method, arch, tiny_libraries)
    perturb(moe)
    moe.eval()
    b = batch(lm.tokenizer)
    with torch.no_grad():
        before = moe(input_ids=b["input_ids"], attention_mask=b["attention_mask"], task_ids=b["task_ids"]).logits
    moe.save_pretrained(tmp_path / "ckpt")
    loaded = load_method(build_tiny_model(arch, seed=0).model, tmp_path / "ckpt")
    with torch.no_grad():
        after = loaded(input_ids=b["input_ids"], attention_mask=b["attention_mask"], task_ids=b["task_ids"]).logits
    torch.testing.assert_close(after, before, rtol=0, atol=0)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("method", sorted(METHODS))
def test_gradients_reach_exactly_the_trained_parameters(tiny_libraries, method, arch):
    lm, moe = build(method, arch, tiny_libraries)
    perturb(moe)  # non-zero B so that A and routers get gradient too
    moe.train()
    out = moe(**batch(lm.tokenizer))
    out.loss.backward()
    pattern = re.compile(METHODS[method][1])
    expected = {n for n, _ in moe.named_parameters() if pattern.search(n) and ".base_layer." not in n}
    assert expected, "the method must train something"
    trainable = set(moe.trainable_parameter_names())
    assert trainable == expected
    with_grad = {n for n, p in moe.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert with_grad == expected


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("method", sorted(METHODS))
def test_one_expert_with_gate_one_equals_plain_peft_lora(tiny_libraries, method, arch):
    lib, tasks = tiny_libraries(arch)
    one_expert = {"loramoe": {"num_experts": 1}, "rocket": {"top_k": 1}}.get(method, {})
    lm, moe = build(method, arch, tiny_libraries, n_experts=1, use_library=True, **one_expert)
    moe.eval()
    entry = Library(lib).get(lm.name, tasks[0])
    peft_model = PeftModel.from_pretrained(build_tiny_model(arch, seed=0).model, str(entry.path)).eval()
    b = batch(lm.tokenizer)
    with torch.no_grad():
        ours = moe(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
        theirs = peft_model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_unload_restores_the_base_model(tiny_libraries, method):
    lm, moe = build(method, "llama", tiny_libraries)
    plain = moe.unload()
    fresh = build_tiny_model("llama", seed=0).model
    assert set(plain.state_dict()) == set(fresh.state_dict())
    ids = torch.tensor([[5, 6, 7]])
    torch.testing.assert_close(plain(input_ids=ids).logits, fresh(input_ids=ids).logits)
