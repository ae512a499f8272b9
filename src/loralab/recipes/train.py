"""One training path for every method: build the method around the base model, train with HF Trainer, save.

    train_method("loramoe", "smollm2-135m", ["social_iqa"], "runs/loramoe",
                 library="runs/lib", experts=["winowhy", "navigate"])

Every method trains on the same features (answer-only loss, the library's shared hyperparameters) so
methods are compared on equal terms; with several tasks the features are concatenated (multi-task)
and each carries its task id (and LoRAMoE task type) for routing. Every forward runs in one resolved
precision (autocast; trainable parameters and optimizer state stay fp32), recorded in the checkpoint's
info as "precision". With `val_every` in the hyperparameters, the validation loss (on `val_examples` of
every task's validation split, routed like the training features) is recorded as `train.val_loss`, a list
of {"step", "loss"}; a task without a validation split is refused before the model loads.

`out` is replaced as a whole, so it must be absent, an empty folder, or a checkpoint loralab wrote
(any method: re-training replaces it); a folder of anything else is refused before any work. The
trainer's work folder (`.OUT.work` beside it, removed after training) likewise must be absent, empty
or loralab's own.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from loralab.data import Task, load_task
from loralab.errors import UserInputError
from loralab.training.hparams import LoRAHparams, training_precision
from loralab.models import LoadedModel, load_model
from loralab.moe.registry import TrainRequest
from loralab.utils.io import check_output_dir, json_safe, read_json

logger = logging.getLogger(__name__)


def build_method(method: str, lm: LoadedModel, tasks: Sequence[str], *, config: Mapping[str, Any] | None = None,
                 library: str | os.PathLike[str] | None = None, experts: Sequence[str] | None = None):
    """Wrap `lm.model` with `method` (experts from the library when the method uses them)."""
    from loralab.moe.registry import get_method

    spec = get_method(method)
    cfg, loras = _config_and_experts(spec, lm, config, library, experts)
    return spec.build(lm.model, cfg, loras, list(tasks))


def _config_and_experts(spec, lm: LoadedModel, config, library, experts):
    from loralab.moe.experts import load_library_loras

    if experts and spec.library == "none":
        raise UserInputError(f"method {spec.name!r} trains its own experts from scratch; it cannot take --experts")
    if spec.library == "required" and not experts:
        raise UserInputError(f"method {spec.name!r} uses library LoRAs as experts: pass --library and --experts")
    if experts and library is None:
        raise UserInputError("experts needs library (the folder the expert LoRAs come from)",
                             param=("experts", "library"))
    cfg = spec.config_cls.from_dict(config or {})
    loras = load_library_loras(library, lm.name, list(experts)) if experts else None
    return cfg, loras


def is_checkpoint_dir(folder: Path) -> bool:
    """A checkpoint `train_method` wrote (any method): an MoE method config or PEFT provenance in loralab's format."""
    from loralab.moe.methods.baselines import PEFT_FORMAT, PROVENANCE_FILE
    from loralab.moe.model import CONFIG_FILE, FORMAT

    for name, fmt in ((CONFIG_FILE, FORMAT), (PROVENANCE_FILE, PEFT_FORMAT)):
        if (folder / name).is_file():
            data = read_json(folder / name, what="checkpoint metadata")
            if isinstance(data, dict) and data.get("format") == fmt:
                return True
    return False


def check_checkpoint_out(out: str | os.PathLike[str], option: str = "out") -> Path:
    """Fail before any work unless `out` may be replaced by a checkpoint, and so may its work folder."""
    from loralab.training.checkpoints import RUN_FILE

    target = check_output_dir(out, kind="checkpoint", what="method checkpoint", option=option,
                              recognise=is_checkpoint_dir)
    check_output_dir(work_dir(target), kind="work", what="training work folder", option=f"{option} work folder",
                     recognise=lambda folder: (folder / RUN_FILE).is_file())
    return target


