"""LoRA target discovery and attention/ffn classification, by module type rather than name tables."""

from __future__ import annotations

from types import SimpleNamespace

import torch
from peft import LoraConfig, get_peft_model
from peft.tuners.lora import LoraLayer
from torch import nn

from loralab.models import (
    build_tiny_model,
    classify_linear_modules,
    classify_linear_targets,
    find_linear_targets,
    linear_targets_by_kind,
)


def test_known_target_sets() -> None:
    assert find_linear_targets(build_tiny_model("gpt2").model) == ["c_attn", "c_fc", "c_proj"]
    assert find_linear_targets(build_tiny_model("falcon").model) == [
        "dense", "dense_4h_to_h", "dense_h_to_4h", "query_key_value",
    ]
    assert find_linear_targets(build_tiny_model("llama").model) == [
        "down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj",
    ]


def test_shared_suffix_reports_first_occurrence_and_full_names_disambiguate() -> None:
    model = build_tiny_model("gpt2").model
    assert classify_linear_targets(model) == {"c_attn": "attention", "c_fc": "ffn", "c_proj": "attention"}
    full = classify_linear_modules(model)
    assert full["transformer.h.0.attn.c_proj"] == "attention"
    assert full["transformer.h.0.mlp.c_proj"] == "ffn"


def test_block_level_linears_are_ffn() -> None:
    # OPT keeps fc1/fc2 directly in the decoder layer, beside its attention module.
    kinds = classify_linear_targets(build_tiny_model("opt").model)
    assert kinds["fc1"] == kinds["fc2"] == "ffn"
    assert kinds["q_proj"] == kinds["out_proj"] == "attention"


def test_attention_only_lora_from_groups() -> None:
    model = build_tiny_model("gpt2").model
    groups = linear_targets_by_kind(model)
    assert groups["attention"] and groups["ffn"] and not groups["other"]
    peft_model = get_peft_model(model, LoraConfig(r=2, target_modules=groups["attention"]))
    wrapped = {n.removeprefix("base_model.model.") for n, m in peft_model.named_modules() if isinstance(m, LoraLayer)}
    assert wrapped == set(groups["attention"])


class _ToyRouted(nn.Module):
    """A hand-made module: an embedding-tied linear, an MoE router and a feed-forward."""

    def __init__(self) -> None:
        super().__init__()
        self.config = SimpleNamespace(num_local_experts=4)
        self.embed = nn.Embedding(10, 8)
        self.router = nn.Linear(8, 4, bias=False)
        self.mlp = nn.Sequential(nn.Linear(8, 16), nn.Linear(16, 8))
        self.tied = nn.Linear(8, 10, bias=False)
        self.tied.weight = self.embed.weight
        self.extra = nn.Linear(8, 8)


def test_router_and_tied_linears_are_excluded_on_plain_modules() -> None:
    toy = _ToyRouted()
    assert find_linear_targets(toy) == ["0", "1", "extra"]
    kinds = classify_linear_modules(toy)
    assert kinds == {"mlp.0": "other", "mlp.1": "other", "extra": "other"}


def test_targets_ignore_dtype() -> None:
    model = build_tiny_model("qwen2").model.to(torch.bfloat16)
    assert "q_proj" in find_linear_targets(model)
