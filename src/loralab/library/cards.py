"""Model cards: the `README.md` of every adapter, method checkpoint and merged model loralab writes.

A card is a `huggingface_hub.ModelCard`: YAML metadata that the hub indexes (`base_model` when the base model
has a hub id, `library_name`, `tags`, `pipeline_tag`, a `model-index` of the evaluation results when they are
known) and a Markdown body for people. The metadata also holds a `loralab` block with what loralab knows of the
artifact: its kind, method, tasks, base model (the name loralab loads it by, where it was loaded from, revision),
hyperparameters, method settings, metrics and the loralab version; `read_card_info` reads it back.

A card holds no wall-clock value (no creation time, no seconds) and rounds metrics to 4 decimals, so a resumed
library build writes the same card bytes as an uninterrupted one: a library entry and a PEFT-format method
output record the card's SHA-256 with their other files (it is written before they are hashed). A method
checkpoint records the hash of its weights only, so its card can be edited (on the hub, say) without the
checkpoint being refused.

`adapter_config.json`'s `base_model_name_or_path` is set from the same base-model reference
(`base_model_ref`): the hub id, or the local folder the model was loaded from; a built-in random model
(`tiny-*`) has neither and is named by its alias, which `loralab.load_model` loads.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from loralab.utils.io import dumps_json, read_json

if TYPE_CHECKING:
    from huggingface_hub import ModelCard
    from torch import nn

    from loralab.library.store import AdapterEntry
    from loralab.models import LoadedModel

logger = logging.getLogger(__name__)

CARD_FILE = "README.md"
ADAPTER_CONFIG = "adapter_config.json"
Kind = Literal["library-lora", "method-checkpoint", "merged-model"]
_HERE = "REPO_ID_OR_FOLDER"
_TITLES = {"library-lora": "adapter", "method-checkpoint": "checkpoint", "merged-model": "merged model"}


@dataclass(frozen=True)
class BaseModelRef:
    """The base model an artifact was made from, as every file that names it spells it.

    Attributes:
        name: What `loralab.load_model` takes (alias, folder as given, hub id); None if unknown.
        name_or_path: `adapter_config.json`'s `base_model_name_or_path`: the hub id, the resolved local folder the
            model was loaded from, or the alias of a built-in random model.
        revision: The hub commit, when the model came from the hub.
        source: loralab's record of where it came from (`ModelIdentity.source`).
        hub_id: The card's `base_model` (a hub repo id), when there is one.
    """

    name: str | None
    name_or_path: str | None
    revision: str | None = None
    source: str | None = None
    hub_id: str | None = None

    def to_dict(self) -> dict[str, str]:
        return {k: v for k, v in (("name", self.name), ("name_or_path", self.name_or_path),
                                  ("revision", self.revision), ("source", self.source), ("hub_id", self.hub_id))
                if v is not None}


def base_model_ref(model: nn.Module | LoadedModel) -> BaseModelRef:
    """The `BaseModelRef` of a `LoadedModel` or of a model module (its loralab identity, else transformers' name)."""
    from loralab.models.loading import LoadedModel, is_hub_id, model_identity
    from loralab.models.smollm2 import SMOLLM2_ALIAS, SMOLLM2_UPSTREAM

    module = model.model if isinstance(model, LoadedModel) else model
    identity = model_identity(module)
    if identity is None:  # not loaded by load_model: what transformers recorded (empty for a from-config model)
        given = getattr(module, "name_or_path", None) or None
        hub = given if given is not None and is_hub_id(given) and not Path(given).exists() else None
        return BaseModelRef(name=given, name_or_path=given, hub_id=hub)
    source = identity.source
    from_hub = is_hub_id(source) and not Path(source).is_dir()
    if from_hub or Path(source).is_dir():
        name_or_path = source
    else:  # a built-in random model (`random-init:<arch>:seed=<n>`): no folder, no hub repo; its alias loads it
        name_or_path = identity.name
    hub_id = source if from_hub else SMOLLM2_UPSTREAM if identity.name == SMOLLM2_ALIAS else None
    return BaseModelRef(name=identity.name, name_or_path=name_or_path, revision=identity.revision, source=source,
                        hub_id=hub_id)


def set_adapter_base_model(folder: str | os.PathLike[str], base: BaseModelRef) -> None:
    """Write `base.name_or_path` (and the revision, when known) into `folder/adapter_config.json`.

    PEFT records the module's `name_or_path`: empty for a model built from a config, and whatever path
    transformers was given otherwise; this is what loralab loaded. Keys are written sorted, as
    `normalize_adapter_config` writes them, so the file's bytes do not depend on the process.
    """
    path = Path(folder) / ADAPTER_CONFIG
    config = read_json(path, what="adapter config")
    config["base_model_name_or_path"] = base.name_or_path
    if base.revision is not None:
        config["revision"] = base.revision
    path.write_text(dumps_json(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


@dataclass
class CardInfo:
    """What a card says; `model_card` renders it, `read_card_info` reads it back from a card's metadata.

    Attributes:
        kind: library-lora (a PEFT LoRA of one task), method-checkpoint (`loralab train`, any method) or
            merged-model (`loralab merge`).
        method: The method's registry name (`lora` for a library LoRA).
        base: The base model.
        tasks: The tasks it was trained on (a merged model: the task it was merged for first).
        hyperparameters: The shared training hyperparameters (`LoRAHparams`), or what an imported adapter's
            config says.
        method_config: The method's own settings.
        metrics: Metric name -> value (train loss, validation loss, evaluation results), rounded when rendered.
        evaluation: The evaluation of the adapter, when one ran: `task`, `metric`, `value`, `split`, `n`
            (and `base`, the base model's value): becomes the card's model-index.
        library_name: The hub's `library_name`: peft, loralab or transformers.
        details: Further facts for the body, label -> text (experts, origin, merged task, ...).
        versions: Package versions it was written with.
    """

    kind: Kind
    method: str
    base: BaseModelRef
    tasks: list[str]
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    method_config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    evaluation: dict[str, Any] | None = None
    library_name: str = "peft"
    details: dict[str, str] = field(default_factory=dict)
    versions: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------------- what each artifact says


def library_card_info(entry: AdapterEntry, base: BaseModelRef) -> CardInfo:
    """The card of a library entry (`AdapterEntry`), trained or imported."""
    metrics = _train_metrics(entry.metrics.get("train_loss"), entry.metrics.get("train_steps"),
                             entry.metrics.get("train_examples"), entry.metrics.get("val_loss"))
    evaluation = None
    ev = entry.metrics.get("eval")
    if isinstance(ev, Mapping) and isinstance(ev.get("adapter"), Mapping) and ev.get("metric") in ev["adapter"]:
        metric = ev["metric"]
        evaluation = {"task": entry.task, "metric": metric, "value": ev["adapter"][metric], "split": ev.get("split"),
                      "n": ev.get("n")}
        metrics[f"eval {metric} ({ev.get('split')}, n={ev.get('n')})"] = ev["adapter"][metric]
        if isinstance(ev.get("base"), Mapping) and metric in ev["base"]:
            evaluation["base"] = ev["base"][metric]
            metrics[f"eval {metric}, base model"] = ev["base"][metric]
    details = {"domain": entry.domain, "origin": entry.origin}
    if entry.precision_name():
        details["precision"] = entry.precision_name()
    if entry.data_hash:
        details["training data (SHA-256 of example ids)"] = entry.data_hash
    return CardInfo(kind="library-lora", method="lora", base=base, tasks=[entry.task],
                    hyperparameters=dict(entry.hparams), metrics=metrics, evaluation=evaluation, library_name="peft",
                    details=details, versions=dict(entry.versions))


def checkpoint_card_info(meta: Mapping[str, Any], base: BaseModelRef, *, library_name: str) -> CardInfo:
    """The card of a method checkpoint, from its record (`loralab_method.json` or `loralab_train.json`)."""
    train = meta.get("train") if isinstance(meta.get("train"), Mapping) else {}
    metrics = _train_metrics(train.get("loss"), train.get("steps"), train.get("examples"), train.get("val_loss"))
    details: dict[str, str] = {}
    experts = meta.get("experts") or []
    if experts:
        details["experts (library LoRAs)"] = ", ".join(str(e.get("task", e)) if isinstance(e, Mapping) else str(e)
                                                       for e in experts)
    precision = meta.get("precision")
    if isinstance(precision, Mapping) and precision.get("name"):
        details["precision"] = str(precision["name"])
    if meta.get("source"):
        details["source"] = str(meta["source"])
    merge = meta.get("merge")
    if isinstance(merge, Mapping):
        details["merge"] = ", ".join(f"{k}={v}" for k, v in merge.items() if k != "experts")
    return CardInfo(kind="method-checkpoint", method=str(meta.get("method")), base=base,
                    tasks=[str(t) for t in meta.get("tasks") or []], hyperparameters=dict(meta.get("hparams") or {}),
                    method_config=dict(meta.get("config") or {}), metrics=metrics, library_name=library_name,
                    details=details, versions=dict(meta.get("versions") or {}))


def merged_card_info(adapter: str | os.PathLike[str], record: Mapping[str, Any], base: BaseModelRef) -> CardInfo:
    """The card of a merged model: what the adapter's own card (or metadata) says, as a plain transformers model."""
    from loralab.utils.env import package_versions

    source = folder_card_info(adapter, base)
    merged_task = record.get("merged_task")
    tasks = [merged_task] if merged_task else list(source.tasks) if source is not None else []
    details = {"merged from": str(adapter)}
    if merged_task:
        details["merged for task"] = str(merged_task)
        if source is not None and source.tasks != [merged_task]:
            details["trained on tasks"] = ", ".join(source.tasks)
    if record.get("nearest_task"):
        details["unseen task"] = f"{record.get('task')} (merged as nearest training task {record['nearest_task']})"
    method = str(record.get("method") or (source.method if source is not None else "peft"))
    return CardInfo(kind="merged-model", method=method, base=base, tasks=[str(t) for t in tasks],
                    hyperparameters=dict(source.hyperparameters) if source is not None else {},
                    method_config=dict(source.method_config) if source is not None else {},
                    metrics=dict(source.metrics) if source is not None else {}, library_name="transformers",
                    details={**(source.details if source is not None else {}), **details},
                    versions=package_versions())


def folder_card_info(folder: str | os.PathLike[str], base: BaseModelRef) -> CardInfo | None:
    """The `CardInfo` of an adapter or checkpoint folder loralab wrote: its card's, else its metadata's."""
    from loralab.library.adapters import METHOD_FILE, TRAIN_FILE, read_artifact_json
    from loralab.library.store import ENTRY_FILE, read_entry

    folder = Path(folder)
    info = read_card_info(folder)
    if info is not None:
        return info
    if (folder / ENTRY_FILE).is_file():
        return library_card_info(read_entry(folder / ENTRY_FILE), base)
    for name, library_name in ((METHOD_FILE, "loralab"), (TRAIN_FILE, "peft")):
        if (folder / name).is_file():
            meta = read_artifact_json(folder / name, "checkpoint metadata")
            if isinstance(meta, Mapping):
                return checkpoint_card_info(meta, base, library_name=library_name)
    return None


# ----------------------------------------------------------------------------------- rendering


def model_card(info: CardInfo) -> ModelCard:
    """The `huggingface_hub.ModelCard` of `info` (metadata + Markdown body)."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    from loralab import __version__

    title = _title(info)
    evaluation = info.evaluation
    eval_results = None
    if evaluation is not None and _number(evaluation.get("value")) is not None:
        eval_results = [EvalResult(task_type="text-generation", dataset_type=str(evaluation["task"]),
                                   dataset_name=str(evaluation["task"]), dataset_split=evaluation.get("split"),
                                   metric_type=str(evaluation["metric"]),
                                   metric_value=_number(evaluation["value"]),
                                   metric_name=f"{evaluation['metric']} (n={evaluation.get('n')})")]
    loralab_meta = {"version": __version__, "kind": info.kind, "method": info.method, "tasks": list(info.tasks),
                    "base_model": info.base.to_dict(), "hyperparameters": _plain(info.hyperparameters),
                    "method_config": _plain(info.method_config), "metrics": _plain(_rounded(info.metrics)),
                    "details": dict(info.details)}
    if info.evaluation is not None:
        loralab_meta["evaluation"] = _plain(_rounded(info.evaluation))
    data = ModelCardData(
        base_model=info.base.hub_id,
        base_model_relation=(None if info.base.hub_id is None else "finetune" if info.kind == "merged-model"
                             else "adapter"),
        library_name=info.library_name, pipeline_tag="text-generation",
        tags=_unique(["loralab", "lora", info.method, info.kind, *(["peft"] if info.library_name == "peft" else [])]),
        model_name=title if eval_results else None, eval_results=eval_results, loralab=loralab_meta,
    )
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{_body(info, title, __version__)}")


def write_model_card(folder: str | os.PathLike[str], info: CardInfo) -> Path:
    """Write `info`'s card as `folder/README.md` (replacing PEFT's template card there); returns the path.

    `folder` is the temporary folder of an atomic write: the card appears with the rest of the artifact.
    """
    path = Path(folder) / CARD_FILE
    path.write_text(str(model_card(info)), encoding="utf-8")
    return path


def read_card_info(folder: str | os.PathLike[str]) -> CardInfo | None:
    """The `CardInfo` a loralab card in `folder` holds (None without a card, or for a card loralab did not write)."""
    import yaml
    from huggingface_hub import ModelCard

    path = Path(folder) / CARD_FILE
    if not path.is_file():
        return None
    try:
        card = ModelCard.load(path)
    except (OSError, ValueError, yaml.YAMLError) as exc:  # a hand-written README that is not a model card: not ours
        logger.debug("%s: not a model card (%s)", path, exc)
        return None
    meta = card.data.to_dict().get("loralab")
    if not isinstance(meta, Mapping) or meta.get("kind") not in _TITLES:
        return None
    base = meta.get("base_model") if isinstance(meta.get("base_model"), Mapping) else {}
    return CardInfo(kind=meta["kind"], method=str(meta.get("method")),
                    base=BaseModelRef(name=base.get("name"), name_or_path=base.get("name_or_path"),
                                      revision=base.get("revision"), source=base.get("source"),
                                      hub_id=base.get("hub_id")),
                    tasks=list(meta.get("tasks") or []), hyperparameters=dict(meta.get("hyperparameters") or {}),
                    method_config=dict(meta.get("method_config") or {}), metrics=dict(meta.get("metrics") or {}),
                    evaluation=meta.get("evaluation"), library_name=str(card.data.library_name or ""),
                    details={str(k): str(v) for k, v in (meta.get("details") or {}).items()})


def _title(info: CardInfo) -> str:
    base = info.base.name or info.base.name_or_path or "an unnamed base model"
    what = "LoRA" if info.kind == "library-lora" else info.method
    tasks = ", ".join(info.tasks) if info.tasks else "no task"
    return f"{what} {_TITLES[info.kind]} for {tasks} on {base}"


def _body(info: CardInfo, title: str, version: str) -> str:
    lines = [f"# {title}", "", _summary(info), "", "## Base model", "", "| | |", "|---|---|"]
    base = info.base
    for label, value in (("loralab name", base.name), ("loaded from", base.name_or_path), ("revision", base.revision),
                         ("hub id", base.hub_id)):
        if value is not None:
            lines.append(f"| {label} | `{value}` |")
    lines += ["", "## Training", "", f"- method: `{info.method}`",
              f"- tasks: {', '.join(f'`{t}`' for t in info.tasks) or 'none'}"]
    lines += [f"- {label}: {value}" for label, value in info.details.items()]
    for heading, values in (("Hyperparameters", info.hyperparameters), ("Method settings", info.method_config)):
        if values:
            lines += ["", f"### {heading}", "", "| name | value |", "|---|---|"]
            lines += [f"| {k} | {_cell(v)} |" for k, v in values.items()]
    if info.metrics:
        lines += ["", "## Metrics", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {_cell(v)} |" for k, v in _rounded(info.metrics).items()]
    lines += ["", "## How to use", "", "```python", *_usage(info), "```", "", "## Framework versions", "",
              f"- loralab {version}"]
    lines += [f"- {name} {info.versions[name]}" for name in ("transformers", "peft", "torch")
              if info.versions.get(name)]
    return "\n".join(lines) + "\n"


def _summary(info: CardInfo) -> str:
    if info.kind == "library-lora":
        return ("A PEFT LoRA adapter from a loralab LoRA library: one adapter per (base model, task), every adapter "
                "of the library trained with the same hyperparameters, the loss on the answer tokens only.")
    if info.kind == "merged-model":
        return ("A plain transformers model: the adapter's weight update for the task was folded into the base "
                "weights by `loralab merge`, so it runs at the base model's cost.")
    if info.library_name == "peft":
        return f"A PEFT LoRA adapter written by `loralab train --method {info.method}`."
    return (f"A loralab `{info.method}` checkpoint (`loralab train --method {info.method}`): the method's adapter "
            "tensors and settings; the base model is not included.")


def _usage(info: CardInfo) -> list[str]:
    base = info.base.name_or_path or "BASE_MODEL"
    name = info.base.name or base
    where = f'here = "{_HERE}"  # this repository\'s id, or the folder holding this card'
    if info.kind == "merged-model":
        return ["from transformers import AutoModelForCausalLM, AutoTokenizer", "", where,
                "model = AutoModelForCausalLM.from_pretrained(here)",
                "tokenizer = AutoTokenizer.from_pretrained(here)"]
    if info.library_name == "peft":
        lines = ["import loralab", "", where, f'lm = loralab.load_model("{name}")',
                 "model = loralab.attach_adapter(lm.model, here)  # checks the recorded hashes and the base model"]
        if info.base.source is not None and base == info.base.source:  # a hub repo or a folder transformers reads
            lines += ["", "# or with PEFT alone:", "from peft import PeftModel",
                      "from transformers import AutoModelForCausalLM",
                      f'model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained("{base}"), here)']
        return lines
    return ["from loralab.moe.model import MoEModel", "", where,
            f'model = MoEModel.from_pretrained(here, base_model="{name}")  # hash-checked, built on the base model']


def _train_metrics(loss: Any, steps: Any, examples: Any, val_loss: Any) -> dict[str, Any]:
    metrics: dict[str, Any] = {}
    if _number(loss) is not None:
        metrics["train loss"] = loss
    if isinstance(steps, int) and steps > 0:
        metrics["train steps"] = steps
    if isinstance(examples, int) and examples > 0:
        metrics["train examples"] = examples
    if isinstance(val_loss, Sequence) and val_loss and isinstance(val_loss[-1], Mapping):
        last = val_loss[-1]
        if _number(last.get("loss")) is not None:
            metrics[f"validation loss (step {last.get('step')})"] = last["loss"]
    return metrics


def _number(value: Any) -> float | int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value if math.isfinite(value) else None


def _rounded(values: Mapping[str, Any]) -> dict[str, Any]:
    """Floats to 4 decimals: what a card shows, and the same bytes when training noise is below that."""
    return {k: round(v, 4) if isinstance(v, float) and math.isfinite(v) else v for k, v in values.items()}


def _plain(value: Any) -> Any:
    """`value` as YAML-safe plain data (tuples as lists, non-finite floats as None)."""
    import json

    return json.loads(dumps_json(value))


def _cell(value: Any) -> str:
    text = value if isinstance(value, str) else dumps_json(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _unique(items: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(i for i in items if i))