def check_resumable(out: str | os.PathLike[str], hp: LoRAHparams) -> Path:
    """`resume=True`: the work folder of `out` must hold a complete checkpoint (before any model loads); return it."""
    from loralab.errors import ResumeError
    from loralab.training.checkpoints import latest_checkpoint

    work = work_dir(out)
    found = latest_checkpoint(work) if work.is_dir() else None
    if found is None:
        why = (f"training saves one every {hp.checkpoint_steps} steps (checkpoint_steps)"
               if hp.checkpoint_steps is not None else
               "checkpoint_steps is not set, so training saves none: set checkpoint_steps=N to save one every N steps")
        done = " (out holds a finished checkpoint: training without it replaces that)" \
            if Path(out).is_dir() and is_checkpoint_dir(Path(out)) else ""
        raise ResumeError(f"resume: no complete checkpoint to resume in {work}{done}; {why}", param="resume")
    return found


def work_dir(out: str | os.PathLike[str]) -> Path:
    """Where the trainer keeps its checkpoints while `out` trains (beside it, hidden; removed when done)."""
    return Path(out).with_name(f".{Path(out).name}.work")


def method_features(tasks: Sequence[Task], tokenizer, hp: LoRAHparams, task_types: Mapping[str, int],
                    validation: bool = False) -> list[dict]:
    """Every task's training (or, `validation`, validation) features with its task id and type for routing."""
    from loralab.training.features import training_features, validation_features

    features = []
    for task_id, task in enumerate(tasks):
        for f in (validation_features(task, tokenizer, hp) if validation else training_features(task, tokenizer, hp)):
            features.append({**f, "task_ids": task_id, "task_types": int(task_types.get(task.name, 0))})
    return features


