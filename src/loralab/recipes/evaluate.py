"""High-level Python API: what the CLI calls, for users who prefer code.

    from loralab import load_model, load_task, evaluate
    lm = load_model("smollm2-135m")
    out = evaluate(lm.model, lm.tokenizer, load_task("social_iqa"), limit=200)

or, in one call with the provenance record the CLI writes:

    record = loralab.run_eval("smollm2-135m", "social_iqa", limit=200, out="result.json")
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from loralab.data import Task, example_record, load_task, write_jsonl
from loralab.errors import TaskRoutingError
from loralab.eval.evaluator import Timer, evaluate, result_record
from loralab.models import LoadedModel, load_model
from loralab.models.loading import check_device, model_device
from loralab.utils.io import atomic_write_json, check_output_file, is_eval_result, is_task_export
from loralab.utils.precision import resolve_precision

logger = logging.getLogger(__name__)


def run_eval(
    model: str | LoadedModel,
    task: str | Task,
    *,
    adapter: str | os.PathLike[str] | None = None,
    split: str = "test",
    limit: int | None = None,
    num_fewshot: int = 0,
    batch_size: int = 8,
    data_dir: str | os.PathLike[str] | None = None,
    device: str | None = None,
    log_samples: bool = False,
    log_outcomes: bool = False,
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
    allow_base_mismatch: bool = False,
    out: str | os.PathLike[str] | None = None,
    progress: bool = True,
    precision: str | None = "auto",
    apply_chat_template: bool = False,
) -> dict[str, Any]:
    """Evaluate a model (optionally with a PEFT adapter) on a task split; return (and write) the result record.

    The device, task and split are checked before the model loads, and `out` is written atomically only
    when the evaluation finished, so a bad input or an interruption never leaves a partial result. An
    adapter is checked as `attach_adapter` does (hashes, finite weights, base model, shapes);
    `allow_base_mismatch` lets one recorded for another base model be tried on this one. `precision`
    ("auto", "fp32", "bf16", "fp16") is the autocast of every forward ("auto": bf16 where the device has
    it natively, else fp32); the resolved one is recorded as "precision". `log_outcomes` adds
    "outcomes", one record per example (id, the primary metric's value as "correct", every metric's
    value, a score; see `EvalOutput`): what paired comparisons need, and what the bench database stores.
    Off by default, so a result file stays the size of its metrics. `log_samples` adds "samples": per example
    the prompt as scored, the choices and targets, and the model's choice scores or its output.
    `apply_chat_template` (lm-eval's flag, off by default, for instruct models): each prompt is rendered as a
    user turn with the tokenizer's chat template and its generation prompt (`loralab.eval.chat`); a model whose
    tokenizer has none is refused (one line) before any scoring. The record says which ("apply_chat_template",
    and "chat_template_sha256" when on).
    """
    if out is not None:
        check_output_file(out, what="result file", option="out", recognise=is_eval_result)  # only our own results
    if isinstance(model, LoadedModel):
        prec = resolve_precision(precision, model_device(model.model))
    else:
        # a device that does not exist here, or a precision it cannot run, fails before any data or model loads
        prec = resolve_precision(precision, check_device(device))
    task_obj = task if isinstance(task, Task) else load_task(task, data_dir=data_dir)
    task_obj.split(split, limit)  # fail on an empty split before loading any model
    if num_fewshot < 0:
        from loralab.errors import UserInputError

        raise UserInputError(f"num_fewshot must be >= 0, got {num_fewshot}", param="num_fewshot")
    lm = model if isinstance(model, LoadedModel) else load_model(
        model, device=device, allow_pickle=allow_pickle, trust_remote_code=trust_remote_code)
    template_sha = None
    if apply_chat_template:  # before the adapter is checked or anything is scored
        from loralab.eval.chat import chat_template, template_sha256

        chat_template(lm.tokenizer, f"the tokenizer of model {lm.name!r}")
        template_sha = template_sha256(lm.tokenizer)
    net = lm.model
    if adapter is not None:
        from loralab.moe.adapters import attach_adapter

        net = attach_adapter(net, adapter, allow_pickle=allow_pickle, allow_base_mismatch=allow_base_mismatch)
    routing = _routing_context(net, task_obj)
    if prec.device_type != model_device(net).type:  # a model given on another device than it was asked for
        prec = resolve_precision(prec.name, model_device(net))
    try:
        with Timer() as timer, routing, prec.autocast():
            output = evaluate(net, lm.tokenizer, task_obj, split=split, limit=limit, num_fewshot=num_fewshot,
                              batch_size=batch_size, log_samples=log_samples, progress=progress,
                              apply_chat_template=apply_chat_template)
    except TaskRoutingError:
        raise TaskRoutingError(f"adapter {str(adapter)!r}: this {net.method} checkpoint routes by task and was "
                               f"trained on {', '.join(net.tasks)}, not {task_obj.name!r}; evaluate one of those "
                               "tasks, or fold it for this task with `loralab merge --nearest N`") from None
    extra = {
        "adapter": str(adapter) if adapter is not None else None,
        "model_source": lm.source,
        "model_revision": lm.revision,
        "limit": limit,
        "num_fewshot": num_fewshot,
        "apply_chat_template": apply_chat_template,
        "device": str(model_device(net)),
        "precision": prec.to_dict(),
    }
    if template_sha is not None:
        extra["chat_template_sha256"] = template_sha
    record = result_record(model_name=lm.name, task=task_obj, split=split, output=output,
                           seconds=timer.seconds, extra=extra)
    if log_outcomes:
        record["outcomes"] = output.outcomes
    if out is not None:
        atomic_write_json(out, record)
        logger.debug("wrote %s", out)  # debug: the CLI prints its own line for it
    return record


def _routing_context(net, task: Task):
    """Task-conditioned methods route by the evaluated task's id (when they were trained on it)."""
    import contextlib

    from loralab.moe.model import MoEModel

    if isinstance(net, MoEModel) and task.name in net.tasks:
        return net.routing(task=task.name, record=False)
    if isinstance(net, MoEModel):
        return net.routing(record=False)
    return contextlib.nullcontext()


def export_task(
    task: str | Task,
    out: str | os.PathLike[str],
    *,
    split: str = "test",
    limit: int | None = None,
    num_fewshot: int = 0,
    data_dir: str | os.PathLike[str] | None = None,
) -> int:
    """Write the rendered examples of a split as a unified-format JSONL (exactly the scored strings)."""
    check_output_file(out, what="task export", option="out", recognise=is_task_export)  # only our own exports
    task_obj = task if isinstance(task, Task) else load_task(task, data_dir=data_dir)
    examples = task_obj.split(split, limit)
    records = [example_record(task_obj, ex, task_obj.prompt(ex, task_obj.fewshot_examples(ex, num_fewshot)))
               for ex in examples]
    return write_jsonl(Path(out), records)
