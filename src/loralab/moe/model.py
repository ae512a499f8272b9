"""`MoEModel`: a transformers causal LM whose linears were replaced by MoE-LoRA layers, plus routing context.

The wrapper takes the extra batch fields (`task_ids`, `task_types`) itself and hands them to the layers
through its `RoutingState`; the inner model's forward is called unchanged. After the forward pass it
computes the method's auxiliary loss from the collected router records (one place for every method)
and adds it to the LM loss when labels are given; `output.aux_loss` carries it either way.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from loralab.errors import AdapterError
from loralab.moe.state import RoutingState
from loralab.utils.io import atomic_dir

logger = logging.getLogger(__name__)
CONFIG_FILE = "loralab_method.json"
WEIGHTS_FILE = "method_model.safetensors"
FORMAT = "loralab-method/1"


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
        self.model = model
        self.method, self.method_config, self.tasks, self.experts = method, config, list(tasks), list(experts)
        object.__setattr__(self, "state", state)
        object.__setattr__(self, "_base_keys", {f"model.{k}" for k in base_keys})
        object.__setattr__(self, "_aux_loss", aux_loss)
        object.__setattr__(self, "_merge_deltas", merge_deltas)
        object.__setattr__(self, "_stats", stats)

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

    def save_pretrained(self, path: str | os.PathLike[str], *, extra: dict[str, Any] | None = None,
                        extra_dirs: dict[str, Path] | None = None) -> None:
        """Write config JSON + safetensors of the adapter tensors, atomically (the base model is not saved).

        `extra_dirs` (name -> existing folder) are copied into the checkpoint too (e.g. TensorBoard logs).
        """
        import shutil

        from safetensors.torch import save_file

        from loralab.utils.env import git_hash, package_versions

        meta = {"format": FORMAT, "method": self.method, "config": self.method_config.to_dict(),
                "base_model": getattr(self.model, "name_or_path", None), "tasks": self.tasks, "experts": self.experts,
                "versions": package_versions(), "git_hash": git_hash(), **(extra or {})}
        tensors = {k: v.detach().contiguous().cpu() for k, v in self.adapter_state_dict().items()}
        with atomic_dir(path) as tmp:
            save_file(tensors, str(tmp / WEIGHTS_FILE))
            (tmp / CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
            for name, folder in (extra_dirs or {}).items():
                if Path(folder).is_dir():
                    shutil.copytree(folder, tmp / name)


def is_method_checkpoint(path: str | os.PathLike[str]) -> bool:
    return (Path(path) / CONFIG_FILE).is_file()


def load_method(model: nn.Module, path: str | os.PathLike[str]) -> MoEModel:
    """Rebuild a saved method around `model` (the same base) and load its adapter tensors."""
    from safetensors.torch import load_file

    from loralab.moe.registry import get_method

    path = Path(path)
    try:
        meta = json.loads((path / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AdapterError(f"{path / CONFIG_FILE}: unreadable method config ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise AdapterError(f"{path / CONFIG_FILE}: not a {FORMAT} checkpoint")
    spec = get_method(str(meta.get("method")))
    config = spec.config_cls.from_dict(meta.get("config", {}))
    if not (path / WEIGHTS_FILE).is_file():
        raise AdapterError(f"{path}: no {WEIGHTS_FILE}")
    try:
        tensors = load_file(str(path / WEIGHTS_FILE))
    except Exception as exc:  # safetensors raises its own error types on corrupt files
        raise AdapterError(f"{path / WEIGHTS_FILE}: unreadable safetensors ({exc})") from None
    moe = spec.build(model, config, None, meta.get("tasks", []))
    moe.experts = meta.get("experts", [])
    expected = set(moe.adapter_state_dict())
    if set(tensors) != expected:
        missing, unexpected = sorted(expected - set(tensors))[:3], sorted(set(tensors) - expected)[:3]
        raise AdapterError(f"{path}: checkpoint does not fit this base model (missing {missing}, unexpected {unexpected})")
    try:
        moe.load_state_dict(tensors, strict=False)
    except RuntimeError as exc:
        raise AdapterError(f"{path}: checkpoint does not fit this base model: {str(exc).splitlines()[0][:200]}") from None
    moe.eval()
    return moe
