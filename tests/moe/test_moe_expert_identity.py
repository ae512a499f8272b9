"""Every expert slot of every method built from library LoRAs is that LoRA, with its own alpha / r.

The experts are passed in a permuted order (`ORDER`), the routing is forced onto one slot, and the whole
model's logits must equal the base model with that slot's LoRA folded into its weights. The reference is
computed from the adapter's files alone (adapter_config.json's lora_alpha / r and the safetensors A, B),
not through loralab's expert loader, so a wrong file, a permuted slot, a dropped or shared scaling, or a
transposed Conv1D update all show. The three fixture LoRAs differ in data, seed and alpha (see
conftest.py), and each check also asserts that the other slots' references are far off, so none of this
passes by two experts being the same.

Covered: loramoe, rocket, hydralora, moelora (router forced one-hot), xlora (through its classifier and
scaling pass), mixlora (FFN experts; the attention LoRA is the mean update), mtllora (its one library
LoRA), lorahub (the composition at w = e_i), merge_linear and merge_dare's dare_linear (unit weight).
`lora` copies the adapter byte for byte (test_moe_baselines.py); ties/dare_ties see the last test.
"""

from __future__ import annotations

import json
import re

import pytest
import torch
from helpers import toy_task
from safetensors.torch import load_file

from loralab.library import Library, LoRAHparams
from loralab.models import build_tiny_model
from loralab.moe.layer import MoELoRALinear
from loralab.moe.routers import Router
from loralab.recipes.train import build_method, train_method

from .conftest import SCALINGS

ORDER = (2, 0, 1)  # slot j holds library LoRA ORDER[j]
_KEY = re.compile(r"^base_model\.model\.(?P<module>.+)\.lora_(?P<which>A|B)\.weight$")


def lora_deltas(path) -> dict[str, torch.Tensor]:
    """Module -> (alpha / r) B A in fp32, from a PEFT adapter folder's own files."""
    config = json.loads((path / "adapter_config.json").read_text(encoding="utf-8"))
    factors: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in load_file(str(path / "adapter_model.safetensors")).items():
        match = _KEY.match(key)
        assert match is not None, key
        factors.setdefault(match["module"], {})[match["which"]] = tensor.float()
    scale = config["lora_alpha"] / config["r"]
    return {m: scale * f["B"] @ f["A"] for m, f in factors.items()}


@pytest.fixture(scope="module", params=["llama", "gpt2"])
def setup(request, tiny_libraries):
    """(arch, library, expert names in slot order, per-slot deltas, a padded batch)."""
    arch = request.param
    lib, tasks = tiny_libraries(arch)
    lm = build_tiny_model(arch, seed=0)
    names = [tasks[i] for i in ORDER]
    deltas = [lora_deltas(Library(lib).get(lm.name, name).path) for name in names]
    enc = lm.tokenizer(["Q: is 3 even?\nA: no", "Item #7 has"], return_tensors="pt", padding=True,
                       add_special_tokens=False)
    return arch, lib, names, deltas, dict(enc)


def reference_logits(arch: str, deltas: dict[str, torch.Tensor], batch) -> torch.Tensor:
    """The base model with `deltas` added to its weights (Conv1D stores (in, out))."""
    model = build_tiny_model(arch, seed=0).model.eval()
    with torch.no_grad():
        for name, delta in deltas.items():
            layer = model.get_submodule(name)
            layer.weight += delta.t() if type(layer).__name__ == "Conv1D" else delta
        return model(**batch).logits


def check_slot(arch, model, batch, want: dict[str, torch.Tensor], others: list[dict[str, torch.Tensor]],
               **extra) -> None:
    """`model` (called with `extra` too) equals the base plus `want`, and is far from the base plus each other."""
    with torch.no_grad():
        got = model(**batch, **extra).logits
    torch.testing.assert_close(got, reference_logits(arch, want, batch), rtol=1e-4, atol=1e-5)
    for other in others:
        assert (got - reference_logits(arch, other, batch)).abs().max() > 1e-3  # the check can tell experts apart


class OneHot(Router):
    """Forces every token onto expert `slot` (replaces a layer's or block's router)."""

    def __init__(self, num_experts: int, slot: int) -> None:
        super().__init__(num_experts)
        self.slot, self.top_k = slot, 1

    def forward(self, x, state):
        gates = torch.zeros(*x.shape[:-1], self.num_experts, device=x.device)
        gates[..., self.slot] = 1.0
        return gates, gates


def wrapped(moe) -> dict[str, MoELoRALinear]:
    """Original module name -> its MoE layer (MixLoRA's FFN linears move under `<block>.ffn.`, so by `.name`)."""
    return {m.name: m for m in moe.model.modules() if isinstance(m, MoELoRALinear)}


def force_slot(moe, slot: int) -> None:
    from loralab.moe.methods.mixlora import ExpertLoRALinear, MixLoRABlock

    for module in moe.model.modules():
        if isinstance(module, MixLoRABlock) or (isinstance(module, MoELoRALinear)
                                               and not isinstance(module, ExpertLoRALinear)):
            module.router = OneHot(module.router.num_experts, slot)


