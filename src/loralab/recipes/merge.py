"""Fold an adapter into the base weights for one task and write a plain transformers model.

    loralab merge --adapter runs/more --task navigate --out runs/more-navigate

The result is an ordinary model folder (config, safetensors weights, tokenizer, a model card) that any transformers
code loads with `AutoModelForCausalLM.from_pretrained`, at exactly the base model's inference cost.
Works for every mergeable method (MoRE, MOELoRA and MTL-LoRA per task; LoraHub, single and multi-task
LoRA, PEFT merges) and for plain PEFT adapters, including library entries.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from loralab.errors import UserInputError
from loralab.utils.precision import Precision, resolve_precision

logger = logging.getLogger(__name__)
MERGE_FILE = "loralab_merge.json"


def adapter_model_name(adapter: str | os.PathLike[str]) -> str | None:
    """The base model an adapter was trained on, from its loralab metadata (None if it has none)."""
    from loralab.library.adapters import recorded_base_model

    recorded = recorded_base_model(adapter)
    return recorded.name if recorded is not None else None


def merge_adapter(
    adapter: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    task: str | None = None,
    model: str | None = None,
    nearest_examples: int = 0,
    data_dir: str | os.PathLike[str] | None = None,
    device: str | None = None,
    allow_base_mismatch: bool = False,
    precision: str | None = "auto",
) -> dict[str, Any]:
    """Merge `adapter` (for `task` when the method routes by task) into its base model; write it to `out`.

    Args:
        adapter: A loralab method checkpoint or a PEFT adapter folder.
        out: Folder for the merged model (written atomically; must not exist).
        task: The task to merge for (task-routed methods): a training task's name, or its task file or library LoRA
            folder (`loralab.library.names`). A task the checkpoint was not trained on needs `nearest_examples`
            > 0: MoRE then picks the nearest training task from that many train examples.
        model: The base model; default: the one recorded in the adapter's metadata.
        nearest_examples: See `task`.
        allow_base_mismatch: Merge into `model` even though the adapter records another base model (module
            names and shapes must still fit).
        precision: Autocast of the only forwards a merge runs, MoRE's nearest-task search ("auto", "fp32",
            "bf16", "fp16"); recorded as "precision" when that search ran. Merging itself adds fp32 weights,
            and the merged model is saved in the dtype it was loaded in (float32), whatever this says.

    Returns the provenance record also written to `out/loralab_merge.json`.
    """
    from loralab.moe.adapters import attach_adapter
    from loralab.errors import AdapterError
    from loralab.library.cards import base_model_ref, merged_card_info, write_model_card
    from loralab.models import load_model
    from loralab.models.loading import check_device
    from loralab.moe.model import MoEModel
    from loralab.utils.io import atomic_dir, check_output_path, dumps_json

    out = check_output_path(out, kind="dir")
    if out.exists():
        raise UserInputError(f"out {str(out)!r} already exists; choose a new folder", param="out")
    prec = resolve_precision(precision, check_device(device))  # before the model loads
    if not Path(adapter).is_dir():
        raise AdapterError(f"adapter directory does not exist: {adapter}")
    model = model or adapter_model_name(adapter)
    if model is None:
        raise UserInputError(f"{adapter}: no loralab metadata names the base model; pass --model")
    lm = load_model(model, device=device)
    net = attach_adapter(lm.model, adapter, allow_base_mismatch=allow_base_mismatch)
    record: dict[str, Any] = {"adapter": str(adapter), "model": model, "task": task}
    if isinstance(net, MoEModel):
        merge_task = _resolve_task(net, lm, task, nearest_examples, data_dir, record, prec)
        merged = net.merge_and_unload(merge_task)
        record.update(method=net.method, merged_task=merge_task)
    else:  # a PEFT adapter: one fixed update, the task does not matter
        merged = net.merge_and_unload()
        record["method"] = "peft"
    with atomic_dir(out) as tmp:
        merged.save_pretrained(tmp, safe_serialization=True)
        lm.tokenizer.save_pretrained(tmp)
        (tmp / MERGE_FILE).write_text(dumps_json(record, indent=2) + "\n", encoding="utf-8")
        write_model_card(tmp, merged_card_info(adapter, record, base_model_ref(lm)))
    logger.debug("merged %s into %s -> %s", adapter, model, out)  # debug: the CLI prints its own line
    return record


def _resolve_task(net, lm, task: str | None, nearest_examples: int, data_dir, record: dict,
                  prec: Precision) -> str | None:
    """The training task to merge for: `task` by name, or given by path (a task file or library LoRA folder of
    one of the checkpoint's tasks: `loralab.library.names`); else, MoRE only, the nearest training task."""
    from loralab.library.names import KnownTask, match_task

    if task is None or task in net.tasks:
        return task
    match = match_task(task, [KnownTask(t) for t in net.tasks], where=f"this {net.method} checkpoint",
                       option="task", data_dir=data_dir)
    if match.name is not None:
        logger.info("task %s is the checkpoint's training task %s", task, match.name)
        return match.name
    if nearest_examples <= 0 or net.method != "more":
        shown = task if match.task is None else f"{task} (task {match.task.name})"
        raise UserInputError(f"task {shown!r}: this {net.method} checkpoint was trained on {net.tasks}; "
                             + ("pass --nearest N to pick the nearest training task from N examples"
                                if net.method == "more" else "choose one of them"), param="task")
    from loralab.data import load_task
    from loralab.training.trainer import PadCollator, training_features
    from loralab.training.hparams import LoRAHparams
    from loralab.moe.methods.more import nearest_task

    unseen = match.task or load_task(task, data_dir=data_dir)
    features = training_features(unseen, lm.tokenizer, LoRAHparams(), unseen.split("train", nearest_examples))
    collate = PadCollator(lm.tokenizer.pad_token_id or 0)
    batches = [collate(features[i:i + 8]) for i in range(0, len(features), 8)]
    device = next(net.parameters()).device
    batches = [{k: v.to(device) for k, v in b.items() if k in ("input_ids", "attention_mask")} for b in batches]
    if prec.device_type != device.type:  # autocast is per device type (as in run_eval)
        prec = resolve_precision(prec.name, device)
    with prec.autocast():
        chosen, votes = nearest_task(net, batches)
    logger.info("unseen task %s: nearest training task %s (votes %s, %s)", task, chosen, votes, prec.name)
    record.update(nearest_task=chosen, nearest_votes=votes, precision=prec.to_dict())
    return chosen
