"""Baselines: the base model, single-task LoRA, multi-task LoRA, and PEFT's static merges of library LoRAs.

Every baseline but `base` writes a plain PEFT LoRA adapter directory (adapter_config.json +
adapter_model.safetensors, atomically), so `loralab eval --adapter OUT`, `PeftModel.from_pretrained`
and `merge_and_unload()` work on it unchanged; `loralab_train.json` beside it records provenance
(method, config, tasks, experts with hashes, hyperparameters, versions). That file name is not
`loralab_method.json`, so eval never mistakes these directories for loralab method checkpoints.

* `base`: no adapter. The checkpoint is a loralab method checkpoint of an identity method (a
  `loralab_method.json` and an empty `method_model.safetensors`): `loralab eval --adapter OUT` wraps
  the base model in an `MoEModel` that injects nothing, so it evaluates exactly the plain base model
  (the same logits), and the run is recorded like every other method's. Why not a PEFT adapter with
  B = 0: it would also be exact, but would cost LoRA compute at eval and pretend there is an adapter.
  `loralab eval` without `--adapter` is the same evaluation.
* `lora`: the --task's own library LoRA, copied byte for byte from --library when it is there
  (hash-verified); otherwise one PEFT LoRA trained on the task with the given shared hyperparameters
  (the library's own build code: `lora_config`, `training_features`, `train_adapter`). The info says which.
* `multitask_lora`: one PEFT LoRA trained on all --task tasks together (features concatenated, shuffled
  by the Trainer), same hyperparameters and answer-only loss as the library.
* `merge_linear`, `merge_ties`, `merge_dare`: PEFT's `LoraModel.add_weighted_adapter` over the --experts
  library LoRAs, saved as one adapter. Default combination types "linear", "ties" and "dare_ties" (DARE's
  random drop-and-rescale followed by TIES sign election, the usual DARE setting, e.g. mergekit's
  `dare_ties`); density 0.5, majority_sign_method "total". What PEFT does (peft 0.21.2, non-SVD types):
    - A and B are combined *separately* with weights sqrt(|w_i| * s_i) (the sign on A only), so
      "linear" gives B_hat A_hat = (sum_i sqrt(w_i s_i) B_i)(sum_j sqrt(w_j s_j) A_j), which has cross
      terms B_i A_j: it is not sum_i w_i dW_i (PEFT calls it "a very rough approximation"; the "svd"
      types combine the dW_i exactly and re-factorise them to rank r). The merged adapter has
      lora_alpha = r (scaling 1), since the scalings are folded into the factors.
    - "linear", "ties", "dare_*" need every adapter to have the same rank (the merged rank is that rank).
    - "ties" trims each factor to its top `density` fraction by magnitude, elects a sign per entry
      ("total": sign of the weighted sum) and averages the agreeing entries (a disjoint mean);
      "dare_ties" drops entries at random with probability 1 - density and rescales by 1/density
      before the same sign election; "dare_linear" sums after the random drop. DARE is random: it
      runs under `torch.manual_seed(hparams.seed)`.
    - With one adapter PEFT always uses "linear".
  Uniform weights by default: 1/N for the summing types (linear, svd, cat, dare_linear*), so the result
  is an average; 1.0 for the sign-elected types (ties*, dare_ties*), whose disjoint merge already
  averages. `weights` in the config overrides them; `combination_type` may pick another type of the
  same family (see each config's `COMBINATIONS`).
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch

from loralab.errors import AdapterError, ConfigError, UserInputError
from loralab.moe.builder import MethodBuilder
from loralab.moe.config import MethodConfig
from loralab.moe.model import MoEModel
from loralab.moe.registry import MethodSpec, register_method
from loralab.utils.io import atomic_dir, dumps_json, json_safe

logger = logging.getLogger(__name__)

PROVENANCE_FILE = "loralab_train.json"
PEFT_FORMAT = "loralab-peft-adapter/1"
PEFT_FILES = ("adapter_config.json", "adapter_model.safetensors")


# ---------------------------------------------------------------- shared helpers (also used by lorahub)

def peft_format_build(name: str):
    """`MethodSpec.build` of a method whose checkpoint is a plain PEFT adapter: there is no MoEModel to build."""

    def build(model, config, experts, tasks):
        raise UserInputError(f"method {name!r} writes a plain PEFT LoRA adapter, not an MoE model: train it with "
                             "train_method / `loralab train`, then load OUT with `loralab eval --adapter` or PEFT")

    return build


def no_training(seconds: float = 0.0, examples: int = 0) -> dict[str, Any]:
    """The `train` part of the info of a method that trains nothing (loss NaN; null in the JSON)."""
    return {"steps": 0, "loss": math.nan, "seconds": round(seconds, 2), "examples": examples}


def provenance(request, info: dict[str, Any]) -> dict[str, Any]:
    """The content of `loralab_train.json`: what was run, on what, from which experts."""
    from loralab.utils.env import git_hash, package_versions

    return json_safe({
        "format": PEFT_FORMAT, "method": request.method, "config": request.config.to_dict(),
        "base_model": request.lm.name, "tasks": [t.name for t in request.tasks],
        "experts": [lora.provenance() for lora in request.loras or []],
        "versions": package_versions(), "git_hash": git_hash(), **info,
    })


def save_peft_adapter(peft_model, out: Path, meta: dict[str, Any], adapter_name: str = "default",
                      work_dir: Path | None = None) -> None:
    """Write one adapter of `peft_model` as a plain PEFT directory at `out` (atomically), plus provenance; with
    `work_dir`, the Trainer's events from there too (`tracking.keep_events`: a folder, not among the hashed files)."""
    from loralab.library.build import normalize_adapter_config
    from loralab.library.cards import base_model_ref, checkpoint_card_info, write_model_card
    from loralab.library.store import sha256_file
    from loralab.training.tracking import keep_events

    base = base_model_ref(peft_model.get_base_model())  # the model loralab loaded (PEFT wraps it in place)
    with atomic_dir(out) as tmp:
        staging = tmp / ".peft"
        peft_model.save_pretrained(str(staging), selected_adapters=[adapter_name], safe_serialization=True)
        source = staging if adapter_name == "default" else staging / adapter_name  # PEFT nests other names
        for path in source.iterdir():
            if path.is_file():
                shutil.move(str(path), tmp / path.name)
        shutil.rmtree(staging)
        normalize_adapter_config(tmp, base)
        # replaces PEFT's template card (in the folder when an adapter is not nested), before the files are hashed
        write_model_card(tmp, checkpoint_card_info(meta, base, library_name="peft"))
        # the weights' hashes, so every reader (eval, merge, selection) can tell a modified or corrupt file
        files = {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        (tmp / PROVENANCE_FILE).write_text(dumps_json({**meta, "files": files}, indent=2) + "\n", encoding="utf-8")
        if work_dir is not None:
            keep_events(work_dir, tmp)


def check_distinct_experts(request) -> None:
    if len(set(request.experts)) != len(request.experts):
        raise UserInputError(f"--experts names a LoRA twice: {','.join(request.experts)}")


def _refuse_experts(request, why: str) -> None:
    if request.experts:
        raise UserInputError(f"method {request.method!r} {why}; it takes no --experts")


# ---------------------------------------------------------------- base

@dataclass
class BaseModelConfig(MethodConfig):
    """The base model has no settings."""


def build_base(model, cfg: BaseModelConfig, experts, tasks) -> MoEModel:
    """An identity `MoEModel`: nothing injected, no adapter tensors, merging is a no-op (nothing is frozen either)."""
    return MethodBuilder(model, "base").finish(cfg, tasks, merge_deltas=lambda moe, task_id: {})


def train_base(request) -> dict[str, Any]:
    moe = build_base(request.lm.model, request.config, None, [t.name for t in request.tasks])
    info = {"train": no_training(), "hparams": request.hparams.to_dict(), "model": request.lm.name,
            "precision": request.precision.to_dict(), "note": "the base model without adapter: nothing trained"}
    try:
        moe.save_pretrained(request.out, extra=json_safe(info))
    finally:
        request.lm.model = moe.unload()
    return info


# ---------------------------------------------------------------- lora, multitask_lora

@dataclass
class SingleLoRAConfig(MethodConfig):
    """Single-task LoRA has no settings of its own: it uses the library's shared hyperparameters."""


@dataclass
class MultitaskLoRAConfig(MethodConfig):
    """Multi-task LoRA has no settings of its own: it uses the library's shared hyperparameters."""


def train_peft_lora(request, description: str) -> dict[str, Any]:
    """Train one PEFT LoRA on all `request.tasks` (answer-only loss, shared hyperparameters) and save it."""
    from peft import get_peft_model

    from loralab.library.build import lora_config
    from loralab.training.features import validation_features
    from loralab.training.trainer import train_adapter, training_features

    lm, hp = request.lm, request.hparams
    peft_model = get_peft_model(lm.model, lora_config(lm.model, hp))
    work = request.out.with_name(f".{request.out.name}.work")
    try:
        features = [f for task in request.tasks for f in training_features(task, lm.tokenizer, hp)]
        val_features = ([f for task in request.tasks for f in validation_features(task, lm.tokenizer, hp)]
                        if hp.val_every is not None else None)
        stats = train_adapter(peft_model, lm.tokenizer, features, hp, work, description=description,
                              progress=request.progress, fingerprint={"method": request.method, "model": lm.name},
                              precision=request.precision, val_features=val_features, resume=request.resume)
        info = {"train": {"steps": stats.steps, "loss": stats.train_loss, "seconds": round(stats.seconds, 2),
                          "examples": stats.examples}, "hparams": hp.to_dict(), "model": lm.name, "source": "trained",
                "precision": request.precision.to_dict()}
        if stats.val_history:
            info["train"]["val_loss"] = stats.val_history
        if stats.tracking is not None:
            info["tracking"] = stats.tracking
        save_peft_adapter(peft_model, request.out, provenance(request, info), work_dir=work)
    finally:
        lm.model = peft_model.unload()
    shutil.rmtree(work, ignore_errors=True)
    return info


def train_lora(request) -> dict[str, Any]:
    from loralab.library import Library, model_slug

    _refuse_experts(request, "uses the --task's own library LoRA (from --library)")
    if len(request.tasks) != 1:
        raise UserInputError(f"method 'lora' is single-task, got {len(request.tasks)} tasks; use multitask_lora")
    task = request.tasks[0].name
    slug = model_slug(request.lm.name)
    lib = Library(request.library) if request.library is not None else None
    if lib is None or not lib.has(slug, task):
        if lib is not None:
            others = {json.dumps(e.hparams, sort_keys=True) for e in lib.entries(slug) if e.origin == "trained"}
            differ = bool(others - {json.dumps(request.hparams.to_dict(), sort_keys=True)})
            logger.warning("library %s has no %s LoRA for %s: training one%s", request.library, task, slug,
                           " (with other hyperparameters than the library's)" if differ else "")
        info = train_peft_lora(request, description=f"lora {task}")
        info["source"] = "trained" if lib is None else f"trained (task not in library {request.library})"
        return info
    start = time.perf_counter()
    entry = lib.get(slug, task, verify=True)
    metrics = entry.metrics
    if entry.precision_name() != request.precision.name:
        logger.warning("lora: the library's %s LoRA was trained in %s, this run is in %s; it is copied as it is",
                       task, entry.precision_name(), request.precision.name)
    # the copy is what the library trained: its precision is the entry's (older entries: fp32, see precision_name)
    trained_in = entry.precision or {"name": entry.precision_name(), "reason": "library entry without a precision"}
    info = {"train": {"steps": metrics.get("train_steps", 0), "loss": float(metrics.get("train_loss", math.nan)),
                      "seconds": round(time.perf_counter() - start, 2), "examples": metrics.get("train_examples", 0)},
            "hparams": entry.hparams, "model": request.lm.name, "source": "library", "precision": trained_in,
            "library_entry": {**entry.to_dict(), "path": str(entry.path)}}
    with atomic_dir(request.out) as tmp:
        for name in entry.files:  # every file the library hashed: byte-identical copies
            shutil.copyfile(entry.path / name, tmp / name)
        (tmp / PROVENANCE_FILE).write_text(dumps_json(provenance(request, info), indent=2) + "\n", encoding="utf-8")
    return info


def train_multitask_lora(request) -> dict[str, Any]:
    return train_peft_lora(request, description=f"multitask_lora {'+'.join(t.name for t in request.tasks)}")


# ---------------------------------------------------------------- static merges

SUMMING = ("linear", "svd", "cat", "dare_linear", "dare_linear_svd")  # uniform weight 1/N: an average


@dataclass
class MergeConfig(MethodConfig):
    """Settings of a PEFT `add_weighted_adapter` merge.

    Args:
        combination_type: PEFT's combination type (one of the class's `COMBINATIONS`).
        weights: One weight per --experts LoRA, in order; None: uniform (1/N for summing types, 1.0 for
            the sign-elected TIES types, whose disjoint merge already averages).
    """

    COMBINATIONS: ClassVar[tuple[str, ...]] = ("linear", "svd", "cat")

    combination_type: str = "linear"
    weights: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.combination_type not in self.COMBINATIONS:
            raise ConfigError(f"combination_type must be one of {self.COMBINATIONS}, got {self.combination_type!r}")
        if self.weights is not None and (not self.weights or not all(math.isfinite(w) for w in self.weights)):
            raise ConfigError(f"weights must be a non-empty list of finite numbers, got {self.weights!r}")

    def peft_kwargs(self) -> dict[str, Any]:
        return {}

    def resolved_weights(self, n: int) -> list[float]:
        if self.weights is None:
            return [1.0 / n if self.combination_type in SUMMING else 1.0] * n
        if len(self.weights) != n:
            raise ConfigError(f"weights has {len(self.weights)} values for {n} --experts LoRAs")
        return [float(w) for w in self.weights]


@dataclass
class MergeLinearConfig(MergeConfig):
    """`merge_linear`: PEFT "linear" (A and B averaged separately with sqrt weights; see the module docstring)."""


@dataclass
class _PruningMergeConfig(MergeConfig):
    """Adds `density` (fraction of entries kept, in (0, 1]) and `majority_sign_method` ("total" or "frequency")."""

    density: float = 0.5
    majority_sign_method: Literal["total", "frequency"] = "total"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.density <= 1:
            raise ConfigError(f"density must be in (0, 1], got {self.density!r}")

    def peft_kwargs(self) -> dict[str, Any]:
        return {"density": self.density, "majority_sign_method": self.majority_sign_method}


@dataclass
class MergeTiesConfig(_PruningMergeConfig):
    """`merge_ties`: PEFT "ties" (trim to `density`, elect signs, disjoint mean), or "ties_svd"."""

    COMBINATIONS: ClassVar[tuple[str, ...]] = ("ties", "ties_svd")
    combination_type: str = "ties"


@dataclass
class MergeDareConfig(_PruningMergeConfig):
    """`merge_dare`: PEFT "dare_ties" (random drop + rescale, then TIES sign election); or the linear/SVD variants."""

    COMBINATIONS: ClassVar[tuple[str, ...]] = ("dare_ties", "dare_linear", "dare_ties_svd", "dare_linear_svd")
    combination_type: str = "dare_ties"


MERGED = "merged"


def merge_library_loras(model, loras, cfg: MergeConfig, seed: int):
    """Load the library LoRAs into one PeftModel on `model` and add PEFT's weighted merge as adapter "merged".

    Returns the PeftModel (its `unload()` gives `model` back) and the weights used.
    """
    from peft import PeftModel

    names = [f"expert{i}" for i in range(len(loras))]
    weights = cfg.resolved_weights(len(loras))
    peft_model = PeftModel.from_pretrained(model, str(loras[0].path), adapter_name=names[0])
    try:
        for name, lora in zip(names[1:], loras[1:]):
            peft_model.load_adapter(str(lora.path), adapter_name=name)
        torch.manual_seed(seed)  # DARE drops entries at random
        peft_model.add_weighted_adapter(names, weights, MERGED, combination_type=cfg.combination_type,
                                        **cfg.peft_kwargs())
    except ValueError as exc:  # PEFT's own incompatibility messages (ranks, target-module types)
        peft_model.unload()
        raise AdapterError(f"PEFT cannot merge these LoRAs: {str(exc).splitlines()[0]}") from None
    peft_model.set_adapter(MERGED)
    for name in names:  # only the merge is kept (and saved)
        peft_model.delete_adapter(name)
    return peft_model, weights


def train_merge(request) -> dict[str, Any]:
    start = time.perf_counter()
    check_distinct_experts(request)
    cfg, lm = request.config, request.lm
    peft_model, weights = merge_library_loras(lm.model, request.loras, cfg, request.hparams.seed)
    try:
        used = "linear" if len(request.loras) == 1 else cfg.combination_type  # PEFT's rule for one adapter
        info = {"train": no_training(time.perf_counter() - start), "model": lm.name,
                "precision": request.precision.to_dict(),  # no forward runs: the run's setting, for the record
                "merge": {"combination_type": used, "weights": weights, **cfg.peft_kwargs(),
                          "seed": request.hparams.seed, "experts": [lora.task for lora in request.loras]}}
        save_peft_adapter(peft_model, request.out, provenance(request, info), adapter_name=MERGED)
    finally:
        lm.model = peft_model.unload()
    return info


# ---------------------------------------------------------------- registration

register_method(MethodSpec(
    name="base", config_cls=BaseModelConfig, build=build_base, library="none", mergeable=True, paper="",
    train=train_base, trains=False, contract=None,
    description="Baseline: the base model, no adapter (an identity checkpoint for eval --adapter).",
))
register_method(MethodSpec(
    name="lora", config_cls=SingleLoRAConfig, build=peft_format_build("lora"), library="optional", mergeable=True,
    paper="https://arxiv.org/abs/2106.09685", train=train_lora, uses_own_lora=True, contract=None,
    description="Baseline: the task's own LoRA (copied from --library, else trained); a PEFT adapter.",
))
register_method(MethodSpec(
    name="multitask_lora", config_cls=MultitaskLoRAConfig, build=peft_format_build("multitask_lora"),
    library="none", mergeable=True, paper="https://arxiv.org/abs/2106.09685", train=train_multitask_lora,
    contract=None,
    description="Baseline: one PEFT LoRA trained on all --task tasks together.",
))
for _name, _cfg, _what in (("merge_linear", MergeLinearConfig, "linear"), ("merge_ties", MergeTiesConfig, "TIES"),
                           ("merge_dare", MergeDareConfig, "DARE-TIES")):
    register_method(MethodSpec(
        name=_name, config_cls=_cfg, build=peft_format_build(_name), library="required", mergeable=True,
        paper={"merge_linear": "https://arxiv.org/abs/2203.05482", "merge_ties": "https://arxiv.org/abs/2306.01708",
               "merge_dare": "https://arxiv.org/abs/2311.03099"}[_name],
        train=train_merge, contract=None, uses_seed=_name == "merge_dare",  # only DARE draws (its drops)
        description=f"Baseline: PEFT add_weighted_adapter {_what} merge of the --experts LoRAs into one adapter.",
    ))
