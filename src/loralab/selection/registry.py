"""The strategy registry: one class per strategy, a loud error on a clash, "did you mean" on a typo."""

from __future__ import annotations

from loralab.errors import UnknownNameError
from loralab.selection.base import Selector

SELECTORS: dict[str, type[Selector]] = {}


def register_selector(cls: type[Selector]) -> type[Selector]:
    """Class decorator: add a strategy under `cls.name`."""
    name = cls.name
    if name != name.lower():
        raise ValueError(f"selection strategy names are lowercase, got {name!r}")
    if name in SELECTORS and SELECTORS[name] is not cls:
        raise ValueError(f"selection strategy {name!r} is already registered (by {SELECTORS[name].__module__})")
    SELECTORS[name] = cls
    return cls


def get_selector(name: str) -> type[Selector]:
    _load_builtin_selectors()
    if name not in SELECTORS:
        raise UnknownNameError("selection strategy", name, SELECTORS)
    return SELECTORS[name]


def all_selectors() -> dict[str, type[Selector]]:
    _load_builtin_selectors()
    return dict(sorted(SELECTORS.items()))


def _load_builtin_selectors() -> None:
    import importlib
    import pkgutil

    import loralab.selection.strategies as package

    for info in pkgutil.iter_modules(package.__path__):  # each strategy module registers itself on import
        importlib.import_module(f"{package.__name__}.{info.name}")
