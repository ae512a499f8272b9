"""The contract every method passes, on tiny models of several architectures.

* save/load round trip gives identical logits;
* gradients reach exactly the parameters the paper trains, and nothing else;
* one expert whose gate is 1 reproduces plain PEFT LoRA output (the library LoRA it came from);
* mergeable methods give the same logits merged and unmerged, for every task;
* `unload()` gives back the untouched base model.

To add a method: one entry in CASES (or, for a method whose checkpoint is a plain PEFT adapter, in
PEFT_FORMAT_METHODS with the test file that covers it). `test_every_method_has_a_contract_case` fails
until every registered method is covered.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pytest
import torch
from peft import PeftModel

from loralab.library import Library
from loralab.models import build_tiny_model
from loralab.moe.model import load_method
from loralab.moe.registry import all_methods
from loralab.recipes.train import build_method

ARCHS = ["llama", "gpt2", "falcon"]
TASKS = ["toy_a", "toy_b"]


@dataclass
class Case:
    """How the contract runs one method.

    Attributes:
        config: Method config for the contract (small sizes, all linears so PEFT can be compared).
        trained: Regex of the parameter names the paper trains (everything else must stay frozen).
        library: Whether the experts come from library LoRAs.
        one_expert: Config overrides that make one library expert with gate 1 (None: not applicable).
        mergeable: Whether merge_and_unload(task) must equal the unmerged model on that task.
    """

    config: dict
    trained: str
    library: bool = False
    one_expert: dict | None = field(default_factory=dict)
    mergeable: bool = False


CASES: dict[str, Case] = {
    "loramoe": Case({"targets": "all", "num_experts": 3}, r"(lora_A|lora_B|router\.gate\.weight)$",
                    one_expert={"num_experts": 1}),
    "rocket": Case({"targets": "all"}, r"(lora_A|lora_B|router\.gate\.weight)$", library=True,
                   one_expert={"top_k": 1}),
    "xlora": Case({"depth": 2, "size": 16}, r"^xlora_classifier\.", library=True),
    "moelora": Case({"targets": "all", "num_experts": 3, "rank": 6}, r"\.lora_[AB]$|^task_gate\.",
                    mergeable=True),
    "mtllora": Case({"targets": "all", "rank": 4, "num_B": 2}, r"\.lora_(A|B|lambdas|B_w)$",
                    one_expert={"num_B": 1}, mergeable=True),
    # hydralora: shared A, N heads; one library LoRA gives N=1 with that LoRA's A/B, i.e. plain LoRA
    "hydralora": Case({"targets": "all", "num_experts": 3}, r"(lora_A|lora_B|router\.gate\.weight)$"),
    # mixlora: N=k=2 so every expert sees tokens (sparse routing is checked in test_moe_mixlora.py); one
    # library LoRA: attention LoRA and the single FFN expert are that LoRA, top-1 of 1 has gate 1
    "mixlora": Case({"num_experts": 2, "top_k": 2}, r"(lora_A|lora_B|router\.gate\.weight)$",
                    one_expert={"top_k": 1}),
    # more: rank-1 experts = rank components of one LoRA; the per-module task embeddings and rank gates train
    "more": Case({"rank": 4}, r"(lora_A|lora_B|router\.gate\.(weight|bias)|router\.task_embedding\.weight)$",
                 one_expert=None, mergeable=True),
    # multilora: N parallel LoRAs with learned scales; no router, no library experts
    "multilora": Case({"num_modules": 3, "rank": 2}, r"(lora_A|lora_B|router\.scale)$", one_expert=None,
                      mergeable=True),
}
# Methods whose checkpoints are plain PEFT adapters (no MoEModel): name -> test file covering the contract.
PEFT_FORMAT_METHODS: dict[str, str] = {
    "lorahub": "test_moe_lorahub.py",
    "base": "test_moe_baselines.py",
    "lora": "test_moe_baselines.py",
    "multitask_lora": "test_moe_baselines.py",
    "merge_linear": "test_moe_baselines.py",
    "merge_ties": "test_moe_baselines.py",
    "merge_dare": "test_moe_baselines.py",
}


def build(method, arch, tiny_libraries, n_experts=3, use_library=False, **overrides):
    lib, tasks = tiny_libraries(arch)
    lm = build_tiny_model(arch, seed=0)
    case = CASES[method]
    experts = tasks[:n_experts] if use_library or case.library else None
    moe = build_method(method, lm, TASKS, config={**case.config, **overrides}, library=lib if experts else None,
                       experts=experts)
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


def test_every_method_has_a_contract_case():
    assert set(all_methods()) == set(CASES) | set(PEFT_FORMAT_METHODS)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("method", sorted(CASES))
def test_save_load_round_trip_identical_logits(tmp_path, tiny_libraries, method, arch):
    lm, moe = build(method, arch, tiny_libraries)
    perturb(moe)
    moe.eval()
    b = batch(lm.tokenizer, task_id=1)
    before = logits(moe, b, task_ids=b["task_ids"])
    moe.save_pretrained(tmp_path / "ckpt")
    loaded = load_method(build_tiny_model(arch, seed=0).model, tmp_path / "ckpt")
    torch.testing.assert_close(logits(loaded, b, task_ids=b["task_ids"]), before, rtol=0, atol=0)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("method", sorted(CASES))
def test_gradients_reach_exactly_the_trained_parameters(tiny_libraries, method, arch):
    lm, moe = build(method, arch, tiny_libraries)
    perturb(moe)  # non-zero B so that A and routers get gradient too
    moe.train()
    moe(**batch(lm.tokenizer)).loss.backward()
    pattern = re.compile(CASES[method].trained)
    expected = {n for n, _ in moe.named_parameters() if pattern.search(n) and ".base_layer." not in n}
    assert expected, "the method must train something"
    assert set(moe.trainable_parameter_names()) == expected
    with_grad = {n for n, p in moe.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert with_grad == expected


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("method", sorted(m for m, c in CASES.items() if c.one_expert is not None))
def test_one_expert_with_gate_one_equals_plain_peft_lora(tiny_libraries, method, arch):
    lib, tasks = tiny_libraries(arch)
    lm, moe = build(method, arch, tiny_libraries, n_experts=1, use_library=True, **CASES[method].one_expert)
    moe.eval()
    entry = Library(lib).get(lm.name, tasks[0])
    peft_model = PeftModel.from_pretrained(build_tiny_model(arch, seed=0).model, str(entry.path)).eval()
    b = batch(lm.tokenizer)
    torch.testing.assert_close(logits(moe, b, task_ids=b["task_ids"]), logits(peft_model, b), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("method", sorted(m for m, c in CASES.items() if c.mergeable))
def test_merged_equals_unmerged_per_task(tiny_libraries, method, arch):
    for task_id, task in enumerate(TASKS):
        lm, moe = build(method, arch, tiny_libraries)
        perturb(moe)
        moe.eval()
        b = batch(lm.tokenizer, task_id=task_id)
        unmerged = logits(moe, b, task_ids=b["task_ids"])
        merged_model = moe.merge_and_unload(task)
        assert not any(getattr(m, "is_loralab_layer", False) for m in merged_model.modules())
        torch.testing.assert_close(logits(merged_model, b), unmerged, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("method", sorted(CASES))
def test_unload_restores_the_base_model(tiny_libraries, method):
    lm, moe = build(method, "llama", tiny_libraries)
    plain = moe.unload()
    fresh = build_tiny_model("llama", seed=0).model
    assert set(plain.state_dict()) == set(fresh.state_dict())
    ids = torch.tensor([[5, 6, 7]])
    torch.testing.assert_close(plain(input_ids=ids).logits, fresh(input_ids=ids).logits)


@pytest.mark.parametrize("method", sorted(m for m, c in CASES.items() if not c.mergeable))
def test_token_routed_methods_refuse_to_merge(tiny_libraries, method):
    from loralab.errors import AdapterError

    _, moe = build(method, "llama", tiny_libraries)
    with pytest.raises(AdapterError, match="cannot be merged"):
        moe.merge_and_unload("toy_a")
