"""The build set-up every method shares, written once: `MethodBuilder` (base keys, routing state, targets,
injection, freezing, the `MoEModel`), `expert_weights` (a library LoRA's A/B on one module), and the
helpers under it: pick target linears by kind, refuse an already adapted model, inject layers, freeze.

A method's `build` says only what differs (its layer, router and trained parameters):

    def build(model, cfg, experts, tasks):
        builder = MethodBuilder(model, "mymethod")
        builder.inject(builder.targets(cfg), lambda name, base: MyLayer(base, builder.state, ...))
        return builder.finish(cfg, tasks, experts, trainable=lambda n: "lora_" in n)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from torch import nn

from loralab.errors import AdapterError, ConfigError, UserInputError
from loralab.models import classify_linear_modules, find_linear_modules
from loralab.moe.model import WRAPPED_ATTR, MoEModel, replace_module
from loralab.moe.state import RoutingState

if TYPE_CHECKING:
    import torch

    from loralab.moe.config import MethodConfig
    from loralab.moe.experts import LibraryLoRA

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


def expert_weights(lora: LibraryLoRA, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(A, B) of library LoRA `lora` on module `name`; one `AdapterError` when that LoRA does not adapt it."""
    try:
        return lora.weights[name]
    except KeyError:
        raise AdapterError(f"library LoRA {lora.task!r} has no weights for {name}; the experts must adapt every "
                           "module this method wraps (train them with the same targets)") from None


class MethodBuilder:
    """One method model under construction, in the order every build needs.

    Created before anything is injected, it records the base model's state-dict keys (what is not an
    adapter tensor) and makes the routing state the layers share. `targets(cfg)` gives the linears to
    wrap, `inject` wraps them, `finish` builds the `MoEModel` (the resolved targets saved in the config,
    so a checkpoint reloads on the same modules) and freezes everything but what the method trains.

    Args:
        model: The plain transformers model (refused if it already carries an adapter).
        method: The registry name.
    """

    def __init__(self, model: nn.Module, method: str) -> None:
        self.model, self.method = model, method
        self.base_keys: set[str] = set(model.state_dict())
        self.state = RoutingState()
        self.selected: list[str] | None = None

    def targets(self, cfg: MethodConfig) -> list[str]:
        """`cfg.modules` when set (a reloaded checkpoint, or library experts' modules), else what `cfg.targets` picks.

        `finish` writes the result into the config's `modules` field (which the config must have); a config
        without a `targets` field wraps every linear ("all").
        """
        modules = getattr(cfg, "modules", None)
        targets = getattr(cfg, "targets", "all")
        self.selected = list(modules) if modules else select_targets(self.model, targets)
        return list(self.selected)

    def inject(self, names: Sequence[str], make: Callable[[str, nn.Module], nn.Module]) -> dict[str, nn.Module]:
        """Replace each named linear with `make(name, linear)`; returns the new layers by name."""
        return inject(self.model, names, make)

    def finish(self, cfg: MethodConfig, tasks: Sequence[str], experts: Sequence[LibraryLoRA] | None = None, *,
               trainable: Callable[[str], bool] | None = None, modules: Mapping[str, nn.Module] | None = None,
               aux_loss: Callable[[MoEModel], torch.Tensor | None] | None = None,
               merge_deltas: Callable[[MoEModel, int | None], dict[str, torch.Tensor]] | None = None,
               stats: Callable[[MoEModel], dict[str, float]] | None = None) -> MoEModel:
        """The `MoEModel`: `modules` become its attributes (model-level parts such as a shared gate), then
        every parameter but those `trainable(name)` accepts is frozen (None: leave requires_grad as it is).

        `experts` are recorded as provenance; `aux_loss`, `merge_deltas`, `stats` are `MoEModel`'s.
        """
        if self.selected is not None:
            cfg = cfg.replace(modules=tuple(self.selected))
        provenance = [lora.provenance() for lora in experts or []]
        moe = MoEModel(self.model, self.method, cfg, self.state, list(tasks), provenance, self.base_keys,
                       aux_loss=aux_loss, merge_deltas=merge_deltas, stats=stats)
        for attr, module in (modules or {}).items():
            setattr(moe, attr, module)
        if trainable is not None:
            freeze(moe, trainable)
        return moe
