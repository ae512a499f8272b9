"""Build a LoRA library: one adapter per task, all with the same hyperparameters; and import PEFT LoRAs.

The library folder must be absent, empty, or a LoRA library loralab wrote (adding tasks to it is the
point of re-running; `is_library_dir`): a folder holding anything else is refused before any work. With
`report_to: tensorboard` each adapter's training events are kept in `LIB/<model>/<task>/tensorboard/`,
published with the adapter (the trainer's work folder they are written to is removed after training); any
`report_to` integration is checked before the model loads, and each entry records the integrations and that
folder as `metrics.tracking` (`loralab.training.tracking`).
Every adapter is trained and evaluated in one resolved precision (`loralab.utils.precision`), recorded in
its entry; a library holds one precision per model, as it holds one hyperparameter set. With `val_every`,
each entry's metrics carry `val_loss` ({"step", "loss"} per validation); validation settings change no weight,
so they do not count as other hyperparameters when a library is extended.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loralab.data import Task, load_task
from loralab.errors import UserInputError
from loralab.training.features import validation_examples
from loralab.training.hparams import LoRAHparams, training_precision
from loralab.library.cards import (BaseModelRef, base_model_ref, library_card_info, set_adapter_base_model,
                                   write_model_card)
from loralab.training.tracking import check_integrations, keep_events
from loralab.library.store import ENTRY_FILE, FORMAT, MANIFEST_FILE, AdapterEntry, Library, check_name, model_slug
from loralab.models import LoadedModel, find_linear_targets, load_model
from loralab.utils.io import atomic_dir, check_output_dir, dumps_json, read_json
from loralab.utils.precision import Precision

logger = logging.getLogger(__name__)
OUTPUT_KIND = "library"


def lora_config(model, hp: LoRAHparams):
    """The PEFT LoraConfig of the library's hyperparameters; targets found by module type."""
    from peft import LoraConfig

    targets = find_linear_targets(model) if hp.target_modules == "all-linear" else list(hp.target_modules)
    return LoraConfig(r=hp.rank, lora_alpha=hp.alpha, lora_dropout=hp.dropout, target_modules=targets,
                      task_type="CAUSAL_LM", bias="none")


