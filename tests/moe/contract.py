"""The method contract as check functions, driven by what a method's `MethodSpec` declares.

`test_moe_contract.py` runs them over every registered method with a `contract`; a plug-in method's
own test calls them on it (see `test_plugin_method.py`). Each check builds fresh tiny models, so any
order is fine. The settings come from the spec: `contract.config` (small sizes), `contract.trained`
(regex of the trained parameters), `contract.one_expert` (overrides for one library expert with gate
1), `library` ("required": always built from library LoRAs) and `mergeable`.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from peft import PeftModel

from loralab.errors import AdapterError
from loralab.library import Library
from loralab.models import build_tiny_model
from loralab.moe.model import load_method
from loralab.moe.registry import MethodContract, MethodSpec, get_method
from loralab.recipes.train import build_method

ARCHS = ["llama", "gpt2", "falcon"]
TASKS = ["toy_a", "toy_b"]


def contract_of(method: str) -> MethodContract:
    contract = get_method(method).contract
    assert contract is not None, f"method {method!r} declares no contract"
    return contract


def takes_one_expert(spec: MethodSpec) -> bool:
    """Whether the one-expert check applies: the method takes library LoRAs and does not opt out."""
    return spec.contract is not None and spec.library != "none" and spec.contract.one_expert is not None


def build(method, arch, tiny_libraries, n_experts=3, use_library=False, **overrides):
    lib, tasks = tiny_libraries(arch)
    lm = build_tiny_model(arch, seed=0)
    experts = tasks[:n_experts] if use_library or get_method(method).library == "required" else None
    config = {**contract_of(method).config, **overrides}
    moe = build_method(method, lm, TASKS, config=config, library=lib if experts else None, experts=experts)
    return lm, moe


def batch(tokenizer, task_id=0):
    enc = tokenizer(["Q: is 3 even?\nA: no", "Q: 10?"], return_tensors="pt", padding=True, add_special_tokens=False)
    labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
    return {**enc, "labels": labels, "task_ids": torch.tensor([task_id, task_id]), "task_types": torch.tensor([1, 0])}


def logits(model, b, **extra):
    with torch.no_grad():
        return model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], **extra).logits


def perturb(moe):
    """Move every adapter tensor away from its init so that checks are not trivially zero == zero."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in moe.named_parameters():
            if ".base_layer." not in name and name not in moe._base_keys:
                p.add_(torch.randn(p.shape, generator=gen).to(p.dtype) * 0.05)


def check_round_trip(method: str, arch: str, tiny_libraries, tmp_path: Path) -> None:
    """save_pretrained then load_method on a fresh base model gives identical logits."""
    lm, moe = build(method, arch, tiny_libraries)
    perturb(moe)
    moe.eval()
    b = batch(lm.tokenizer, task_id=1)
    before = logits(moe, b, task_ids=b["task_ids"])
    moe.save_pretrained(tmp_path / "ckpt")
    loaded = load_method(build_tiny_model(arch, seed=0).model, tmp_path / "ckpt")
    torch.testing.assert_close(logits(loaded, b, task_ids=b["task_ids"]), before, rtol=0, atol=0)


def check_gradients(method: str, arch: str, tiny_libraries) -> None:
    """Gradients reach exactly the parameters `contract.trained` names, and those are the trainable ones."""
    lm, moe = build(method, arch, tiny_libraries)
    perturb(moe)  # non-zero B so that A and routers get gradient too
    moe.train()
    moe(**batch(lm.tokenizer)).loss.backward()
    pattern = re.compile(contract_of(method).trained)
    expected = {n for n, _ in moe.named_parameters() if pattern.search(n) and ".base_layer." not in n}
    assert expected, "the method must train something"
    assert set(moe.trainable_parameter_names()) == expected
    with_grad = {n for n, p in moe.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert with_grad == expected


def check_one_expert(method: str, arch: str, tiny_libraries) -> None:
    """One library expert whose gate is 1 reproduces plain PEFT LoRA output (the library LoRA it came from)."""
    lib, tasks = tiny_libraries(arch)
    overrides = contract_of(method).one_expert or {}
    lm, moe = build(method, arch, tiny_libraries, n_experts=1, use_library=True, **overrides)
    moe.eval()
    entry = Library(lib).get(lm.name, tasks[0])
    peft_model = PeftModel.from_pretrained(build_tiny_model(arch, seed=0).model, str(entry.path)).eval()
    b = batch(lm.tokenizer)
    torch.testing.assert_close(logits(moe, b, task_ids=b["task_ids"]), logits(peft_model, b), rtol=1e-4, atol=1e-5)


def check_merge(method: str, arch: str, tiny_libraries) -> None:
    """A mergeable method gives the same logits merged and unmerged, for every task."""
    for task_id, task in enumerate(TASKS):
        lm, moe = build(method, arch, tiny_libraries)
        perturb(moe)
        moe.eval()
        b = batch(lm.tokenizer, task_id=task_id)
        unmerged = logits(moe, b, task_ids=b["task_ids"])
        merged_model = moe.merge_and_unload(task)
        assert not any(getattr(m, "is_loralab_layer", False) for m in merged_model.modules())
        torch.testing.assert_close(logits(merged_model, b), unmerged, rtol=1e-4, atol=1e-5)


def check_refuses_merge(method: str, tiny_libraries) -> None:
    """A token-routed method (not mergeable) refuses merge_and_unload with one line."""
    _, moe = build(method, "llama", tiny_libraries)
    with pytest.raises(AdapterError, match="cannot be merged"):
        moe.merge_and_unload(TASKS[0])


def check_unload(method: str, tiny_libraries) -> None:
    """`unload()` gives back the untouched base model."""
    lm, moe = build(method, "llama", tiny_libraries)
    plain = moe.unload()
    fresh = build_tiny_model("llama", seed=0).model
    assert set(plain.state_dict()) == set(fresh.state_dict())
    ids = torch.tensor([[5, 6, 7]])
    torch.testing.assert_close(plain(input_ids=ids).logits, fresh(input_ids=ids).logits)


def check_contract(method: str, tiny_libraries, tmp_path: Path, archs: list[str] = ARCHS) -> None:
    """Every check that applies to `method`, on `archs` (what the parametrized suite runs, in one call)."""
    spec = get_method(method)
    for arch in archs:
        check_round_trip(method, arch, tiny_libraries, tmp_path / arch)
        check_gradients(method, arch, tiny_libraries)
        if takes_one_expert(spec):
            check_one_expert(method, arch, tiny_libraries)
        if spec.mergeable:
            check_merge(method, arch, tiny_libraries)
    check_unload(method, tiny_libraries)
    if not spec.mergeable:
        check_refuses_merge(method, tiny_libraries)
