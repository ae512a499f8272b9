"""LoRA target discovery by module type, so that new architectures need no name table.

Rules (the same for every architecture):

* A target is an `nn.Linear` or a GPT-2 style `transformers.pytorch_utils.Conv1D`.
* The output embedding (`model.get_output_embeddings()`) is never a target, nor is any linear
  whose weight is shared with an embedding (tied weights): LoRA there would also move the
  input embeddings.
* MoE routers are excluded when they are linears whose `out_features` equals the model's expert
  count (`num_local_experts`, `num_experts`, `moe_num_experts` or `n_routed_experts` in the config):
  adapting the router changes which experts run rather than what they compute. In transformers 5
  most routers (Mixtral, Qwen2-MoE) and the fused expert weights are plain parameters, not
  linears, so they are not found at all; a scalar gate such as Qwen2-MoE's `shared_expert_gate`
  (out_features 1) stays a target.
* A target's kind comes from the class name of its parent (the nearest ancestor that is not a
  ModuleList/ModuleDict/Sequential): "Attention"/"Attn" means "attention";
  "MLP"/"FeedForward"/"FFN"/"Expert"/"MoE" means "ffn". A linear whose parent is neither but
  also holds an attention module is that block's feed-forward, so "ffn" (OPT's and XGLM's
  `fc1`/`fc2` live in the decoder layer itself). Anything else is "other".
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from torch import nn
from transformers.pytorch_utils import Conv1D

_ATTENTION = re.compile(r"attention|attn", re.IGNORECASE)
_FFN = re.compile(r"mlp|feedforward|ffn|expert|moe", re.IGNORECASE)
_EXPERT_COUNT_KEYS = ("num_local_experts", "num_experts", "moe_num_experts", "n_routed_experts")
_CONTAINERS = (nn.ModuleList, nn.ModuleDict, nn.Sequential)
LINEAR_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, Conv1D)


def find_linear_targets(model: nn.Module) -> list[str]:
    """Sorted unique last name components of every LoRA-able linear, for `LoraConfig(target_modules=...)`."""
    return sorted({name.rsplit(".", 1)[-1] for name, _ in _iter_targets(model)})


def find_linear_modules(model: nn.Module) -> list[str]:
    """Fully qualified names of every LoRA-able linear (PEFT accepts these as target_modules too)."""
    return [name for name, _ in _iter_targets(model)]


def classify_linear_modules(model: nn.Module) -> dict[str, str]:
    """Fully qualified module name -> "attention" | "ffn" | "other", for every target linear."""
    modules = dict(model.named_modules())
    return {name: _kind(name, modules) for name, _ in _iter_targets(model)}


def classify_linear_targets(model: nn.Module) -> dict[str, str]:
    """Name suffix -> "attention" | "ffn" | "other".

    A suffix used in both kinds (GPT-2's `c_proj` is the attention output and the MLP output)
    is reported with the kind of its first occurrence in module order, which is "attention" for
    every standard block; use `classify_linear_modules` or `linear_targets_by_kind` when that
    difference matters.
    """
    kinds: dict[str, str] = {}
    for name, kind in classify_linear_modules(model).items():
        kinds.setdefault(name.rsplit(".", 1)[-1], kind)
    return dict(sorted(kinds.items()))


def linear_targets_by_kind(model: nn.Module) -> dict[str, list[str]]:
    """Kind -> fully qualified module names; pass one list as target_modules to adapt only that kind."""
    groups: dict[str, list[str]] = {"attention": [], "ffn": [], "other": []}
    for name, kind in classify_linear_modules(model).items():
        groups[kind].append(name)
    return groups


def _iter_targets(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    embedding_ptrs = {
        module.weight.data_ptr() for module in model.modules() if isinstance(module, nn.Embedding)
    }
    expert_count = _expert_count(model)
    for name, module in model.named_modules():
        if not isinstance(module, LINEAR_TYPES) or module is output:
            continue
        if module.weight.data_ptr() in embedding_ptrs:
            continue
        if expert_count is not None and _out_features(module) == expert_count:
            continue
        yield name, module


def _expert_count(model: nn.Module) -> int | None:
    config = getattr(model, "config", None)
    for key in _EXPERT_COUNT_KEYS:
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 1:
            return value
    return None


def _out_features(module: nn.Module) -> int:
    # nn.Linear stores (out, in); Conv1D stores (in, out) and records nf = out.
    return module.nf if isinstance(module, Conv1D) else module.out_features


def _kind(name: str, modules: dict[str, nn.Module]) -> str:
    """Classify by the nearest ancestor that is not a plain container (ModuleList, Sequential, ...)."""
    parts = name.split(".")
    for depth in range(len(parts) - 1, -1, -1):
        parent = modules[".".join(parts[:depth])]
        if not isinstance(parent, _CONTAINERS):
            break
    class_name = type(parent).__name__
    if _ATTENTION.search(class_name):
        return "attention"
    if _FFN.search(class_name):
        return "ffn"
    if any(_ATTENTION.search(type(child).__name__) for child in parent.children()):
        return "ffn"
    return "other"
