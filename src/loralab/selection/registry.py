"""The strategy registry: one class per strategy, a loud error on a clash, "did you mean" on a typo.

What the benchmark runner needs to know about a strategy is declared on its class (`Selector.seeded`:
the draw depends on the cell's seed; `Selector.baseline`: a comparison point for relevance-based
selection, as PPL and random are in LoRALib), not decided by comparing names.
"""

from __future__ import annotations

from loralab.selection.base import Selector
from loralab.utils.registry import Registry

SELECTORS: Registry[type[Selector]] = Registry("selection strategy", builtins="loralab.selection.strategies")


def register_selector(cls: type[Selector]) -> type[Selector]:
    """Class decorator: add a strategy under `cls.name`."""
    SELECTORS.register(cls.name, cls)
    return cls


def get_selector(name: str) -> type[Selector]:
    return SELECTORS.get(name)


def all_selectors() -> dict[str, type[Selector]]:
    return SELECTORS.items()
