"""HydraLoRA: layer forward against the formula written out per head, structure and init, exact library
initialisation, no auxiliary loss, config validation, and a train -> eval smoke run."""

from __future__ import annotations

import pytest
import torch
from helpers import toy_task

from loralab.recipes.evaluate import run_eval
from loralab.errors import ConfigError
from loralab.library import LoRAHparams
from loralab.models import build_tiny_model
from loralab.moe.layer import MoELoRALinear
from loralab.moe.methods.hydralora import HydraLoRAConfig
from loralab.recipes.train import build_method, train_method


def hydra(arch="llama", library=None, experts=None, **config):
    lm = build_tiny_model(arch, seed=0)
    return lm, build_method("hydralora", lm, ["toy"], config={"dropout": 0.0, **config}, library=library,
                            experts=experts)


def perturb(moe):
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in moe.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=gen) * 0.05)


def test_defaults_follow_the_official_script():
    cfg = HydraLoRAConfig()
    assert (cfg.rank, cfg.alpha, cfg.dropout, cfg.num_experts, cfg.targets) == (4, 32.0, 0.05, 4, "ffn")


def test_structure_shared_a_heads_zero_and_ffn_targets():
    lm, moe = hydra(num_experts=4)
    layers = {n: m for n, m in moe.model.named_modules() if isinstance(m, MoELoRALinear)}
    assert sorted({n.rsplit(".", 1)[-1] for n in layers}) == ["down_proj", "gate_proj", "up_proj"]
    up = layers["model.layers.0.mlp.up_proj"]
    assert up.shared_a and up.lora_A.shape == (4, 64) and up.lora_B.shape == (128, 4 * 4)
    assert (up.lora_B == 0).all() and up.lora_A.abs().sum() > 0
    assert up.router.gate.weight.shape == (4, 64) and up.router.gate.bias is None and up.router.top_k is None
    assert torch.allclose(up.scaling, torch.full((4,), 32.0 / 4))
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():  # every B is zero: the base model's output
        base = build_tiny_model("llama", seed=0).model(input_ids=ids).logits
        torch.testing.assert_close(moe(input_ids=ids).logits, base)


@pytest.mark.parametrize("arch, name", [("llama", "model.layers.1.mlp.down_proj"),
                                        ("gpt2", "transformer.h.0.mlp.c_fc")])
def test_layer_forward_equals_the_formula_per_head(arch, name):
    _, moe = hydra(arch, num_experts=3)
    perturb(moe)
    moe.eval()
    layer = moe.model.get_submodule(name)
    base = layer.base_layer
    in_features = layer.lora_A.shape[1]
    x = torch.randn(2, 3, in_features, generator=torch.Generator().manual_seed(1))
    w0x = base(x)
    r = layer.rank
    with torch.no_grad():
        gates = torch.softmax(x @ layer.router.gate.weight.t(), dim=-1)  # dense, no top-k
        expected = w0x.clone()
        for i in range(3):
            b_i = layer.lora_B[:, i * r:(i + 1) * r]
            expected += gates[..., i:i + 1] * (32.0 / r) * (x @ layer.lora_A.t() @ b_i.t())  # one shared A
        torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-6)


def test_library_init_is_exact_with_several_loras(tiny_libraries):
    from loralab.moe.experts import load_library_loras

    lib, tasks = tiny_libraries("llama")
    lm, moe = hydra(library=lib, experts=tasks[:2])
    loras = load_library_loras(lib, lm.name, tasks[:2])
    r = loras[0].rank
    assert (moe.method_config.num_experts, moe.method_config.rank) == (2, 2 * r)
    name = "model.layers.0.mlp.gate_proj"
    layer = moe.model.get_submodule(name)
    with torch.no_grad():
        layer.router.gate.weight.normal_()  # clearly non-uniform gates
    moe.eval()
    x = torch.randn(2, 3, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        gates = torch.softmax(x @ layer.router.gate.weight.t(), dim=-1)
        expected = layer.base_layer(x)
        for i, lora in enumerate(loras):
            a, b = lora.weights[name]
            expected += gates[..., i:i + 1] * lora.scaling * (x @ a.t() @ b.t())
        torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-6)


def test_no_aux_loss_and_router_records():
    lm, moe = hydra(num_experts=3)
    moe.train()
    ids = torch.tensor([[5, 6, 7, 8], [9, 10, 0, 0]])
    out = moe(input_ids=ids, attention_mask=(ids > 0).long(), labels=ids)
    assert out.get("aux_loss") is None
    assert len(moe.state.records) == 2 * 3 and all(r.weights.shape == (2, 4, 3) for r in moe.state.records)


@pytest.mark.parametrize("config, needle", [
    ({"num_experts": 0}, "num_experts must be an integer >= 1"),
    ({"rank": 0}, "rank must be an integer >= 1"),
    ({"dropout": 1.0}, "dropout must be in"),
    ({"alpha": 0.0}, "alpha must be > 0"),
])
def test_config_validation_is_one_line(config, needle):
    with pytest.raises(ConfigError, match=needle) as info:
        HydraLoRAConfig.from_dict(config)
    assert "\n" not in str(info.value)


def test_train_then_eval_the_checkpoint(tmp_path):
    task = toy_task("toy_a", n=16)
    info = train_method("hydralora", build_tiny_model("llama"), [task], tmp_path / "ckpt",
                        hparams=LoRAHparams(max_steps=2, batch_size=4), progress=False)
    assert info["train"]["steps"] == 2
    record = run_eval(build_tiny_model("llama"), task, adapter=tmp_path / "ckpt", progress=False)
    assert record["n"] == 4 and 0.0 <= record["metrics"]["acc"] <= 1.0


def test_library_initialised_checkpoint_round_trip(tmp_path, tiny_libraries):
    from loralab.moe.model import load_method

    lib, tasks = tiny_libraries("llama")
    _, moe = hydra(library=lib, experts=tasks[:2])
    moe.eval()
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.no_grad():
        before = moe(input_ids=ids).logits
    moe.save_pretrained(tmp_path / "ckpt")
    loaded = load_method(build_tiny_model("llama", seed=0).model, tmp_path / "ckpt")
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=ids).logits, before, rtol=0, atol=0)