def train_method(
    method: str,
    model: str | LoadedModel,
    tasks: Sequence[str | Task],
    out: str | os.PathLike[str],
    *,
    library: str | os.PathLike[str] | None = None,
    experts: Sequence[str] | None = None,
    config: Mapping[str, Any] | None = None,
    hparams: LoRAHparams | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    device: str | None = None,
    progress: bool = True,
    precision: str | None = "auto",
    resume: bool | None = None,
) -> dict[str, Any]:
    """Build, train and save a method checkpoint that `loralab eval --adapter OUT` evaluates.

    `precision` ("auto", "fp32", "bf16", "fp16"): the autocast of every forward; "auto" is bf16 where the
    hardware has it natively, else fp32 (or the hyperparameters' explicit `mixed_precision`).
    `resume`: the trainer checkpoints (every `checkpoint_steps` steps) of an interrupted run wait in the work
    folder beside `out` (`work_dir`). None (default): a checkpoint of the same run (hyperparameters, data,
    model, method config) is resumed, one of other settings removed with a warning. True: continue from the
    last complete checkpoint or fail (`ResumeError`) when there is none or it was trained with other settings
    (nothing is removed); False: remove the checkpoints and start over.
    """
    from transformers import set_seed

    from loralab.moe.registry import get_method
    from loralab.training.features import validation_examples
    from loralab.training.tracking import EVENTS_DIR, check_integrations, trainer_logs
    from loralab.training.trainer import train_adapter, trainer_device

    spec = get_method(method)  # an unknown method fails before anything loads
    check_checkpoint_out(out)
    if resume:
        check_resumable(out, hparams or LoRAHparams())
    hp = hparams or LoRAHparams()
    prec = training_precision(precision, hp, trainer_device())
    if spec.trains:  # a reporting integration whose package is missing fails before anything loads
        check_integrations(hp.report_to)
    task_objs = [t if isinstance(t, Task) else load_task(t, data_dir=data_dir) for t in tasks]
    if not task_objs:
        raise UserInputError("tasks must name at least one task", param="tasks")
    for t in task_objs:
        t.split("train")
        if hp.val_every is not None and spec.trains:
            validation_examples(t, hp)
    if experts and library is not None:  # names from here on: the checkpoint records the LoRAs' task names
        from loralab.library.names import resolve_library_tasks

        experts = resolve_library_tasks(library, model.name if isinstance(model, LoadedModel) else model, experts,
                                        data_dir=data_dir)
    lm = model if isinstance(model, LoadedModel) else load_model(model, device=device)
    set_seed(hp.seed)
    if spec.train is not None:
        cfg, loras = _config_and_experts(spec, lm, config, library, experts)
        request = TrainRequest(method, lm, task_objs, Path(out), cfg, hp, Path(library) if library else None,
                               list(experts) if experts else None, loras, progress, prec, resume)
        info = spec.train(request)
        info.setdefault("precision", prec.to_dict())  # a plug-in's own train may not record it in its checkpoint
        info.setdefault("train", {}).setdefault("adapted", peft_adapted(Path(out)))
        return info
    moe = build_method(method, lm, [t.name for t in task_objs], config=config, library=library, experts=experts)
    try:
        task_types = getattr(moe.method_config, "task_types", {}) or {}
        features = method_features(task_objs, lm.tokenizer, hp, task_types)
        val_features = (method_features(task_objs, lm.tokenizer, hp, task_types, validation=True)
                        if hp.val_every is not None else None)
        work = work_dir(out)
        task_batches = bool(getattr(moe.method_config, "task_batches", False)) and len(task_objs) > 1
        run = {"method": method, "config": moe.method_config.to_dict(), "model": lm.name,
               "tasks": [t.name for t in task_objs], "experts": list(experts or [])}
        stats = train_adapter(moe, lm.tokenizer, features, hp, work, description=method, progress=progress,
                              task_batches=task_batches, fingerprint=run, precision=prec, val_features=val_features,
                              resume=resume)
        info = {"train": {"steps": stats.steps, "loss": stats.train_loss, "seconds": round(stats.seconds, 2),
                          "examples": stats.examples, "task_batches": task_batches,
                          "adapted": adapted_modules([name for name, module in moe.model.named_modules()
                                                      if getattr(module, "is_loralab_layer", False)])},
                "hparams": hp.to_dict(), "model": lm.name, "precision": prec.to_dict()}
        if stats.history:
            info["train"]["history"] = stats.history
        if stats.val_history:
            info["train"]["val_loss"] = stats.val_history
        if stats.tracking is not None:
            info["tracking"] = stats.tracking
        # json_safe: the checkpoint's JSON stays strict even if a router statistic in the history is NaN
        moe.save_pretrained(out, extra=json_safe(info), extra_dirs={EVENTS_DIR: trainer_logs(work)})
    finally:
        lm.model = moe.unload()
    shutil.rmtree(work, ignore_errors=True)
    logger.debug("saved %s checkpoint to %s", method, out)  # debug: the CLI prints its own line
    return info


def adapted_modules(names: Sequence[str]) -> dict[str, Any]:
    """What a method adapted, compactly, for a comparison's record: how many linears and which kinds
    (the last name component: q_proj, down_proj, ...), so two cells that adapted different modules show it."""
    return {"n_modules": len(names), "kinds": sorted({name.rsplit(".", 1)[-1] for name in names})}


def peft_adapted(out: Path) -> dict[str, Any]:
    """`adapted_modules` of a PEFT-format output (its adapter_config's target modules; none: nothing adapted).

    PEFT stores the module kinds, not the qualified names, so the count is None there."""
    config_file = out / "adapter_config.json"
    if not config_file.is_file():
        return {"n_modules": 0, "kinds": []}
    from loralab.utils.io import read_json

    targets = read_json(config_file).get("target_modules") or []
    kinds = [targets] if isinstance(targets, str) else list(targets)
    return {"n_modules": None, "kinds": sorted(str(k).rsplit(".", 1)[-1] for k in kinds)}
