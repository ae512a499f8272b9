"""MixLoRA: block forward against a hand-written per-token top-2 mixture, aux loss, padding, library init,
unsupported architectures, config validation, and a train -> eval smoke run."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers import toy_task

from loralab.recipes.evaluate import run_eval
from loralab.errors import ConfigError
from loralab.library import LoRAHparams
from loralab.models import build_tiny_model
from loralab.moe.losses import load_balancing_loss
from loralab.moe.methods.mixlora import ExpertLoRALinear, MixLoRABlock, MixLoRAConfig
from loralab.recipes.train import build_method, train_method


def perturb(moe, std=0.05):
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in moe.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=gen) * std)


def mixlora(arch="llama", **config):
    lm = build_tiny_model(arch, seed=0)
    moe = build_method("mixlora", lm, ["toy"], config={"dropout": 0.0, **config})
    perturb(moe)
    return lm, moe


def padded_batch(tokenizer):
    enc = tokenizer(["Q: is 3 even?\nA: no", "Q: 10?"], return_tensors="pt", padding=True, add_special_tokens=False)
    assert (enc["attention_mask"] == 0).any()
    return {**enc, "labels": enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)}


def lora_linear(layer: ExpertLoRALinear, i: int, x: torch.Tensor) -> torch.Tensor:
    """W0 x + b + s_i B_i A_i x written out for expert i."""
    r, base = layer.rank, layer.base_layer
    a, b = layer.lora_A[i * r:(i + 1) * r], layer.lora_B[:, i * r:(i + 1) * r]
    bias = base.bias if base.bias is not None else 0.0
    return x @ base.weight.t() + bias + layer.scaling[i] * (x @ a.t() @ b.t())


def test_defaults_follow_the_template():
    cfg = MixLoRAConfig()
    assert (cfg.rank, cfg.alpha, cfg.dropout, cfg.num_experts, cfg.top_k) == (16, 32.0, 0.05, 8, 2)
    assert (cfg.aux_loss_coef, cfg.router_init_std, cfg.jitter) == (0.001, 0.02, 0.0)


def test_structure_llama():
    _, moe = mixlora(num_experts=4)
    layer = moe.model.model.layers[0]
    assert isinstance(layer.mlp, MixLoRABlock)
    experts = [getattr(layer.mlp.ffn, n) for n in ("gate_proj", "up_proj", "down_proj")]
    attention = [getattr(layer.self_attn, n) for n in ("q_proj", "k_proj", "v_proj", "o_proj")]
    assert all(isinstance(m, ExpertLoRALinear) and m.num_experts == 4 for m in experts)
    assert all(isinstance(m, ExpertLoRALinear) and m.num_experts == 1 for m in attention)
    router = layer.mlp.router
    assert router.gate.weight.shape == (4, 64) and router.gate.weight.dtype == torch.float32
    assert router.gate.bias is None and (router.top_k, router.renormalize) == (2, True)
    assert moe.method_config.blocks == ("model.layers.0.mlp", "model.layers.1.mlp")


def test_router_init_is_normal_002_and_lora_b_zero():
    lm = build_tiny_model("llama", seed=0)
    moe = build_method("mixlora", lm, ["toy"], config={"num_experts": 8})
    gates = torch.cat([m.router.gate.weight.flatten() for m in moe.modules() if isinstance(m, MixLoRABlock)])
    assert gates.mean().abs() < 0.005 and 0.015 < gates.std() < 0.025
    assert all((m.lora_B == 0).all() for m in moe.modules() if isinstance(m, ExpertLoRALinear))


def test_block_forward_equals_hand_written_top2_mixture():
    _, moe = mixlora(num_experts=4, top_k=2)
    moe.eval()
    block = moe.model.model.layers[0].mlp
    ffn = block.ffn
    x = torch.randn(2, 5, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got = block(x)
        expected = torch.zeros_like(x)
        for b in range(2):
            for t in range(5):
                xt = x[b, t]
                probs = torch.softmax(xt @ block.router.gate.weight.t(), dim=-1)
                top = probs.topk(2)
                weights = top.values / top.values.sum()  # renormalised
                for w, i in zip(weights, top.indices.tolist()):
                    hidden = F.silu(lora_linear(ffn.gate_proj, i, xt)) * lora_linear(ffn.up_proj, i, xt)
                    expected[b, t] += w * lora_linear(ffn.down_proj, i, hidden)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_block_forward_gpt2_conv1d_with_bias():
    _, moe = mixlora("gpt2", num_experts=3, top_k=2)
    moe.eval()
    block = moe.model.transformer.h[1].mlp
    ffn = block.ffn
    x = torch.randn(1, 4, 64, generator=torch.Generator().manual_seed(2))

    def conv(layer, i, v):  # Conv1D stores (in, out): W0 x = x @ weight
        r, base = layer.rank, layer.base_layer
        a, b = layer.lora_A[i * r:(i + 1) * r], layer.lora_B[:, i * r:(i + 1) * r]
        return v @ base.weight + base.bias + layer.scaling[i] * (v @ a.t() @ b.t())

    with torch.no_grad():
        got = block(x)
        probs = torch.softmax(x @ block.router.gate.weight.t(), dim=-1)
        expected = torch.zeros_like(x)
        for t in range(4):
            top = probs[0, t].topk(2)
            for w, i in zip(top.values / top.values.sum(), top.indices.tolist()):
                expected[0, t] += w * conv(ffn.c_proj, i, ffn.act(conv(ffn.c_fc, i, x[0, t])))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_routing_is_sparse_each_expert_sees_only_its_tokens():
    _, moe = mixlora(num_experts=4, top_k=2)
    moe.eval()
    block = moe.model.model.layers[0].mlp
    seen = []
    handle = block.ffn.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[1]))
    x = torch.randn(2, 6, 64)
    with torch.no_grad():
        block(x)
    handle.remove()
    assert sum(seen) == 2 * 6 * 2  # each token runs through exactly k=2 experts
    assert len(seen) <= 4


def test_attention_lora_is_a_plain_lora():
    _, moe = mixlora()
    moe.eval()
    q = moe.model.model.layers[0].self_attn.q_proj
    x = torch.randn(3, 64)
    with torch.no_grad():
        torch.testing.assert_close(q(x), lora_linear(q, 0, x))


def test_aux_loss_is_coef_times_load_balancing_of_recorded_logits_and_only_in_training():
    lm, moe = mixlora(num_experts=4, top_k=2)
    b = padded_batch(lm.tokenizer)
    moe.train()
    out = moe(**b)
    records = moe.state.records
    assert [r.name for r in records] == ["model.layers.0.mlp", "model.layers.1.mlp"]
    assert all(r.logits.shape == (2, b["input_ids"].shape[1], 4) and r.top_k == 2 for r in records)
    assert all(((r.weights > 0).sum(-1) == 2).all() for r in records)
    expected = 0.001 * load_balancing_loss([r.logits for r in records], 2, b["attention_mask"])
    torch.testing.assert_close(out.aux_loss, expected)
    lm_loss = moe.model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], labels=b["labels"]).loss
    torch.testing.assert_close(out.loss, lm_loss + expected)
    moe.eval()
    assert moe(**b).get("aux_loss") is None


def test_aux_loss_coefficient_zero_turns_it_off():
    lm, moe = mixlora(aux_loss_coef=0.0)
    moe.train()
    assert moe(**padded_batch(lm.tokenizer)).get("aux_loss") is None


def test_aux_loss_masks_padding():
    lm, moe = mixlora(num_experts=4, top_k=2)
    moe.train()
    b = padded_batch(lm.tokenizer)
    aux = moe(**b).aux_loss
    logits = [r.logits for r in moe.state.records]
    # the padded positions hold other tokens now: real tokens (and so the masked loss) are unchanged
    other = {**b, "input_ids": b["input_ids"].masked_fill(b["attention_mask"] == 0, 7)}
    torch.testing.assert_close(moe(**other).aux_loss, aux)
    unmasked = 0.001 * load_balancing_loss(logits, 2, None)
    assert not torch.isclose(unmasked, aux)


def test_jitter_only_in_training():
    lm, moe = mixlora(jitter=0.2)
    b = padded_batch(lm.tokenizer)
    moe.eval()
    with torch.no_grad():
        assert torch.equal(moe(**b).logits, moe(**b).logits)
        moe.train()
        assert not torch.equal(moe(**b).logits, moe(**b).logits)


@pytest.mark.parametrize("arch", ["gpt2", "falcon"])
def test_unload_unwraps_nested_layers(arch):
    _, moe = mixlora(arch)
    plain = moe.unload()
    assert not any(getattr(m, "is_loralab_layer", False) for m in plain.modules())
    fresh = build_tiny_model(arch, seed=0).model
    assert set(plain.state_dict()) == set(fresh.state_dict())
    ids = torch.tensor([[5, 6, 7]])
    torch.testing.assert_close(plain(input_ids=ids).logits, fresh(input_ids=ids).logits)


def test_library_init_experts_and_mean_attention(tiny_libraries):
    from loralab.moe.experts import load_library_loras

    lib, tasks = tiny_libraries("llama")
    lm = build_tiny_model("llama", seed=0)
    moe = build_method("mixlora", lm, ["toy"], library=lib, experts=tasks[:2])
    cfg = moe.method_config
    loras = load_library_loras(lib, lm.name, tasks[:2])
    r = loras[0].rank
    assert (cfg.num_experts, cfg.rank, cfg.attention_rank) == (2, r, 2 * r)
    gate = moe.model.model.layers[0].mlp.ffn.gate_proj
    for i, lora in enumerate(loras):
        a, b = lora.weights["model.layers.0.mlp.gate_proj"]
        torch.testing.assert_close(gate.lora_A[i * r:(i + 1) * r], a)
        torch.testing.assert_close(gate.lora_B[:, i * r:(i + 1) * r], b)
    q = moe.model.model.layers[1].self_attn.q_proj
    mean = sum(lo.scaling * lo.weights["model.layers.1.self_attn.q_proj"][1]
               @ lo.weights["model.layers.1.self_attn.q_proj"][0] for lo in loras) / 2
    torch.testing.assert_close(q.expert_delta(torch.ones(1)), mean)


def test_library_top_k_above_expert_count_is_a_config_error(tiny_libraries):
    lib, tasks = tiny_libraries("llama")
    with pytest.raises(ConfigError, match="top_k=2 is more than the 1 library experts"):
        build_method("mixlora", build_tiny_model("llama"), ["toy"], library=lib, experts=tasks[:1])


@pytest.mark.parametrize("arch", ["opt", "mixtral"])
def test_architectures_without_an_ffn_module_are_refused(arch):
    with pytest.raises(ConfigError, match="mixlora: "):
        build_method("mixlora", build_tiny_model(arch), ["toy"])


@pytest.mark.parametrize("config, needle", [
    ({"num_experts": 2, "top_k": 3}, "top_k=3 is more than num_experts=2"),
    ({"top_k": 0}, "top_k must be an integer >= 1"),
    ({"jitter": 1.0}, "jitter must be in"),
    ({"aux_loss_coef": -1.0}, "aux_loss_coef must be >= 0"),
    ({"router_init_std": 0.0}, "router_init_std must be > 0"),
    ({"dropout": 1.0}, "dropout must be in"),
])
def test_config_validation_is_one_line(config, needle):
    with pytest.raises(ConfigError, match=needle) as info:
        MixLoRAConfig.from_dict(config)
    assert "\n" not in str(info.value)


def test_train_then_eval_the_checkpoint(tmp_path):
    task = toy_task("toy_a", n=16)
    info = train_method("mixlora", build_tiny_model("llama"), [task], tmp_path / "ckpt",
                        config={"num_experts": 4, "rank": 4}, hparams=LoRAHparams(max_steps=2, batch_size=4),
                        progress=False)
    assert info["train"]["steps"] == 2
    record = run_eval(build_tiny_model("llama"), task, adapter=tmp_path / "ckpt", progress=False)
    assert record["n"] == 4 and 0.0 <= record["metrics"]["acc"] <= 1.0


def test_library_initialised_checkpoint_round_trip(tmp_path, tiny_libraries):
    from loralab.moe.model import load_method

    lib, tasks = tiny_libraries("llama")
    lm = build_tiny_model("llama", seed=0)
    moe = build_method("mixlora", lm, ["toy"], library=lib, experts=tasks[:3]).eval()
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.no_grad():
        before = moe(input_ids=ids).logits
    moe.save_pretrained(tmp_path / "ckpt")
    loaded = load_method(build_tiny_model("llama", seed=0).model, tmp_path / "ckpt")
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=ids).logits, before, rtol=0, atol=0)
    assert [e["task"] for e in loaded.experts] == tasks[:3]
