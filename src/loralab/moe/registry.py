"""The method registry: one line per method, a loud error on a clash, "did you mean" on a typo."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from loralab.errors import UnknownNameError


@dataclass(frozen=True)
class MethodSpec:
    """A registered method.

    Attributes:
        name: Registry key (lowercase).
        config_cls: Its config dataclass (paper defaults).
        build: `build(model, config, experts, tasks) -> MoEModel`; `experts` are library LoRAs or None.
        description: One line for `loralab methods ls`.
        library: "required" (experts come from --library/--experts), "optional" (may initialise from them),
            or "none" (trains from scratch; giving experts is an error).
        mergeable: Whether a per-task merge into the base weights exists.
        paper: Link to the paper.
        faithful: False when the implementation knowingly departs from the paper (see its docstring).
        train: A custom training function `train(request: TrainRequest) -> info dict` that writes the
            checkpoint itself (gradient-free LoraHub, PEFT-format baselines); None: the shared Trainer path.
    """

    name: str
    config_cls: type
    build: Callable[..., Any]
    description: str
    library: Literal["required", "optional", "none"]
    mergeable: bool
    paper: str
    faithful: bool = True
    train: Callable[..., dict] | None = None


METHODS: dict[str, MethodSpec] = {}


def register_method(spec: MethodSpec) -> MethodSpec:
    if spec.name != spec.name.lower():
        raise ValueError(f"method names are lowercase, got {spec.name!r}")
    if spec.name in METHODS:
        raise ValueError(f"method {spec.name!r} is already registered (by {METHODS[spec.name].build.__module__})")
    METHODS[spec.name] = spec
    return spec


def get_method(name: str) -> MethodSpec:
    _load_builtin_methods()
    if name not in METHODS:
        raise UnknownNameError("method", name, METHODS)
    return METHODS[name]


def all_methods() -> dict[str, MethodSpec]:
    _load_builtin_methods()
    return dict(sorted(METHODS.items()))


def _load_builtin_methods() -> None:
    import importlib
    import pkgutil

    import loralab.moe.methods as package

    for info in pkgutil.iter_modules(package.__path__):  # each method module registers itself on import
        importlib.import_module(f"{package.__name__}.{info.name}")
