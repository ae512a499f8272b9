"""Import an existing PEFT LoRA (e.g. one downloaded from a hub) into a library, after checking it fits."""

from __future__ import annotations

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
from loralab.library.cards import base_model_ref, library_card_info, write_model_card
from loralab.library.store import AdapterEntry, Library, check_name, model_slug
from loralab.models import LoadedModel, load_model
from loralab.utils.io import atomic_dir

logger = logging.getLogger(__name__)
_LORA_KEY = re.compile(r"^(?:base_model\.model\.)?(?P<module>.+)\.lora_(?P<which>A|B)(?:\.[^.]+)?\.weight$")


def read_adapter_config(adapter_dir: Path) -> dict[str, Any]:
    """The adapter's `adapter_config.json` as a mapping (one `AdapterError` for a missing or malformed file)."""
    from loralab.library.adapters import read_artifact_json

    if not adapter_dir.is_dir():
        raise AdapterError(f"adapter directory does not exist: {adapter_dir}")
    config_file = adapter_dir / "adapter_config.json"
    if not config_file.is_file():
        raise AdapterError(f"{adapter_dir}: no adapter_config.json (not a PEFT adapter)")
    config = read_artifact_json(config_file, "adapter config")
    if not isinstance(config, dict):
        raise AdapterError(f"{config_file}: must be a JSON object, got {type(config).__name__}")
    return config


