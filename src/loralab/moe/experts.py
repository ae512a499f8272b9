"""Library LoRAs as experts: read a library adapter's A/B matrices per module, verified by hash."""

from __future__ import annotations

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
    from loralab.library.adapters import check_finite, load_safetensors, read_artifact_json

    path = Path(path)
    config = read_artifact_json(path / "adapter_config.json", "adapter config")
    tensors = load_safetensors(path / "adapter_model.safetensors")
    check_finite(tensors, path)
    if not isinstance(config, dict):
        raise AdapterError(f"{path / 'adapter_config.json'}: must be a JSON object, got {type(config).__name__}")
    if config.get("use_rslora") or config.get("use_dora"):
        raise AdapterError(f"{path}: rsLoRA/DoRA adapters cannot be used as experts (plain LoRA only)")
    rank, alpha = config.get("r"), config.get("lora_alpha")
    if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1 or not isinstance(alpha, (int, float)) \
            or isinstance(alpha, bool):
        raise AdapterError(f"{path / 'adapter_config.json'}: 'r' must be a positive integer and 'lora_alpha' a "
                           f"number, got r={rank!r}, lora_alpha={alpha!r}")
    rank, alpha = int(rank), float(alpha)
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        match = _KEY.match(key)
        if match is None:
            raise AdapterError(f"{path}: unexpected tensor {key!r} (only LoRA A/B of linear layers are supported)")
        pairs.setdefault(match["module"], {})[match["which"]] = tensor
    weights = {m: (p["A"], p["B"]) for m, p in pairs.items() if "A" in p and "B" in p}
    return LibraryLoRA(task, domain, path, rank, alpha / rank, weights, sha256)


def load_library_loras(library: str | os.PathLike[str], model_name: str, tasks: Sequence[str]) -> list[LibraryLoRA]:
    """The library adapters of `tasks` for `model_name`, hash-verified, in the given order.

    A task is a LoRA's name, its folder or the task file it was built from (`loralab.library.names`)."""
    from loralab.library import Library, model_slug
    from loralab.library.names import resolve_library_tasks

    if not tasks:
        raise UserInputError("--experts must name at least one library task")
    lib = Library(library)
    if not lib.root.is_dir():
        raise UserInputError(f"library folder does not exist: {library}")
    slug = model_slug(model_name)
    loras = []
    for task in resolve_library_tasks(lib, model_name, tasks):
        entry = lib.get(slug, task, verify=True)
        loras.append(load_lora_dir(entry.path, entry.task, entry.domain, entry.files.get("adapter_model.safetensors", "")))
    ranks = {lora.rank for lora in loras}
    if len(ranks) != 1:
        raise AdapterError(f"library experts must share one rank to be stacked, got ranks {sorted(ranks)}")
    return loras
