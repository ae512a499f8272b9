"""Helpers shared by the method files: pick target linears by kind, inject layers, freeze the base."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import nn

from loralab.errors import ConfigError, UserInputError
from loralab.models import classify_linear_modules, find_linear_modules
from loralab.moe.model import WRAPPED_ATTR, MoEModel, replace_module

TARGET_KINDS = ("all", "ffn", "attention")


def select_targets(model: nn.Module, targets: str | Sequence[str]) -> list[str]:
    """Qualified names of the linears to wrap.

    `targets` is a kind ("all", "ffn", "attention"; found by module type, see `loralab.models`) or a list
    of name suffixes (e.g. ["q_proj", "v_proj"]) matched against the linears found by type. A model that
    already carries an adapter is refused (`check_plain_model`): its adapter's own linears would be found too.
    """
    check_plain_model(model)
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


def adapter_layers(model: nn.Module) -> list[str]:
    """Qualified names of the adapter layers in `model`: PEFT tuner layers (LoRA, ...) and loralab MoE layers."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    return [name for name, module in model.named_modules()
            if isinstance(module, BaseTunerLayer) or getattr(module, "is_loralab_layer", False)]


def check_plain_model(model: nn.Module, action: str = "build a method on",
                      targets: Sequence[str] | None = None) -> None:
    """Refuse a model that already carries an adapter, with one line.

    Wrapping it again would silently stack adapters: linears are found by type, so a PEFT LoRA layer's
    own `base_layer`, `lora_A` and `lora_B` would each become an MoE layer (three per adapted linear), and
    the saved checkpoint would not reload on the base model. With `targets` (the linears about to be
    wrapped, for methods that inject in several passes) loralab layers elsewhere are allowed, but a target
    may not be, or sit inside, one.
    """
    from peft import PeftModel

    unwrap = "pass the base model (PeftModel.unload() / MoEModel.unload() give it back)"
    if isinstance(model, (PeftModel, MoEModel)):
        raise UserInputError(f"cannot {action} a {type(model).__name__}: it already carries an adapter; {unwrap}")
    wrapper = getattr(model, WRAPPED_ATTR, None)
    if wrapper is not None:
        raise UserInputError(f"cannot {action} this model: it is already wrapped by a {wrapper!r} method model; "
                             f"{unwrap}")
    from peft.tuners.tuners_utils import BaseTunerLayer

    peft_layers = [n for n, m in model.named_modules() if isinstance(m, BaseTunerLayer)]
    if peft_layers:
        raise UserInputError(f"cannot {action} this model: it already carries {len(peft_layers)} PEFT adapter "
                             f"layer(s) (first: {peft_layers[0]}), e.g. from PeftModel.from_pretrained or "
                             f"get_peft_model on it; {unwrap}")
    ours = {n for n, m in model.named_modules() if getattr(m, "is_loralab_layer", False)}
    if targets is None and ours:
        raise UserInputError(f"cannot {action} this model: it already carries {len(ours)} loralab MoE layer(s) "
                             f"(first: {min(ours)}); {unwrap}")
    for name in targets or ():
        parts = name.split(".")
        inside = next((".".join(parts[:i]) for i in range(1, len(parts) + 1) if ".".join(parts[:i]) in ours), None)
        if inside is not None:
            raise UserInputError(f"cannot {action} this model: target {name!r} is already inside the adapter layer "
                                 f"{inside!r}; {unwrap}")


def inject(model: nn.Module, names: Sequence[str], make: Callable[[str, nn.Module], nn.Module]) -> dict[str, nn.Module]:
    """Replace each named linear with `make(name, linear)`; returns the new layers by name.

    A model that already carries an adapter is refused first (`check_plain_model`).
    """
    check_plain_model(model, targets=list(names))
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