def read_adapter_weights(adapter_dir: Path, *, allow_pickle: bool = False) -> dict[str, torch.Tensor]:
    """The adapter's tensors: a complete safetensors file (a pickle `.bin` only with `allow_pickle`), all finite."""
    from loralab.library.adapters import check_finite, load_safetensors

    safetensors_file = adapter_dir / "adapter_model.safetensors"
    bin_file = adapter_dir / "adapter_model.bin"
    if safetensors_file.is_file():
        weights = load_safetensors(safetensors_file)
    elif not bin_file.is_file():
        raise AdapterError(f"{adapter_dir}: no adapter_model.safetensors")
    elif not allow_pickle:
        raise AdapterError(f"{adapter_dir}: only adapter_model.bin (a pickle) is present; loading it can run code. "
                           "Convert it to safetensors, or pass --allow-pickle if you trust it (library add stores "
                           "it as safetensors)")
    else:
        logger.warning("loading pickled adapter weights from %s (allow_pickle)", bin_file)
        try:
            weights = torch.load(bin_file, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - garbage, a cut-off zip, a non-tensor payload: each its own type
            raise AdapterError(f"{bin_file}: unreadable pickle ({_first_line(exc)})") from None
        if not isinstance(weights, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                    for k, v in weights.items()):
            raise AdapterError(f"{bin_file}: not a mapping of tensor names to tensors")
    check_finite(weights, adapter_dir)
    return weights


def read_adapter(adapter_dir: Path, *, allow_pickle: bool = False) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The LoRA adapter's config and weights; a pickle `.bin` only with `allow_pickle` (it can run code)."""
    config = read_adapter_config(adapter_dir)
    if config.get("peft_type") != "LORA":
        raise AdapterError(f"{adapter_dir / 'adapter_config.json'}: peft_type must be 'LORA', "
                           f"got {config.get('peft_type')!r}")
    return config, read_adapter_weights(adapter_dir, allow_pickle=allow_pickle)


def check_adapter_fits(model: torch.nn.Module, config: dict[str, Any], weights: dict[str, torch.Tensor],
                       where: Path) -> None:
    """Every LoRA matrix must sit on a linear layer of `model` with matching shapes and the config's rank, and
    every adapted module must have both its A and its B (PEFT would leave a missing one at its initialisation)."""
    modules = dict(model.named_modules())
    rank = config.get("r")
    if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
        raise AdapterError(f"{where}: adapter_config.json 'r' must be a positive integer, got {rank!r}")
    if not weights:
        raise AdapterError(f"{where}: the adapter holds no weights")
    unfit = "adapter does not fit the base model"
    halves: dict[str, set[str]] = {}
    for key, tensor in weights.items():
        match = _LORA_KEY.match(key)
        if match is None:
            raise AdapterError(f"{where}: weight {key!r} is not a LoRA A/B matrix of a linear layer")
        name = match["module"]
        module = modules.get(name)
        if module is None:
            raise AdapterError(f"{where}: {unfit}: weight {key!r} targets {name!r}, which the base model does not "
                               "have")
        in_f, out_f = _linear_shape(module, name, where)
        want = (rank, in_f) if match["which"] == "A" else (out_f, rank)
        if tuple(tensor.shape) != want:
            raise AdapterError(f"{where}: {unfit}: {key} has shape {tuple(tensor.shape)}, the base model needs {want} "
                               f"(rank {rank})")
        halves.setdefault(name, set()).add(match["which"])
    for name, have in sorted(halves.items()):
        if have != {"A", "B"}:
            lacking = "lora_B" if "A" in have else "lora_A"
            raise AdapterError(f"{where}: the adapter is missing {lacking} of {name} (it has only "
                               f"{'lora_A' if 'A' in have else 'lora_B'})")


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return (lines[0] if lines else type(exc).__name__)[:300]


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
    allow_base_mismatch: bool = False,
    eval_split: str = "test",
    eval_limit: int | None = 0,
    data_dir: str | os.PathLike[str] | None = None,
    device: str | None = None,
    precision: str | None = "auto",
) -> AdapterEntry:
    """Check `adapter` against the base model and copy it into the library as the adapter of `task`.

    The checks are `attach_adapter`'s (readable, finite weights; recorded hashes and base model when the
    adapter carries loralab metadata; every LoRA matrix on a linear of the base model with the right shape;
    no tensor missing or extra), so an adapter that `loralab eval --adapter` would refuse is never added.
    `precision` ("auto", "fp32", "bf16", "fp16") is the autocast of the evaluation (`eval_limit` != 0); the
    resolved one is recorded as `metrics["eval"]["precision"]`, not as the entry's `precision`, which says
    what an adapter was trained in, and loralab did not train this one.
    """
    from safetensors.torch import save_file

    from loralab.library.adapters import attach_peft_adapter
    from loralab.models.loading import check_device, model_device
    from loralab.utils.precision import resolve_precision

    from loralab.library.build import check_library_out, normalize_adapter_config

    check_library_out(library, option="library")  # writes only into a new, empty or loralab library folder
    # a device that does not exist here, or a precision it cannot run, fails before anything is read
    prec = resolve_precision(precision, model_device(model.model) if isinstance(model, LoadedModel)
                             else check_device(device))
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
    # every check of the eval path (check_adapter_fits among them), on a copy of the model's structure: lm.model
    # is left as it is
    peft_model = attach_peft_adapter(lm.model, adapter_dir, allow_pickle=allow_pickle,
                                     allow_base_mismatch=allow_base_mismatch)
    metrics: dict[str, Any] = {}
    if eval_limit != 0:
        from loralab.library.build import _evaluate

        with prec.autocast():
            metrics["eval"] = _evaluate(peft_model, lm.tokenizer, task_obj, eval_split, eval_limit, True, True)
        metrics["eval"]["precision"] = prec.to_dict()
    del peft_model
    entry = AdapterEntry(task=task_obj.name, model=lm.name, model_slug=slug, domain=task_obj.domain, origin="imported",
                         model_source=lm.source, model_revision=lm.revision,
                         hparams={"rank": config.get("r"), "alpha": config.get("lora_alpha"),
                                  "target_modules": config.get("target_modules"), "imported_from": str(adapter_dir)},
                         metrics=metrics)
    start = time.perf_counter()
    base = base_model_ref(lm)
    with atomic_dir(lib.adapter_dir(slug, task_obj.name)) as tmp:
        shutil.copy2(adapter_dir / "adapter_config.json", tmp / "adapter_config.json")
        # the adapter was checked against this base model above: its config names it (the source's is not changed)
        normalize_adapter_config(tmp, base)
        save_file({k: v.contiguous() for k, v in weights.items()}, str(tmp / "adapter_model.safetensors"))
        write_model_card(tmp, library_card_info(entry, base))  # before write_entry hashes the files
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