def test_fixture_loras_are_distinct_with_their_own_scalings(setup, tiny_libraries):
    arch, lib, names, deltas, _ = setup
    lm_name = build_tiny_model(arch).name
    for name in names:
        config = json.loads((Library(lib).get(lm_name, name).path / "adapter_config.json").read_text("utf-8"))
        assert config["lora_alpha"] / config["r"] == SCALINGS[tiny_libraries(arch)[1].index(name)]
    assert deltas[0].keys() == deltas[1].keys() == deltas[2].keys()
    for module in deltas[0]:
        norms = [d[module].norm().item() for d in deltas]
        assert min(norms) > 0, module
        for i in range(3):
            for j in range(i + 1, 3):
                assert not torch.allclose(deltas[i][module], deltas[j][module], atol=1e-6), module


@pytest.mark.parametrize("method, config", [
    ("loramoe", {}),  # FFN linears
    ("rocket", {"targets": "all"}),
    ("hydralora", {}),
    ("moelora", {}),
])
@pytest.mark.parametrize("slot", range(3))
def test_token_and_task_routed_experts(setup, method, config, slot):
    arch, lib, names, deltas, batch = setup
    moe = build_method(method, build_tiny_model(arch, seed=0), ["toy_a"], config=config, library=lib,
                       experts=names).eval()
    layers = wrapped(moe)
    assert layers and all(layer.num_experts == 3 for layer in layers.values())
    force_slot(moe, slot)

    def pick(d):  # only the linears the method wraps
        return {name: d[name] for name in layers}

    check_slot(arch, moe, batch, pick(deltas[slot]), [pick(d) for i, d in enumerate(deltas) if i != slot],
               task_ids=torch.zeros(2, dtype=torch.long))


@pytest.mark.parametrize("slot", range(3))
def test_xlora_classifier_slot_is_its_expert(setup, slot):
    """Through the real scaling pass: a classifier whose logits pick `slot` gives that LoRA on every module."""
    arch, lib, names, deltas, batch = setup
    moe = build_method("xlora", build_tiny_model(arch, seed=0), ["toy_a"], config={"depth": 1}, library=lib,
                       experts=names).eval()
    head = moe.xlora_classifier.net[-1]
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
        head.bias[slot] = 1e4  # softmax is exactly one-hot in fp32
    check_slot(arch, moe, batch, deltas[slot], [d for i, d in enumerate(deltas) if i != slot])


@pytest.mark.parametrize("slot", range(3))
def test_mixlora_ffn_experts_and_attention_mean(setup, slot):
    """FFN expert `slot` is that LoRA on the FFN linears; the attention LoRA is the mean of all three updates."""
    arch, lib, names, deltas, batch = setup
    moe = build_method("mixlora", build_tiny_model(arch, seed=0), ["toy_a"], library=lib, experts=names).eval()
    layers = wrapped(moe)
    ffn = [n for n, layer in layers.items() if layer.num_experts == 3]
    attention = [n for n, layer in layers.items() if layer.num_experts == 1]
    assert ffn and attention
    force_slot(moe, slot)

    def expected(k):
        mean = {n: sum(d[n] for d in deltas) / 3 for n in attention}
        return {**{n: deltas[k][n] for n in ffn}, **mean}

    check_slot(arch, moe, batch, expected(slot), [expected(i) for i in range(3) if i != slot])


@pytest.mark.parametrize("slot", range(3))
def test_mtllora_starts_from_its_one_library_lora(setup, slot):
    arch, lib, names, deltas, batch = setup
    moe = build_method("mtllora", build_tiny_model(arch, seed=0), ["toy_a"], config={"targets": "all", "num_B": 1},
                       library=lib, experts=[names[slot]]).eval()
    check_slot(arch, moe, batch, deltas[slot], [d for i, d in enumerate(deltas) if i != slot],
               task_ids=torch.zeros(2, dtype=torch.long))


@pytest.mark.parametrize("slot", range(3))
def test_lorahub_unit_weight_gives_that_expert(setup, slot):
    """The composition LoraHub searches over (and saves): w = e_slot is that LoRA, at its own scaling."""
    from loralab.moe.experts import load_library_loras
    from loralab.moe.methods.lorahub import LoRAHubObjective

    arch, lib, names, deltas, batch = setup
    lm = build_tiny_model(arch, seed=0)
    objective = LoRAHubObjective(lm.model, load_library_loras(lib, lm.name, names), [], l1=0.0, batch_size=1,
                                 pad_token_id=0)
    objective.set_weights([1.0 if i == slot else 0.0 for i in range(3)])
    check_slot(arch, objective.peft_model.eval(), batch, deltas[slot], [d for i, d in enumerate(deltas) if i != slot])


# The sign-electing merges (ties, dare_ties) are left out: PEFT elects signs and counts entries before
# weighting, so zero-weighted LoRAs still shape the result; test_moe_baselines.py compares them with PEFT.
@pytest.mark.parametrize("method, config", [
    ("merge_linear", {}),
    ("merge_dare", {"combination_type": "dare_linear", "density": 1.0}),  # density 1: nothing dropped
])
def test_merge_with_a_unit_weight_saves_that_expert(tmp_path, setup, method, config):
    arch, lib, names, deltas, _ = setup
    slot = 1
    weights = [1.0 if i == slot else 0.0 for i in range(3)]
    train_method(method, build_tiny_model(arch, seed=0), [toy_task("toy_a", n=8)], tmp_path / "m", library=lib,
                 experts=names, config={**config, "weights": weights}, hparams=LoRAHparams(max_steps=1),
                 progress=False)
    saved = lora_deltas(tmp_path / "m")
    assert set(saved) == set(deltas[slot])
    for module, delta in deltas[slot].items():
        torch.testing.assert_close(saved[module], delta, rtol=1e-4, atol=1e-6)
        assert not torch.allclose(saved[module], deltas[0][module], atol=1e-4)
