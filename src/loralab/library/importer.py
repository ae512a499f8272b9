"""Import an existing PEFT LoRA (e.g. one downloaded from a hub) into a library, after checking it fits."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from loralab.data import Task, load_task
from loralab.errors import AdapterError, UserInputError
from loralab.library.store import AdapterEntry, Library, check_name, model_slug
from loralab.models import LoadedModel, load_model
from loralab.utils.io import atomic_dir, check_output_path

logger = logging.getLogger(__name__)
_LORA_KEY = re.compile(r"^(?:base_model\.model\.)?(?P<module>.+)\.lora_(?P<which>A|B)(?:\.[^.]+)?\.weight$")


def read_adapter(adapter_dir: Path, *, allow_pickle: bool = False) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The adapter's config and weights; a pickle `.bin` only with `allow_pickle` (it can run code)."""
    from safetensors.torch import load_file

    if not adapter_dir.is_dir():
        raise AdapterError(f"adapter directory does not exist: {adapter_dir}")
    config_file = adapter_dir / "adapter_config.json"
    if not config_file.is_file():
        raise AdapterError(f"{adapter_dir}: no adapter_config.json (not a PEFT adapter)")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AdapterError(f"{config_file}: not valid JSON ({exc})") from None
    if not isinstance(config, dict) or config.get("peft_type") != "LORA":
        raise AdapterError(f"{config_file}: peft_type must be 'LORA', got {config.get('peft_type')!r}")
    safetensors_file = adapter_dir / "adapter_model.safetensors"
    bin_file = adapter_dir / "adapter_model.bin"
    if safetensors_file.is_file():
        try:
            return config, load_file(str(safetensors_file))
        except Exception as exc:  # safetensors raises its own error types for corrupt files
            raise AdapterError(f"{safetensors_file}: unreadable safetensors file ({exc})") from None
    if not bin_file.is_file():
        raise AdapterError(f"{adapter_dir}: no adapter_model.safetensors")
    if not allow_pickle:
        raise AdapterError(f"{adapter_dir}: only adapter_model.bin (a pickle) is present; loading it can run code. "
                           "Pass --allow-pickle if you trust it (it is converted to safetensors on import)")
    logger.warning("loading pickled adapter weights from %s (allow_pickle)", bin_file)
    return config, torch.load(bin_file, map_location="cpu", weights_only=True)


def check_adapter_fits(model: torch.nn.Module, config: dict[str, Any], weights: dict[str, torch.Tensor],
                       where: Path) -> None:
    """Every LoRA matrix must sit on a linear layer of `model` with matching shapes and the config's rank."""
    modules = dict(model.named_modules())
    rank = config.get("r")
    if not isinstance(rank, int) or rank < 1:
        raise AdapterError(f"{where}: adapter_config.json 'r' must be a positive integer, got {rank!r}")
    if not weights:
        raise AdapterError(f"{where}: the adapter holds no weights")
    for key, tensor in weights.items():
        match = _LORA_KEY.match(key)
        if match is None:
            raise AdapterError(f"{where}: weight {key!r} is not a LoRA A/B matrix of a linear layer")
        name = match["module"]
        module = modules.get(name)
        if module is None:
            raise AdapterError(f"{where}: weight {key!r} targets {name!r}, which the base model does not have")
        in_f, out_f = _linear_shape(module, name, where)
        want = (rank, in_f) if match["which"] == "A" else (out_f, rank)
        if tuple(tensor.shape) != want:
            raise AdapterError(f"{where}: {key} has shape {tuple(tensor.shape)}, the base model needs {want} (rank {rank})")


def _linear_shape(module: torch.nn.Module, name: str, where: Path) -> tuple[int, int]:
    if isinstance(module, torch.nn.Linear):
        return module.in_features, module.out_features
    weight = getattr(module, "weight", None)
    if type(module).__name__ == "Conv1D" and weight is not None:
        return int(weight.shape[0]), int(weight.shape[1])
    raise AdapterError(f"{where}: LoRA on {name!r} ({type(module).__name__}) is not supported; only linear layers")


def import_adapter(
    library: str | os.PathLike[str],
    adapter: str | os.PathLike[str],
    task: str | Task,
    *,
    model: str | LoadedModel | None = None,
    allow_pickle: bool = False,
    eval_split: str = "test",
    eval_limit: int | None = 0,
    data_dir: str | os.PathLike[str] | None = None,
    device: str | None = None,
) -> AdapterEntry:
    """Check `adapter` against the base model and copy it into the library as the adapter of `task`."""
    from safetensors.torch import save_file

    check_output_path(library, kind="dir", option="library")
    lib = Library(library)
    adapter_dir = Path(adapter)
    config, weights = read_adapter(adapter_dir, allow_pickle=allow_pickle)
    task_obj = task if isinstance(task, Task) else load_task(task, data_dir=data_dir)
    check_name("task", task_obj.name)
    model_name = model.name if isinstance(model, LoadedModel) else model or _only_model(lib)
    slug = model_slug(model_name)
    if lib.has(slug, task_obj.name):
        raise UserInputError(f"library {lib.root} already has an adapter for task {task_obj.name!r} and model {slug!r}")
    lm = model if isinstance(model, LoadedModel) else load_model(model_name, device=device)
    check_adapter_fits(lm.model, config, weights, adapter_dir)
    metrics: dict[str, Any] = {}
    if eval_limit != 0:
        from loralab.adapters import attach_adapter
        from loralab.library.build import _evaluate

        peft_model = attach_adapter(lm.model, adapter_dir, allow_pickle=allow_pickle)
        metrics["eval"] = _evaluate(peft_model, lm.tokenizer, task_obj, eval_split, eval_limit, True, True)
        lm.model = peft_model.unload()
    entry = AdapterEntry(task=task_obj.name, model=lm.name, model_slug=slug, domain=task_obj.domain, origin="imported",
                         model_source=lm.source, model_revision=lm.revision,
                         hparams={"rank": config.get("r"), "alpha": config.get("lora_alpha"),
                                  "target_modules": config.get("target_modules"), "imported_from": str(adapter_dir)},
                         metrics=metrics)
    start = time.perf_counter()
    with atomic_dir(lib.adapter_dir(slug, task_obj.name)) as tmp:
        shutil.copy2(adapter_dir / "adapter_config.json", tmp / "adapter_config.json")
        save_file({k: v.contiguous() for k, v in weights.items()}, str(tmp / "adapter_model.safetensors"))
        entry.seconds = round(time.perf_counter() - start, 2)
        lib.write_entry(tmp, entry)
    lib.refresh_manifest()
    entry.path = lib.adapter_dir(slug, task_obj.name)
    return entry


def _only_model(lib: Library) -> str:
    models = sorted({e.model for e in lib.entries()})
    if len(models) != 1:
        raise UserInputError(f"library {lib.root} holds {len(models)} models ({', '.join(models) or 'none'}); "
                             "pass --model to say which base model the adapter is for")
    return models[0]
