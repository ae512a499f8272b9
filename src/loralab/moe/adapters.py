"""`attach_adapter`: one entry point for a saved PEFT adapter or a loralab method checkpoint.

The checks themselves (recorded hashes, readable and finite weights, the recorded base model, exactly
the tensors a config injects) live in `loralab.library.adapters`, which the library's own readers use
too; this module adds what needs the MoE core: method checkpoints, and refusing a model that already
carries adapter layers (PEFT's or a loralab method's).

The given model is not changed: the adapter is attached to a structural copy of it that shares its
weight tensors (see `loralab.library.adapters.on_copy`).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from loralab.errors import AdapterError
from loralab.library.adapters import attach_peft_adapter, on_copy


def attach_adapter(model: torch.nn.Module, path: str | os.PathLike[str], *, allow_pickle: bool = False,
                   allow_base_mismatch: bool = False) -> torch.nn.Module:
    """`model` with the adapter saved in `path` (a PEFT adapter or a loralab method checkpoint) attached.

    Returns a new module (a `PeftModel` or a `MoEModel`) that shares `model`'s weight tensors; `model`
    itself is left as it was, so it stays usable as the base model (see the module docstring).

    Args:
        model: The base model, without adapter layers (a model that already carries one is refused).
        path: The adapter folder.
        allow_pickle: Accept `adapter_model.bin` (a pickle can run code when loaded).
        allow_base_mismatch: Attach even though the adapter's loralab metadata records another base model.
            Module names and shapes must still fit.

    Raises:
        AdapterError: see the module docstring; also a missing folder or files, a pickle without `allow_pickle`.
        UserInputError: `model` already carries adapter layers.
    """
    from loralab.moe.builder import check_plain_model
    from loralab.moe.model import is_method_checkpoint, load_method

    path = Path(path)
    if not path.is_dir():
        raise AdapterError(f"adapter directory does not exist: {path}")
    check_plain_model(model, "attach an adapter to")
    if is_method_checkpoint(path):  # a loralab LoRA-MoE method checkpoint, not a PEFT adapter
        return on_copy(model, lambda m: load_method(m, path, allow_base_mismatch=allow_base_mismatch))
    return attach_peft_adapter(model, path, allow_pickle=allow_pickle, allow_base_mismatch=allow_base_mismatch)
