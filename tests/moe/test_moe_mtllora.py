"""MTL-LoRA: the layer formula by hand, shapes and init, per-task behaviour, library warm start, training and eval."""

from __future__ import annotations

import math

import pytest
import torch
from peft import PeftModel
from torch import nn

from helpers import toy_task
from loralab.errors import ConfigError, UserInputError
from loralab.library import Library, LoRAHparams
from loralab.models import build_tiny_model
from loralab.moe.methods.mtllora import MTLLoRAConfig, MTLLoRALinear
from loralab.moe.model import load_method
from loralab.moe.state import RoutingState
from loralab.recipes.train import build_method, train_method

TASKS = ["toy_a", "toy_b"]


def layers(moe):
    return [m for m in moe.modules() if isinstance(m, MTLLoRALinear)]


def randomize(moe, seed=0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in moe.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=gen) * 0.1)


def ids(lm):
    return lm.tokenizer(["Q: is 3 even?\nA: no"], return_tensors="pt", add_special_tokens=False)["input_ids"]


@pytest.mark.parametrize("diagonal", [False, True])
def test_layer_forward_matches_the_formula_by_hand(diagonal):
    torch.manual_seed(0)
    n_tasks, rank, heads, tau, s = 3, 2, 3, 0.5, 1.5
    base = nn.Linear(5, 4)
    state = RoutingState()
    layer = MTLLoRALinear(base, n_tasks, rank, heads, s, tau, 0.0, state, diagonal=diagonal)
    with torch.no_grad():
        for p in (layer.lora_lambdas, layer.lora_B, layer.lora_B_w):
            p.normal_()
    x = torch.randn(2, 3, 5)
    task_ids = torch.tensor([2, 0])
    state.begin(task_ids=task_ids)
    out = layer(x)

    expected = torch.empty(2, 3, 4)
    for b in range(2):
        t = task_ids[b]
        e = torch.exp(layer.lora_B_w[t] / tau)
        w = e / e.sum()
        task_b = sum(w[j] * layer.lora_B[j] for j in range(heads))  # (out, r)
        lam = torch.diag(layer.lora_lambdas[t]) if diagonal else layer.lora_lambdas[t]  # (r, r)
        for i in range(3):
            expected[b, i] = base.weight @ x[b, i] + base.bias + s * (task_b @ (lam @ (layer.lora_A @ x[b, i])))
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    delta = layer.task_delta(0)  # the merge delta is the same update as a matrix
    torch.testing.assert_close(base(x[1]) + x[1] @ delta.t(), out[1], rtol=1e-5, atol=1e-6)


def test_shapes_init_and_trained_parameters():
    lm = build_tiny_model("llama", seed=0)
    moe = build_method("mtllora", lm, TASKS)
    cfg = moe.method_config
    assert (cfg.rank, cfg.alpha, cfg.num_B, cfg.temperature, cfg.diagonal) == (8, 16.0, 3, 0.1, False)
    assert {m.rsplit(".", 1)[-1] for m in cfg.modules} == {"q_proj", "k_proj", "v_proj", "o_proj"}
    for layer in layers(moe):
        out_f, in_f = layer.base_layer.weight.shape
        assert layer.lora_A.shape == (8, in_f)
        assert layer.lora_B.shape == (3, out_f, 8) and torch.all(layer.lora_B == 0)
        torch.testing.assert_close(layer.lora_lambdas.data, torch.eye(8).repeat(2, 1, 1))
        assert layer.lora_B_w.shape == (2, 3) and layer.lora_B_w.abs().max() <= 1 / math.sqrt(3)
        assert layer.scaling == 2.0 and layer.temperature == 0.1
        assert not layer.base_layer.weight.requires_grad
    trained = ("lora_A", "lora_B", "lora_lambdas", "lora_B_w")
    expected = {n for n, _ in moe.named_parameters() if n.rsplit(".", 1)[-1] in trained}
    assert set(moe.trainable_parameter_names()) == expected
    diag = build_method("mtllora", build_tiny_model("llama", seed=0), TASKS, config={"diagonal": True})
    assert all(torch.equal(m.lora_lambdas.data, torch.ones(2, 8)) for m in layers(diag))
    x = ids(lm)
    with torch.no_grad():
        torch.testing.assert_close(moe(input_ids=x, task_ids=torch.tensor([1])).logits,
                                   build_tiny_model("llama", seed=0).model(input_ids=x).logits)  # B = 0


