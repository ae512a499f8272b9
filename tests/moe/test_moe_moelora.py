"""MOELoRA: the layer formula by hand, the one model-level task gate, per-task behaviour, training and eval."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from helpers import toy_task
from loralab.errors import AdapterError, ConfigError, UserInputError
from loralab.library import LoRAHparams
from loralab.models import build_tiny_model
from loralab.moe.experts import load_library_loras
from loralab.moe.layer import MoELoRALinear
from loralab.moe.methods.moelora import MOELoRAConfig, SharedTaskGate
from loralab.moe.model import load_method
from loralab.moe.routers import TaskEmbeddingRouter
from loralab.moe.state import RoutingState
from loralab.recipes.train import build_method, train_method

TASKS = ["toy_a", "toy_b"]


def tiny_moelora(**config):
    lm = build_tiny_model("llama", seed=0)
    return lm, build_method("moelora", lm, TASKS, config={"num_experts": 4, "rank": 8, **config})


def randomize(moe, seed=0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in moe.named_parameters():
            if p.requires_grad:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)


def ids(lm):
    return lm.tokenizer(["Q: is 3 even?\nA: no"], return_tensors="pt", add_special_tokens=False)["input_ids"]


def test_layer_forward_matches_the_formula_by_hand():
    torch.manual_seed(0)
    n_experts, rank, n_tasks, emb = 3, 2, 2, 5
    base = nn.Linear(6, 4)
    gate = TaskEmbeddingRouter(n_tasks, n_experts, embed_dim=emb)
    state = RoutingState()
    layer = MoELoRALinear(base, SharedTaskGate(gate), n_experts, rank, 0.5, 0.0, state)
    with torch.no_grad():
        layer.lora_B.normal_()
    x = torch.randn(2, 3, 6)
    task_ids = torch.tensor([1, 0])
    state.begin(task_ids=task_ids)
    out = layer(x)

    expected = torch.empty(2, 3, 4)
    for b in range(2):
        logits = gate.gate.weight @ gate.embedding.weight[task_ids[b]]  # W_g Emb(t)
        g = torch.exp(logits) / torch.exp(logits).sum()
        for t in range(3):
            h = base.weight @ x[b, t] + base.bias
            for i in range(n_experts):
                a_i = layer.lora_A[i * rank:(i + 1) * rank]  # (r, in)
                b_i = layer.lora_B[:, i * rank:(i + 1) * rank]  # (out, r)
                h = h + g[i] * 0.5 * (b_i @ (a_i @ x[b, t]))
            expected[b, t] = h
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)


def test_one_gate_for_the_whole_model_computed_once_per_forward():
    lm, moe = tiny_moelora()
    gate = moe.task_gate
    assert gate.embedding.weight.shape == (2, 64) and gate.gate.weight.shape == (4, 64) and gate.gate.bias is None
    layers = [m for m in moe.modules() if isinstance(m, MoELoRALinear)]
    assert len(layers) == len(moe.method_config.modules) > 1
    for layer in layers:
        assert layer.rank == 2 and layer.lora_A.shape[0] == 8 and layer.lora_B.shape[1] == 8  # r = 8 split over 4
        assert not list(layer.router.parameters())  # the gate is not registered under the layers
    keys = moe.adapter_state_dict()
    assert [k for k in keys if "embedding" in k or "gate.weight" in k] == ["task_gate.embedding.weight",
                                                                          "task_gate.gate.weight"]
    moe(input_ids=ids(lm).repeat(2, 1), task_ids=torch.tensor([0, 1]))
    records = moe.state.records
    assert len(records) == len(layers)
    assert all(r.weights is records[0].weights for r in records)  # one gate vector, shared by every layer
    assert records[0].weights.shape == (2, 1, 4)
    torch.testing.assert_close(records[0].weights.sum(-1), torch.ones(2, 1))


def test_paper_init_and_scaling():
    _, moe = tiny_moelora(num_experts=8, rank=16)
    for layer in (m for m in moe.modules() if isinstance(m, MoELoRALinear)):
        assert torch.all(layer.lora_B == 0)
        assert abs(layer.lora_A.std().item() - 0.01) < 0.002
        torch.testing.assert_close(layer.scaling, torch.full((8,), 32.0 / 16))  # alpha / total rank
    assert MOELoRAConfig().to_dict() == {"rank": 16, "num_experts": 8, "alpha": 32.0, "dropout": 0.1,
                                         "targets": "all", "task_embedding_dim": 64, "modules": None}


def test_tasks_route_differently_and_per_sample():
    lm, moe = tiny_moelora()
    randomize(moe)
    moe.eval()
    x = ids(lm)
    with torch.no_grad():
        a = moe(input_ids=x, task_ids=torch.tensor([0])).logits
        b = moe(input_ids=x, task_ids=torch.tensor([1])).logits
        mixed = moe(input_ids=x.repeat(2, 1), task_ids=torch.tensor([1, 0])).logits
        with moe.routing(task="toy_b"):
            default = moe(input_ids=x).logits
    assert not torch.allclose(a, b, atol=1e-4)
    torch.testing.assert_close(mixed[0], b[0])
    torch.testing.assert_close(mixed[1], a[0])
    torch.testing.assert_close(default, b)


def test_generate_with_beams_uses_the_routing_task():
    lm, moe = tiny_moelora()
    randomize(moe)
    moe.eval()
    with moe.routing(task="toy_a"):
        out = moe.generate(input_ids=ids(lm), max_new_tokens=3, num_beams=2, do_sample=False)
    assert out.shape[1] == ids(lm).shape[1] + 3


def test_merge_needs_a_task_when_there_are_several():
    _, moe = tiny_moelora()
    with pytest.raises(AdapterError, match="one task at a time"):
        moe.merge_and_unload()
    with moe.routing(task="toy_b"):
        moe.merge_and_unload()  # the routing default is the task to merge


def test_library_experts_initialise_one_expert_each(tiny_libraries, tmp_path):
    lib, tasks = tiny_libraries("llama")
    lm = build_tiny_model("llama", seed=0)
    moe = build_method("moelora", lm, TASKS, library=lib, experts=tasks)
    loras = load_library_loras(lib, lm.name, tasks)
    r = loras[0].rank
    assert moe.method_config.num_experts == 3 and moe.method_config.rank == 3 * r
    name = moe.method_config.modules[0]
    layer = moe.model.get_submodule(name)
    for i, lora in enumerate(loras):
        a, b = lora.weights[name]
        torch.testing.assert_close(layer.lora_A[i * r:(i + 1) * r], a)
        torch.testing.assert_close(layer.lora_B[:, i * r:(i + 1) * r], b)
        assert layer.scaling[i].item() == pytest.approx(lora.scaling)
    randomize(moe)  # library scalings and expert ranks survive a save / load round trip
    moe.eval().save_pretrained(tmp_path / "ckpt")
    loaded = load_method(build_tiny_model("llama", seed=0).model, tmp_path / "ckpt")
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=ids(lm), task_ids=torch.tensor([1])).logits,
                                   moe(input_ids=ids(lm), task_ids=torch.tensor([1])).logits, rtol=0, atol=0)


def test_train_method_then_eval_the_checkpoint(tmp_path):
    from loralab.recipes.evaluate import run_eval

    lm = build_tiny_model("llama", seed=0)
    tasks = [toy_task("toy_a", n=16), toy_task("toy_b", n=16)]
    out = tmp_path / "moelora"
    info = train_method("moelora", lm, tasks, out, config={"num_experts": 2, "rank": 4},
                        hparams=LoRAHparams(max_steps=2, batch_size=4, learning_rate=1e-2), progress=False)
    assert info["train"]["steps"] == 2 and info["train"]["loss"] == info["train"]["loss"]  # finite, not NaN
    assert not any(getattr(m, "is_loralab_layer", False) for m in lm.model.modules())  # base given back
    loaded = load_method(build_tiny_model("llama", seed=0).model, out)
    assert loaded.tasks == ["toy_a", "toy_b"]
    assert loaded.task_gate.embedding.weight.shape == (2, 64)
    record = run_eval(lm, tasks[1], adapter=out, progress=False, limit=4)
    assert record["adapter"] == str(out) and 0.0 <= record["metrics"]["acc"] <= 1.0


@pytest.mark.parametrize(("config", "message"), [
    ({"rank": 16, "num_experts": 3}, "divisible by num_experts"),
    ({"rank": 0}, "rank must be an integer >= 1"),
    ({"num_experts": 0}, "num_experts must be an integer >= 1"),
    ({"task_embedding_dim": 0}, "task_embedding_dim must be"),
    ({"dropout": 1.0}, "dropout must be in"),
    ({"num_expert": 4}, "num_expert"),
])
def test_config_errors_are_one_line(config, message):
    with pytest.raises(ConfigError, match=message) as info:
        MOELoRAConfig.from_dict(config)
    assert "\n" not in str(info.value)


def test_needs_tasks_and_valid_targets():
    lm = build_tiny_model("llama", seed=0)
    with pytest.raises(UserInputError, match="at least one task"):
        build_method("moelora", lm, [])
    with pytest.raises(ConfigError, match="match no linear"):
        build_method("moelora", lm, TASKS, config={"targets": ["nope_proj"]})
