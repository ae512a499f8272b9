"""`MoEModel`: a transformers causal LM whose linears were replaced by MoE-LoRA layers, plus routing context.

The wrapper takes the extra batch fields (`task_ids`, `task_types`) itself and hands them to the layers
through its `RoutingState`; the inner model's forward is called unchanged. After the forward pass it
computes the method's auxiliary loss from the collected router records (one place for every method)
and adds it to the LM loss when labels are given; `output.aux_loss` carries it either way.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from loralab.errors import AdapterError, UserInputError
from loralab.moe.state import RoutingState
from loralab.utils.io import atomic_dir, dumps_json

if TYPE_CHECKING:
    from loralab.models import LoadedModel

logger = logging.getLogger(__name__)
CONFIG_FILE = "loralab_method.json"
WEIGHTS_FILE = "method_model.safetensors"
FORMAT = "loralab-method/1"
WRAPPED_ATTR = "_loralab_wrapped_by"  # set on the inner model while a MoEModel wraps it (cleared by unload)


def replace_module(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


class MoEModel(nn.Module):
    """A wrapped causal LM.

    Args:
        model: The transformers model, with MoE layers injected.
        method: Registry name of the method.
        config: The method config.
        state: Routing state shared with the layers.
        tasks: Task names, in task-id order (for task-conditioned routing and per-task merges).
        experts: Provenance of library experts (task, path, sha256), in expert order.
        base_keys: State-dict keys of the unwrapped model (to tell adapter weights from base weights).
        aux_loss: `aux_loss(moe_model) -> tensor | None` from the router records of the last forward.
        merge_deltas: For mergeable methods, `merge_deltas(moe_model, task_id) -> {layer name: (out, in) delta}`,
            the weight update each wrapped linear applies for that task (see `merge_and_unload`).
        stats: `stats(moe_model) -> {name: value}`, method-specific numbers logged at every logging step of
            training (e.g. MoRE's chosen rank per task), so their history is kept with the checkpoint.
    """

    def __init__(self, model: nn.Module, method: str, config: Any, state: RoutingState, tasks: list[str],
                 experts: list[dict[str, Any]], base_keys: set[str],
                 aux_loss: Callable[[MoEModel], torch.Tensor | None] | None = None,
                 merge_deltas: Callable[[MoEModel, int | None], dict[str, torch.Tensor]] | None = None,
                 stats: Callable[[MoEModel], dict[str, float]] | None = None) -> None:
        super().__init__()
        _refuse_wrapped(model, method)
        self.model = model
        model.__dict__[WRAPPED_ATTR] = method
        self.method, self.method_config, self.tasks, self.experts = method, config, list(tasks), list(experts)
        object.__setattr__(self, "state", state)
        object.__setattr__(self, "_base_keys", {f"model.{k}" for k in base_keys})
        object.__setattr__(self, "_aux_loss", aux_loss)
        object.__setattr__(self, "_merge_deltas", merge_deltas)
        object.__setattr__(self, "_stats", stats)

    def step_logs(self) -> dict[str, float]:
        """Router statistics of the last forward (`router/expert_i`, `router/load_entropy`), for the trainer's
        logs (the `loralab.training.trainer.StepLogs` protocol); empty when nothing was recorded."""
        from loralab.moe.stats import router_summary

        if not self.state.records:
            return {}
        return router_summary(self.state.records, self.state.attention_mask)

    def method_stats(self) -> dict[str, float]:
        """Method-specific statistics of the current weights (empty for most methods)."""
        return self._stats(self) if self._stats is not None else {}

    @property
    def config(self):  # transformers' Trainer and generation utilities read model.config
        return self.model.config

    @property
    def device(self) -> torch.device:  # lm-eval's HFLM and generation utilities read model.device
        return self.model.device

    def tie_weights(self, *args, **kwargs):  # HFLM calls it on the model object it is given
        return self.model.tie_weights(*args, **kwargs)

    def forward(self, input_ids=None, attention_mask=None, labels=None, task_ids=None, task_types=None, **kwargs):
        self.state.begin(task_ids=task_ids, task_types=task_types, attention_mask=attention_mask)
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, labels=labels, **kwargs)
        aux = self._aux_loss(self) if self._aux_loss is not None else None
        if aux is not None:
            out["aux_loss"] = aux
            if out.get("loss") is not None:
                out["loss"] = out["loss"] + aux
        return out

    def generate(self, *args, task_ids=None, **kwargs):
        with self.routing(record=False):
            self.state.begin(task_ids=task_ids)
            return self.model.generate(*args, **kwargs)

    @contextlib.contextmanager
    def routing(self, task: str | int | None = None, record: bool | None = None) -> Iterator[None]:
        """Within the block, batches without task ids use `task`, and router recording is `record`."""
        old = (self.state.default_task_id, self.state.record)
        if task is not None:
            self.state.default_task_id = self.task_id(task)
        if record is not None:
            self.state.record = record
        try:
            yield
        finally:
            self.state.default_task_id, self.state.record = old

    def task_id(self, task: str | int) -> int:
        if isinstance(task, int):
            if not 0 <= task < max(len(self.tasks), 1):
                raise AdapterError(f"task id {task} out of range for tasks {self.tasks}")
            return task
        if task not in self.tasks:
            raise AdapterError(f"this {self.method} checkpoint was trained on tasks {self.tasks}, not {task!r}")
        return self.tasks.index(task)

    def merge_task_id(self, task_id: int | None) -> int:
        """The task a per-task merge folds in: the given one, else the routing default, else the only task."""
        if task_id is not None:
            return task_id
        if self.state.default_task_id is not None:
            return self.state.default_task_id
        if len(self.tasks) == 1:
            return 0
        raise AdapterError(f"{self.method} merges one task at a time: pass one of {self.tasks}")

    def unload(self) -> nn.Module:
        """Put the original linears back and remove hooks; returns the plain base model (weights unchanged)."""
        for handle in getattr(self, "_hooks", []):
            handle.remove()
        for name, module in list(self.model.named_modules()):
            if getattr(module, "is_loralab_layer", False):
                replace_module(self.model, name, module.base_layer)
        self.model.__dict__.pop(WRAPPED_ATTR, None)
        return self.model

    @torch.no_grad()
    def merge_and_unload(self, task: str | int | None = None) -> nn.Module:
        """Fold the method's weight update for `task` into the base weights; returns a plain transformers model.

        Only for methods whose update does not depend on the token (task-routed or static), so the merged
        model computes the same function as the unmerged one on that task, at the base model's cost.
        """
        if self._merge_deltas is None:
            raise AdapterError(f"method {self.method!r} cannot be merged: its experts are mixed per token")
        task_id = self.task_id(task) if task is not None else None
        deltas = self._merge_deltas(self, task_id)
        model = self.model
        for name, delta in deltas.items():
            base = model.get_submodule(name).base_layer
            weight = base.weight
            update = delta.t() if type(base).__name__ == "Conv1D" else delta  # Conv1D stores (in, out)
            weight.add_(update.to(weight.dtype))
        return self.unload()

    def add_hook(self, handle) -> None:
        """Keep a hook handle so `unload()` removes it."""
        hooks = getattr(self, "_hooks", [])
        object.__setattr__(self, "_hooks", [*hooks, handle])

    def adapter_state_dict(self) -> dict[str, torch.Tensor]:
        """Every tensor that is not a base-model weight (experts, routers, task embeddings, ...)."""
        return {k: v for k, v in self.state_dict().items() if k not in self._base_keys and ".base_layer." not in k}

    def trainable_parameter_names(self) -> list[str]:
        return [n for n, p in self.named_parameters() if p.requires_grad]

    @classmethod
    def from_pretrained(cls, path_or_repo_id: str | os.PathLike[str],
                        base_model: nn.Module | LoadedModel | str | os.PathLike[str] | None = None, *,
                        revision: str | None = None, token: str | bool | None = None,
                        cache_dir: str | os.PathLike[str] | None = None, allow_base_mismatch: bool = False,
                        device: str | None = None) -> MoEModel:
        """A saved method checkpoint (a local folder, or a hub repo id) on its base model, like PeftModel's.

        A folder that exists is read as it is, offline; otherwise `path_or_repo_id` is a hub repo id, downloaded
        with `huggingface_hub.snapshot_download` (the hub cache, `HF_TOKEN`, `HF_HUB_OFFLINE` apply). Either way
        the folder goes through `loralab.attach_adapter`, the one hash-checked loader (`load_method`): recorded
        SHA-256, complete and finite weights, the recorded base model, exactly the tensors the method injects.

        Args:
            path_or_repo_id: The checkpoint folder (`save_pretrained`, `loralab train --out`) or a hub repo id.
            base_model: The base model: a model module, a `LoadedModel`, or what `load_model` takes (alias,
                folder, hub id). Default: the base model the checkpoint records, loaded with `load_model`.
            revision: Branch, tag or commit of the hub repo.
            token: Hub token (default: `HF_TOKEN` or the saved login).
            cache_dir: Hub cache folder.
            allow_base_mismatch: Build it on a base model other than the recorded one (names and shapes must fit).
            device: Where a base model loaded here goes (default: the best available).

        Unlike `PeftModel.from_pretrained`, a given model module is not changed: the method is built on a
        structural copy that shares its weights (`attach_adapter`), so it stays usable as the plain base model.

        Raises:
            AdapterError: not a method checkpoint (a PEFT adapter loads with `loralab.attach_adapter` or PEFT), a
                download that failed, or any check of the loader; one line each.
        """
        from loralab.models import LoadedModel, load_model
        from loralab.models.hub import local_or_download
        from loralab.moe.adapters import attach_adapter

        folder = local_or_download(path_or_repo_id, what="method checkpoint", revision=revision, token=token,
                                   cache_dir=cache_dir)
        if not is_method_checkpoint(folder):
            hint = (" (a PEFT adapter: load it with loralab.attach_adapter or PeftModel.from_pretrained)"
                    if (folder / "adapter_config.json").is_file() else "")
            raise AdapterError(f"{path_or_repo_id}: not a loralab method checkpoint, no {CONFIG_FILE}{hint}")
        if base_model is None:
            from loralab.library.adapters import recorded_base_model

            recorded = recorded_base_model(folder)
            if recorded is None:
                raise AdapterError(f"{path_or_repo_id}: {CONFIG_FILE} names no base model; pass base_model")
            base_model = recorded.name
        if isinstance(base_model, (str, os.PathLike)):
            base_model = load_model(os.fspath(base_model), device=device)
        module = base_model.model if isinstance(base_model, LoadedModel) else base_model
        moe = attach_adapter(module, folder, allow_base_mismatch=allow_base_mismatch)
        if not isinstance(moe, MoEModel):  # cannot happen for a folder with a method config; a clear failure if it did
            raise AdapterError(f"{path_or_repo_id}: loaded as {type(moe).__name__}, not a method model")
        return moe

    def push_to_hub(self, repo_id: str, *, private: bool | None = None, token: str | bool | None = None,
                    revision: str | None = None, commit_message: str | None = None, create_pr: bool = False,
                    extra: dict[str, Any] | None = None) -> str:
        """Upload this model as a checkpoint to the hub repo `repo_id` (created if needed); returns the commit URL.

        The files are those `save_pretrained` writes (config, weights and the model card), written to a
        temporary folder and uploaded with `huggingface_hub.HfApi` (`create_repo`, then `upload_folder`), so
        `MoEModel.from_pretrained(repo_id)` reads back the same bytes. `extra` is `save_pretrained`'s (e.g. the
        training record); a checkpoint already on disk is uploaded as it is with `loralab push`.

        Raises:
            HubError: the hub refused the upload or could not be reached (login, permissions, network).
        """
        import tempfile

        from loralab.models.hub import upload_folder

        with tempfile.TemporaryDirectory(prefix="loralab-push-") as tmp:
            folder = Path(tmp) / "checkpoint"
            self.save_pretrained(folder, extra=extra)
            return upload_folder(folder, repo_id, private=private, token=token, revision=revision,
                                 commit_message=commit_message or f"Upload {self.method} checkpoint with loralab",
                                 create_pr=create_pr)

    def save_pretrained(self, path: str | os.PathLike[str], *, extra: dict[str, Any] | None = None,
                        extra_dirs: dict[str, Path] | None = None) -> None:
        """Write config JSON + safetensors of the adapter tensors + a model card, atomically (not the base model).

        `extra` (JSON data) is merged into the config JSON (`loralab train` records training there); `extra_dirs`
        (name -> existing folder) are copied into the checkpoint too (e.g. TensorBoard logs). The card
        (`README.md`, `loralab.library.cards`) is documentation: the config records the SHA-256 of the weights only.
        """
        import shutil

        from safetensors.torch import save_file

        from loralab.library.cards import base_model_ref, checkpoint_card_info, write_model_card
        from loralab.library.store import sha256_file
        from loralab.models.loading import model_identity
        from loralab.utils.env import git_hash, package_versions

        identity = model_identity(self.model)
        base = base_model_ref(self.model)
        meta = {"format": FORMAT, "method": self.method, "config": self.method_config.to_dict(),
                "base_model": base.name_or_path, "tasks": self.tasks, "experts": self.experts,
                "versions": package_versions(), "git_hash": git_hash()}
        if identity is not None:  # what `load_method` compares the base model it is given with
            meta.update(model=identity.name, model_source=identity.source)
        meta.update(extra or {})
        tensors = {k: v.detach().contiguous().cpu() for k, v in self.adapter_state_dict().items()}
        with atomic_dir(path) as tmp:
            save_file(tensors, str(tmp / WEIGHTS_FILE))
            # checked by load_method before the weights are used, so a modified or corrupt file is refused
            meta["files"] = {WEIGHTS_FILE: sha256_file(tmp / WEIGHTS_FILE)}
            (tmp / CONFIG_FILE).write_text(dumps_json(meta, indent=2) + "\n", encoding="utf-8")
            write_model_card(tmp, checkpoint_card_info(meta, base, library_name="loralab"))
            for name, folder in (extra_dirs or {}).items():
                if Path(folder).is_dir():
                    shutil.copytree(folder, tmp / name)


def _refuse_wrapped(model: nn.Module, method: str) -> None:
    """A model that another method model (or PEFT) already wraps cannot be wrapped again (one line)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    wrapper = model.__dict__.get(WRAPPED_ATTR)
    if wrapper is not None or isinstance(model, MoEModel):
        raise UserInputError(f"cannot build {method!r} on this model: it is already wrapped by a "
                             f"{wrapper or model.method!r} method model; pass the base model (MoEModel.unload())")
    peft_layer = next((n for n, m in model.named_modules() if isinstance(m, BaseTunerLayer)), None)
    if peft_layer is not None:
        raise UserInputError(f"cannot build {method!r} on this model: it already carries PEFT adapter layers "
                             f"(first: {peft_layer}); pass the base model (PeftModel.unload())")


