"""Tiny random models: every architecture builds, runs, generates and takes LoRA on its discovered targets."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from peft import LoraConfig, get_peft_model
from peft.tuners.lora import LoraLayer

from loralab.errors import UnknownNameError
from loralab.models import (
    TINY_ARCHITECTURES,
    build_tiny_model,
    byte_tokenizer,
    classify_linear_targets,
    find_linear_modules,
    find_linear_targets,
    model_aliases,
)

REQUIRED = ("llama", "qwen2", "mistral", "gemma", "phi3", "gpt2", "opt", "gpt_neox", "falcon", "bloom")
EXPERT_KEYS = ("num_local_experts", "num_experts")
_TOKENIZER = byte_tokenizer()  # shared by the hypothesis test: building one per example is slow


def test_architecture_list() -> None:
    assert len(TINY_ARCHITECTURES) >= 17
    assert set(REQUIRED) <= set(TINY_ARCHITECTURES)
    aliases = model_aliases()
    for arch in TINY_ARCHITECTURES:
        assert "tiny-" + arch.replace("_", "-") in aliases
    assert "tiny-gpt-neox" in aliases and "smollm2-135m" in aliases


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
def test_tiny_architecture(arch: str) -> None:
    loaded = build_tiny_model(arch)
    model, tokenizer = loaded.model, loaded.tokenizer
    assert not model.training
    assert loaded.name == "tiny-" + arch.replace("_", "-") and loaded.revision is None

    batch = tokenizer(["hello world", "hi"], return_tensors="pt", padding=True)
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape == (2, batch["input_ids"].shape[1], len(tokenizer))
    assert torch.isfinite(logits).all()

    generated = model.generate(**batch, max_new_tokens=3, do_sample=False)
    assert generated.shape[1] == batch["input_ids"].shape[1] + 3

    targets = find_linear_targets(model)
    assert targets and targets == sorted(set(targets))
    modules = find_linear_modules(model)
    output = model.get_output_embeddings()
    assert all(dict(model.named_modules())[name] is not output for name in modules)
    embed_ptr = model.get_input_embeddings().weight.data_ptr()
    assert all(dict(model.named_modules())[name].weight.data_ptr() != embed_ptr for name in modules)

    kinds = classify_linear_targets(model)
    assert set(kinds) == set(targets)
    assert "attention" in kinds.values()
    if not any(getattr(model.config, key, None) for key in EXPERT_KEYS):
        assert "ffn" in kinds.values()  # MoE experts are fused parameters in transformers 5, not linears

    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=targets))
    wrapped = {
        name.removeprefix("base_model.model.") for name, m in peft_model.named_modules() if isinstance(m, LoraLayer)
    }
    assert wrapped == set(modules)
    with torch.no_grad():
        assert peft_model(**batch).logits.shape == logits.shape


def test_alias_and_underscore_names_resolve() -> None:
    assert build_tiny_model("tiny-gpt-neox").name == "tiny-gpt-neox"
    assert build_tiny_model("gpt_neox").source.startswith("random-init:gpt_neox")


def test_unknown_architecture() -> None:
    with pytest.raises(UnknownNameError, match="lamma"):
        build_tiny_model("lamma")


def test_seeded_init_is_reproducible_and_leaves_global_rng_alone() -> None:
    state = torch.random.get_rng_state()
    a = build_tiny_model("llama", seed=1).model.state_dict()
    b = build_tiny_model("llama", seed=1).model.state_dict()
    c = build_tiny_model("llama", seed=2).model.state_dict()
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_byte_tokenizer_basics() -> None:
    tokenizer = byte_tokenizer()
    assert len(tokenizer) == 259
    assert (tokenizer.pad_token, tokenizer.bos_token, tokenizer.eos_token) == ("<pad>", "<bos>", "<eos>")
    assert tokenizer.padding_side == "right"
    ids = tokenizer("ab")["input_ids"]
    assert len(ids) == 2 and tokenizer.bos_token_id not in ids  # no automatic BOS
    batch = tokenizer(["a", "abc"], padding=True)["input_ids"]
    assert batch[0][1:] == [tokenizer.pad_token_id] * 2


ROUND_TRIP = ["", "hello world", "  leading spaces", "héllo wörld 😀 \x00\r\n\t", "日本語テキスト", "<eos> as text"]


@pytest.mark.parametrize("text", ROUND_TRIP)
def test_byte_tokenizer_round_trip(text: str) -> None:
    tokenizer = byte_tokenizer()
    ids = tokenizer(text)["input_ids"]
    if "<eos>" not in text:  # special-token text becomes one token, like every HF tokenizer by default
        assert len(ids) == len(text.encode("utf-8"))
    assert tokenizer.decode(ids) == text


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_byte_tokenizer_round_trip_property(text: str) -> None:
    tokenizer = _TOKENIZER
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text


def test_byte_tokenizer_save_and_reload(tmp_path) -> None:
    from transformers import AutoTokenizer

    tokenizer = byte_tokenizer()
    tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    text = "round trip ✓"
    assert reloaded(text)["input_ids"] == tokenizer(text)["input_ids"]
    assert reloaded.pad_token_id == tokenizer.pad_token_id

