"""Library LoRAs as experts: read a library adapter's A/B matrices per module, verified by hash."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from loralab.errors import AdapterError, UserInputError

_KEY = re.compile(r"^base_model\.model\.(?P<module>.+)\.lora_(?P<which>A|B)\.weight$")


@dataclass
class LibraryLoRA:
    """One trained LoRA: per-module (A (r, in), B (out, r)) and its scaling alpha / r.

    Attributes:
        task: The task it was trained on.
        domain: Its domain tag.
        path: Adapter directory.
        rank: r.
        scaling: alpha / r (PEFT's default scaling; rsLoRA is refused).
        weights: Qualified module name (relative to the causal LM) -> (A, B).
        sha256: Hash of its weights file, for provenance in saved methods.
    """

    task: str
    domain: str
    path: Path
    rank: int
    scaling: float
    weights: dict[str, tuple[torch.Tensor, torch.Tensor]]
    sha256: str

    def provenance(self) -> dict[str, str]:
        return {"task": self.task, "domain": self.domain, "path": str(self.path), "sha256": self.sha256}


def load_lora_dir(path: str | os.PathLike[str], task: str, domain: str = "general", sha256: str = "") -> LibraryLoRA:
    """Read a PEFT LoRA directory (safetensors) into per-module A/B matrices."""
    from safetensors.torch import load_file

    path = Path(path)
    try:
        config = json.loads((path / "adapter_config.json").read_text(encoding="utf-8"))
        tensors = load_file(str(path / "adapter_model.safetensors"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AdapterError(f"{path}: cannot read LoRA adapter ({exc})") from None
    if config.get("use_rslora") or config.get("use_dora"):
        raise AdapterError(f"{path}: rsLoRA/DoRA adapters cannot be used as experts (plain LoRA only)")
    rank, alpha = int(config["r"]), float(config["lora_alpha"])
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        match = _KEY.match(key)
        if match is None:
            raise AdapterError(f"{path}: unexpected tensor {key!r} (only LoRA A/B of linear layers are supported)")
        pairs.setdefault(match["module"], {})[match["which"]] = tensor
    weights = {m: (p["A"], p["B"]) for m, p in pairs.items() if "A" in p and "B" in p}
    return LibraryLoRA(task, domain, path, rank, alpha / rank, weights, sha256)


def load_library_loras(library: str | os.PathLike[str], model_name: str, tasks: Sequence[str]) -> list[LibraryLoRA]:
    """The library adapters of `tasks` for `model_name`, hash-verified, in the given order."""
    from loralab.library import Library, model_slug

    if not tasks:
        raise UserInputError("--experts must name at least one library task")
    lib = Library(library)
    if not lib.root.is_dir():
        raise UserInputError(f"library folder does not exist: {library}")
    slug = model_slug(model_name)
    loras = []
    for task in tasks:
        entry = lib.get(slug, task, verify=True)
        loras.append(load_lora_dir(entry.path, entry.task, entry.domain, entry.files.get("adapter_model.safetensors", "")))
    ranks = {lora.rank for lora in loras}
    if len(ranks) != 1:
        raise AdapterError(f"library experts must share one rank to be stacked, got ranks {sorted(ranks)}")
    return loras
