"""Helpers shared by the method files: pick target linears by kind, inject layers, freeze the base."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import nn

from loralab.errors import ConfigError
from loralab.models import classify_linear_modules, find_linear_modules
from loralab.moe.model import replace_module

TARGET_KINDS = ("all", "ffn", "attention")


def select_targets(model: nn.Module, targets: str | Sequence[str]) -> list[str]:
    """Qualified names of the linears to wrap.

    `targets` is a kind ("all", "ffn", "attention"; found by module type, see `loralab.models`) or a list
    of name suffixes (e.g. ["q_proj", "v_proj"]) matched against the linears found by type.
    """
    kinds = classify_linear_modules(model)
    if isinstance(targets, str):
        if targets not in TARGET_KINDS:
            raise ConfigError(f"targets must be one of {TARGET_KINDS} or a list of module names, got {targets!r}")
        chosen = [n for n, k in kinds.items() if targets == "all" or k == targets]
    else:
        chosen = [n for n in find_linear_modules(model) if n.rsplit(".", 1)[-1] in set(targets)]
    if not chosen:
        suffixes = sorted({n.rsplit(".", 1)[-1] for n in kinds})
        raise ConfigError(f"targets {targets!r} match no linear layer of this model; its linears: {', '.join(suffixes)}")
    return chosen


def inject(model: nn.Module, names: Sequence[str], make: Callable[[str, nn.Module], nn.Module]) -> dict[str, nn.Module]:
    """Replace each named linear with `make(name, linear)`; returns the new layers by name."""
    layers = {}
    for name in names:
        layer = make(name, model.get_submodule(name))
        replace_module(model, name, layer)
        layers[name] = layer
    return layers


def freeze(model: nn.Module, trainable: Callable[[str], bool]) -> None:
    """requires_grad = trainable(name) for every parameter (base weights are never trainable)."""
    for name, param in model.named_parameters():
        param.requires_grad = ".base_layer." not in name and trainable(name)
