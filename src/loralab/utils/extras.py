"""Optional dependencies: the packages behind optional features, and the one error for a missing one.

`pip install loralab` installs what every command needs; each heavier optional feature has an extra
(pyproject.toml `[project.optional-dependencies]`). A feature used without its package fails with one
line naming the extra, before any work: `pip install 'loralab[ray]'`.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from loralab.errors import MissingExtraError

# import name -> (extra, distribution name as pip spells it)
EXTRAS: dict[str, tuple[str, str]] = {
    "lm_eval": ("lmeval", "lm-eval"),
    "tensorboard": ("tensorboard", "tensorboard"),
    "nevergrad": ("lorahub", "nevergrad"),
    "ray": ("ray", "ray"),
    "datasets": ("hf", "datasets"),
}


def missing_extra(module: str, feature: str) -> MissingExtraError:
    """The error for `feature` used without `module`: one line, with the install command of its extra."""
    extra, dist = EXTRAS[module]
    return MissingExtraError(f"{feature} needs {dist}, which is not installed: pip install 'loralab[{extra}]'")


def has_extra(module: str) -> bool:
    """Whether `module` can be imported, without importing it (some, like tensorboard, are slow to import)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken install, or a module whose spec cannot be found: not usable
        return False


def require_extra(module: str, feature: str) -> ModuleType:
    """Import the optional `module` that `feature` needs, or raise `MissingExtraError` naming its extra."""
    if module not in EXTRAS:
        raise KeyError(f"{module!r} is not an optional dependency of loralab (EXTRAS)")
    try:
        return importlib.import_module(module)
    except ImportError:
        if has_extra(module):  # installed but broken (one of its own dependencies): its traceback says why
            raise
        raise missing_extra(module, feature) from None