def is_method_checkpoint(path: str | os.PathLike[str]) -> bool:
    return (Path(path) / CONFIG_FILE).is_file()


def load_method(model: nn.Module, path: str | os.PathLike[str], *, allow_base_mismatch: bool = False) -> MoEModel:
    """Rebuild a saved method around `model` (the same base) and load its adapter tensors.

    Before anything is built: the weights must match the SHA-256 the checkpoint records, be a complete
    safetensors file and finite, and the checkpoint's recorded base model must be `model` (unless
    `allow_base_mismatch`; module names and shapes must fit either way). Every failure is one `AdapterError`.
    Like `build_method`, this wraps `model` itself; `loralab.attach_adapter` leaves the given model unchanged.
    """
    from loralab.library.adapters import check_base_model, check_finite, load_safetensors, read_artifact_json
    from loralab.library.store import verify_files
    from loralab.moe.registry import get_method

    path = Path(path)
    config_file = path / CONFIG_FILE
    meta = read_artifact_json(config_file, "method config")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise AdapterError(f"{config_file}: not a {FORMAT} checkpoint")
    if not (path / WEIGHTS_FILE).is_file():
        raise AdapterError(f"{path}: no {WEIGHTS_FILE}")
    if "files" in meta:  # checkpoints written before hashes were recorded have none
        verify_files(path, meta["files"], config_file)
    else:
        logger.warning("%s records no SHA-256 of %s (an older checkpoint): its integrity is not checked",
                       path, WEIGHTS_FILE)
    check_base_model(model, path, allow_base_mismatch)
    spec = get_method(str(meta.get("method")))
    config = spec.config_cls.from_dict(meta.get("config", {}))
    tasks = meta.get("tasks", [])
    if not isinstance(tasks, list) or not all(isinstance(t, str) for t in tasks):
        raise AdapterError(f"{config_file}: 'tasks' must be a list of task names, got {tasks!r}")
    tensors = load_safetensors(path / WEIGHTS_FILE)
    check_finite(tensors, path / WEIGHTS_FILE)
    from loralab.moe.builder import check_plain_model

    check_plain_model(model, "load a method checkpoint into")
    try:
        moe = spec.build(model, config, None, tasks)
    except (AttributeError, KeyError, IndexError) as exc:
        # the checkpoint names modules this model does not have (another architecture): get_submodule and
        # the method's own lookups fail here; what was injected before the failure is put back
        _undo_partial_build(model)
        raise AdapterError(f"{path}: checkpoint does not fit this base model: {_first_line(exc)}") from None
    moe.experts = meta.get("experts", [])
    expected = moe.adapter_state_dict()
    if set(tensors) != set(expected):
        moe.unload()
        missing, unexpected = sorted(set(expected) - set(tensors))[:3], sorted(set(tensors) - set(expected))[:3]
        raise AdapterError(f"{path}: checkpoint does not fit this base model (missing {missing}, unexpected {unexpected})")
    wrong = next((k for k, v in expected.items() if tuple(v.shape) != tuple(tensors[k].shape)), None)
    if wrong is not None:
        moe.unload()
        raise AdapterError(f"{path}: checkpoint does not fit this base model: {wrong} has shape "
                           f"{tuple(tensors[wrong].shape)}, this model needs {tuple(expected[wrong].shape)}")
    try:
        moe.load_state_dict(tensors, strict=False)
    except RuntimeError as exc:
        moe.unload()
        raise AdapterError(f"{path}: checkpoint does not fit this base model: {_first_line(exc)}") from None
    moe.eval()
    return moe


def _undo_partial_build(model: nn.Module) -> None:
    for name, module in list(model.named_modules()):
        if getattr(module, "is_loralab_layer", False):
            replace_module(model, name, module.base_layer)
    model.__dict__.pop(WRAPPED_ATTR, None)


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return (lines[0] if lines else type(exc).__name__)[:300]
