"""loralab: multi-task LoRA libraries, LoRA-MoE methods, LoRA selection and one evaluation protocol.

The public names below load lazily, so `loralab tasks ls` does not pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "run_eval": "loralab.api",
    "export_task": "loralab.api",
    "load_task": "loralab.data",
    "Task": "loralab.data",
    "Example": "loralab.data",
    "evaluate": "loralab.eval",
    "load_model": "loralab.models",
    "LoadedModel": "loralab.models",
    "attach_adapter": "loralab.adapters",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'loralab' has no attribute {name!r}")