def test_tasks_route_differently_and_per_sample():
    lm = build_tiny_model("llama", seed=0)
    moe = build_method("mtllora", lm, TASKS)
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
    records = moe.state.records
    assert len(records) == len(layers(moe)) and records[0].weights.shape == (1, 1, 3)


def test_without_a_task_the_error_says_how_to_give_one():
    lm = build_tiny_model("llama", seed=0)
    moe = build_method("mtllora", lm, TASKS)
    with pytest.raises(ValueError, match="routes by task"):
        moe(input_ids=ids(lm))


def test_one_library_lora_warm_starts_every_head_and_task(tiny_libraries):
    lib, tasks = tiny_libraries("llama")
    lm = build_tiny_model("llama", seed=0)
    moe = build_method("mtllora", lm, TASKS, config={"targets": "all"}, library=lib, experts=tasks[:1]).eval()
    peft_model = PeftModel.from_pretrained(build_tiny_model("llama", seed=0).model,
                                           str(Library(lib).get(lm.name, tasks[0]).path)).eval()
    x = ids(lm)
    with torch.no_grad():
        want = peft_model(input_ids=x).logits
        for task_id in (0, 1):  # num_B = 3 equal heads and Λ = I: every task computes the library LoRA
            torch.testing.assert_close(moe(input_ids=x, task_ids=torch.tensor([task_id])).logits, want,
                                       rtol=1e-4, atol=1e-5)
    with pytest.raises(UserInputError, match="one library LoRA"):
        build_method("mtllora", build_tiny_model("llama", seed=0), TASKS, library=lib, experts=tasks[:2])


def test_train_method_then_eval_the_checkpoint(tmp_path):
    from loralab.recipes.evaluate import run_eval

    lm = build_tiny_model("llama", seed=0)
    tasks = [toy_task("toy_a", n=16), toy_task("toy_b", n=16)]
    out = tmp_path / "mtllora"
    info = train_method("mtllora", lm, tasks, out, config={"rank": 4, "num_B": 2},
                        hparams=LoRAHparams(max_steps=2, batch_size=4, learning_rate=1e-2), progress=False)
    assert info["train"]["steps"] == 2 and info["train"]["loss"] == info["train"]["loss"]  # finite, not NaN
    assert not any(getattr(m, "is_loralab_layer", False) for m in lm.model.modules())  # base given back
    loaded = load_method(build_tiny_model("llama", seed=0).model, out)
    assert loaded.tasks == ["toy_a", "toy_b"]
    assert any(layer.lora_B.abs().sum() > 0 for layer in layers(loaded))  # training moved B off zero
    record = run_eval(lm, tasks[0], adapter=out, progress=False, limit=4)
    assert record["adapter"] == str(out) and 0.0 <= record["metrics"]["acc"] <= 1.0


@pytest.mark.parametrize(("config", "message"), [
    ({"rank": 0}, "rank must be an integer >= 1"),
    ({"num_B": 0}, "num_B must be an integer >= 1"),
    ({"temperature": 0.0}, "temperature must be > 0"),
    ({"dropout": -0.1}, "dropout must be in"),
    ({"num_b": 2}, "num_b"),
])
def test_config_errors_are_one_line(config, message):
    with pytest.raises(ConfigError, match=message) as info:
        MTLLoRAConfig.from_dict(config)
    assert "\n" not in str(info.value)


def test_needs_tasks():
    with pytest.raises(UserInputError, match="at least one task"):
        build_method("mtllora", build_tiny_model("llama", seed=0), [])
