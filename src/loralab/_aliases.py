"""Old module paths, kept importable for one release (0.2 removes them) with a `DeprecationWarning`.

The orchestration modules that used to sit loose at the top of the package now live in the layer that
says what they are (`loralab.recipes`, `loralab.bench`, `loralab.moe`, `loralab.training`); code that
imports an old path gets the new module itself (same objects, so monkeypatching either name works).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

MOVED = {
    "loralab.api": "loralab.recipes.evaluate",
    "loralab.train": "loralab.recipes.train",
    "loralab.merge": "loralab.recipes.merge",
    "loralab.lmeval": "loralab.recipes.lmeval",
    "loralab.compare": "loralab.bench.compare",
    "loralab.compare_table": "loralab.bench.compare",  # write_table: the comparison table, now beside its front-end
    "loralab.analysis": "loralab.moe.analysis",
    "loralab.adapters": "loralab.moe.adapters",
    "loralab.library.hparams": "loralab.training.hparams",
    "loralab.library.trainer": "loralab.training.trainer",
    "loralab.library.checkpoints": "loralab.training.checkpoints",
    "loralab.library.sampling": "loralab.training.sampling",
}


class _AliasLoader(importlib.abc.Loader):
    def create_module(self, spec):  # noqa: D102 - the module object is the new module itself
        new = MOVED[spec.name]
        warnings.warn(f"{spec.name} moved to {new}; the old path goes away in loralab 0.2",
                      DeprecationWarning, stacklevel=2)
        return importlib.import_module(new)

    def exec_module(self, module) -> None:  # noqa: D102 - already executed under its new name
        return None


class _AliasFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):  # noqa: D102
        if fullname in MOVED:
            return importlib.util.spec_from_loader(fullname, _AliasLoader())
        return None


def install() -> None:
    if not any(isinstance(f, _AliasFinder) for f in sys.meta_path):
        sys.meta_path.append(_AliasFinder())
