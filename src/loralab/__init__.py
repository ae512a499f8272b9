"""loralab: multi-task LoRA libraries, LoRA-MoE methods, LoRA selection and one evaluation protocol.

The public names below load lazily, so `loralab tasks ls` does not pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from loralab import _aliases

__version__ = "0.1.0"

_EXPORTS = {
    "run_eval": "loralab.recipes.evaluate",
    "export_task": "loralab.recipes.evaluate",
    "load_task": "loralab.data",
    "Task": "loralab.data",
    "Example": "loralab.data",
    "evaluate": "loralab.eval",
    "load_model": "loralab.models",
    "LoadedModel": "loralab.models",
    "attach_adapter": "loralab.moe.adapters",
}
__all__ = ["__version__", *_EXPORTS]

_aliases.install()  # old module paths (loralab.train, loralab.api, ...) keep working for one release


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'loralab' has no attribute {name!r}")