def normalize_adapter_config(folder: Path, base: BaseModelRef | None = None) -> None:
    """Sort `target_modules` in a saved adapter_config.json: PEFT keeps them in a set, so the written order
    (and the file's hash) would change from one process to the next with Python's string hashing. With `base`,
    also record the base model loralab loaded as `base_model_name_or_path` (`loralab.library.cards`)."""
    path = Path(folder) / "adapter_config.json"
    config = read_json(path, what="adapter config")
    if isinstance(config.get("target_modules"), list):
        config["target_modules"] = sorted(config["target_modules"])
        path.write_text(dumps_json(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if base is not None:
        set_adapter_base_model(folder, base)


def is_library_dir(folder: Path) -> bool:
    """A library loralab wrote: its manifest, an adapter entry in place, or the work folder of a first adapter.

    Libraries carry no output marker (their layout is the format): the manifest decides when there is one;
    a build killed before its first manifest has an entry or a trainer run record under `.work/`.
    """
    from loralab.training.checkpoints import RUN_FILE

    manifest = folder / MANIFEST_FILE
    if manifest.is_file():
        data = read_json(manifest, what="library manifest")
        return isinstance(data, dict) and data.get("format") == FORMAT
    for entry in folder.glob(f"*/*/{ENTRY_FILE}"):
        data = read_json(entry, what="library entry")
        return isinstance(data, dict) and isinstance(data.get("task"), str) and isinstance(data.get("model"), str)
    return any(folder.glob(f".work/*/*/{RUN_FILE}"))


def check_library_out(path: str | os.PathLike[str], option: str = "out") -> Path:
    """Fail before any work unless `path` is absent, empty, or a loralab LoRA library (see the module docstring)."""
    return check_output_dir(path, kind=OUTPUT_KIND, what="LoRA library", option=option, recognise=is_library_dir)


def data_hash(examples) -> str:
    """SHA-256 over the (content-derived) ids of the training examples, in order."""
    return hashlib.sha256("\n".join(ex.id for ex in examples).encode()).hexdigest()


def build_library(
    model: str | LoadedModel,
    tasks: Sequence[str | Task],
    out: str | os.PathLike[str],
    *,
    hparams: LoRAHparams | None = None,
    eval_split: str = "test",
    eval_limit: int | None = 200,
    evaluate_base: bool = True,
    data_dir: str | os.PathLike[str] | None = None,
    device: str | None = None,
    progress: bool = True,
    precision: str | None = "auto",
    resume: bool | None = None,
) -> list[AdapterEntry]:
    """Train one LoRA per task (skipping tasks already in the library) and return every entry built or found.

    All tasks are loaded and checked before any training starts. Each adapter is trained on the task's
    train split, evaluated with and without the adapter on `eval_split` (first `eval_limit` examples),
    and moved into the library in one rename. `precision` ("auto", "fp32", "bf16", "fp16") is the autocast of
    training and evaluation; "auto" is bf16 where the hardware has it natively, else fp32 (or the
    hyperparameters' explicit `mixed_precision`). The resolved one is recorded in every entry, and extending
    a library built in another precision is refused.

    Re-running a build continues it: finished adapters are always skipped, and an adapter interrupted
    mid-training continues from its last trainer checkpoint (`checkpoint_steps`) in `out/.work/` when that was
    trained with the same settings. `resume` makes this explicit: None (default) as said, a checkpoint of other
    settings removed with a warning; True: `out` must be a library already (`ResumeError` otherwise), and a
    checkpoint of other settings is an error, nothing removed; False: interrupted adapters start over (their
    checkpoints removed; finished adapters are still skipped: they are the library).
    """
    from loralab.training.trainer import trainer_device

    hp = hparams or LoRAHparams()
    check_library_out(out)
    if resume and not (Path(out).is_dir() and is_library_dir(Path(out))):
        from loralab.errors import ResumeError

        raise ResumeError(f"resume: {out} is not a LoRA library yet: there is no build to continue",
                          param="resume")
    lib = Library(out)
    task_objs = [t if isinstance(t, Task) else load_task(t, data_dir=data_dir) for t in tasks]
    names = [check_name("task", t.name) for t in task_objs]
    if len(set(names)) != len(names):
        raise UserInputError(f"tasks lists a task twice: {names}", param="tasks")
    for t in task_objs:
        t.split("train")
        if hp.val_every is not None:
            validation_examples(t, hp)
        if eval_limit != 0:
            t.split(eval_split, eval_limit)
    prec = training_precision(precision, hp, trainer_device())  # a bad name fails before the model loads
    check_integrations(hp.report_to)  # so does a reporting integration whose package is missing
    lm = model if isinstance(model, LoadedModel) else load_model(model, device=device)
    slug = model_slug(lm.name)
    _check_shared_hparams(lib, slug, hp, prec)
    built = []
    for i, task in enumerate(task_objs, start=1):
        if lib.has(slug, task.name):
            logger.info("[%d/%d] %s: already in the library, skipped", i, len(task_objs), task.name)
            built.append(lib.get(slug, task.name, verify=False))
            # a kill between publishing the adapter and removing its checkpoints leaves them behind
            shutil.rmtree(lib.work_dir(slug, task.name), ignore_errors=True)
            continue
        logger.info("[%d/%d] %s: training", i, len(task_objs), task.name)
        built.append(_build_one(lm, task, lib, slug, hp, prec, eval_split, eval_limit, evaluate_base, progress,
                                resume))
        lib.refresh_manifest()
    lib.refresh_manifest()
    lib.remove_empty_work_dirs()
    return built


def _check_shared_hparams(lib: Library, slug: str, hp: LoRAHparams, precision: Precision) -> None:
    """A library trains every adapter of a model with one hyperparameter set and one precision: refuse to mix."""
    from loralab.errors import ConfigError

    wanted = {**hp.to_dict(), "precision": precision.name}
    for entry in lib.entries(slug):
        if entry.origin != "trained":
            continue
        have = {**entry.hparams, "precision": entry.precision_name()}
        diff = sorted(k for k in set(wanted) | set(have)
                      if k not in LoRAHparams.LOGGING_FIELDS and wanted.get(k) != have.get(k))
        if diff:
            shown = ", ".join(f"{k}={have.get(k)!r} (asked {wanted.get(k)!r})" for k in diff[:4])
            same = "--precision" if diff == ["precision"] else "--config/--max-steps"
            raise ConfigError(f"library {lib.root} was built for {slug} with other hyperparameters: {shown}; "
                              f"use the same {same}, or another --out")


def _build_one(lm: LoadedModel, task: Task, lib: Library, slug: str, hp: LoRAHparams, precision: Precision,
               eval_split: str, eval_limit: int | None, evaluate_base: bool, progress: bool,
               resume: bool | None = None) -> AdapterEntry:
    from peft import get_peft_model
    from transformers import set_seed

    from loralab.training.features import validation_features
    from loralab.training.trainer import train_adapter, training_features
    from loralab.utils.env import git_hash, package_versions

    start = time.perf_counter()
    set_seed(hp.seed)
    peft_model = get_peft_model(lm.model, lora_config(lm.model, hp))
    try:
        train_examples = task.split("train")
        features = training_features(task, lm.tokenizer, hp, train_examples)
        work = lib.work_dir(slug, task.name)
        val_features = validation_features(task, lm.tokenizer, hp) if hp.val_every is not None else None
        stats = train_adapter(peft_model, lm.tokenizer, features, hp, work, description=task.name, progress=progress,
                              precision=precision, val_features=val_features, resume=resume)
        metrics: dict[str, Any] = {"train_loss": stats.train_loss, "train_steps": stats.steps,
                                   "train_examples": stats.examples, "train_seconds": round(stats.seconds, 2)}
        if stats.val_history:
            metrics["val_loss"] = stats.val_history
        if stats.tracking is not None:
            metrics["tracking"] = stats.tracking
        if eval_limit != 0:
            with precision.autocast():
                metrics["eval"] = _evaluate(peft_model, lm.tokenizer, task, eval_split, eval_limit, evaluate_base,
                                            progress)
        entry = AdapterEntry(
            task=task.name, model=lm.name, model_slug=slug, domain=task.domain, origin="trained",
            model_source=lm.source, model_revision=lm.revision, hparams=hp.to_dict(), metrics=metrics,
            precision=precision.to_dict(),
            data_hash=data_hash(train_examples[: hp.max_train_examples]),
            versions=package_versions(), git_hash=git_hash(),
        )
        with atomic_dir(lib.adapter_dir(slug, task.name)) as tmp:
            peft_model.save_pretrained(str(tmp), safe_serialization=True)
            base = base_model_ref(lm)
            normalize_adapter_config(tmp, base)
            keep_events(work, tmp)  # a folder: the entry hashes (and verifies) the adapter's files only
            # replaces PEFT's template card; written before write_entry, which hashes it with the other files
            write_model_card(tmp, library_card_info(entry, base))
            entry.seconds = round(time.perf_counter() - start, 2)
            lib.write_entry(tmp, entry)
        shutil.rmtree(work, ignore_errors=True)
        entry.path = lib.adapter_dir(slug, task.name)
        return entry
    finally:
        lm.model = peft_model.unload()  # the base model without LoRA layers, for the next task


def _evaluate(peft_model, tokenizer, task: Task, split: str, limit: int | None, evaluate_base: bool,
              progress: bool) -> dict[str, Any]:
    from loralab.eval import evaluate

    result: dict[str, Any] = {"split": split, "limit": limit, "metric": task.metric}
    result["adapter"] = evaluate(peft_model, tokenizer, task, split=split, limit=limit, progress=progress).metrics
    if evaluate_base:
        with peft_model.disable_adapter():
            result["base"] = evaluate(peft_model, tokenizer, task, split=split, limit=limit, progress=progress).metrics
    result["n"] = len(task.split(split, limit))
    return result
