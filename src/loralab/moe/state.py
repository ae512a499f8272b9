"""Routing context shared by the layers of one wrapped model (not a global, not a forward argument).

`MoEModel.forward` fills the state from the batch (task ids, task types, attention mask) before the
base model runs and reads the router records afterwards, so transformers' forward signatures stay
untouched and two wrapped models in one process never see each other's context.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from loralab.errors import TaskRoutingError


@dataclass
class RouterRecord:
    """What one router decided for one batch.

    Attributes:
        name: Qualified name of the layer (or block) that routed.
        logits: (B, T, E) fp32 router logits (before softmax / top-k); (B, 1, E) for task routers.
        weights: (B, T, E) gate weights actually applied (zeros outside the top-k).
        top_k: Experts kept per token (None: dense).
    """

    name: str
    logits: torch.Tensor
    weights: torch.Tensor
    top_k: int | None = None


@dataclass
class RoutingState:
    """Per-forward routing context of one `MoEModel`.

    Attributes:
        task_ids: (B,) task index of each sample, for task-conditioned routers.
        task_types: (B,) LoRAMoE task-type label of each sample (1: the group favoured by the first half of
            the experts).
        attention_mask: (B, T) 1 for real tokens; auxiliary losses ignore padding.
        default_task_id: Used when a batch carries no task ids (evaluation of one task).
        records: Router decisions collected during the forward pass.
        record: Whether layers append to `records`.
        extras: Method-specific per-forward values (e.g. X-LoRA scalings).
    """

    task_ids: torch.Tensor | None = None
    task_types: torch.Tensor | None = None
    attention_mask: torch.Tensor | None = None
    default_task_id: int | None = None
    records: list[RouterRecord] = field(default_factory=list)
    record: bool = True
    extras: dict[str, Any] = field(default_factory=dict)

    def begin(self, *, task_ids=None, task_types=None, attention_mask=None) -> None:
        self.task_ids, self.task_types, self.attention_mask = task_ids, task_types, attention_mask
        self.records = []
        self.extras = {}

    def batch_task_ids(self, batch_size: int, device: torch.device) -> torch.Tensor:
        """(B,) task ids for this batch: the batch's own, else the default task; a clear error otherwise."""
        if self.task_ids is not None:
            return self.task_ids.to(device)
        if self.default_task_id is None:
            raise TaskRoutingError("this method routes by task: pass task_ids in the batch or set a default task "
                                   "(MoEModel.routing(task=...))")
        return torch.full((batch_size,), self.default_task_id, dtype=torch.long, device=device)
