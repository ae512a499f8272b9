"""Attach a saved PEFT adapter to a base model, safely (safetensors only unless asked)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from loralab.errors import AdapterError

logger = logging.getLogger(__name__)


def attach_adapter(model: torch.nn.Module, path: str | Path, *, allow_pickle: bool = False) -> torch.nn.Module:
    """Wrap `model` with the adapter saved in `path`: a PEFT adapter or a loralab method checkpoint.

    Raises:
        AdapterError: missing directory or files, a pickle-only adapter without `allow_pickle`, or an
            adapter whose shapes or target modules do not fit the base model.
    """
    from peft import PeftModel

    path = Path(path)
    if not path.is_dir():
        raise AdapterError(f"adapter directory does not exist: {path}")
    from loralab.moe.model import is_method_checkpoint, load_method

    if is_method_checkpoint(path):  # a loralab LoRA-MoE method checkpoint, not a PEFT adapter
        return load_method(model, path)
    config_file = path / "adapter_config.json"
    if not config_file.is_file():
        raise AdapterError(f"{path}: no adapter_config.json (not a PEFT adapter directory)")
    try:
        json.loads(config_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AdapterError(f"{config_file}: not valid JSON ({exc})") from None
    has_safetensors = (path / "adapter_model.safetensors").is_file()
    has_bin = (path / "adapter_model.bin").is_file()
    if not has_safetensors:
        if not has_bin:
            raise AdapterError(f"{path}: no adapter_model.safetensors")
        if not allow_pickle:
            raise AdapterError(f"{path}: only adapter_model.bin (a pickle) is present; loading it can run code. "
                               "Convert it to safetensors, or pass --allow-pickle if you trust it")
        logger.warning("loading pickled adapter weights from %s (allow_pickle=True)", path)
    try:
        return PeftModel.from_pretrained(model, str(path), is_trainable=False)
    except (RuntimeError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0][:300]
        raise AdapterError(f"{path}: adapter does not fit the base model: {first}") from None
