"""Routers: separate modules that map a layer input (or a task id) to gate weights over experts.

Every router returns `(weights, logits)`: weights (..., E) in fp32 with zeros outside the top-k,
logits (..., E) in fp32 before any softmax, so auxiliary losses are pure functions of the logits.
Softmax is always taken in fp32 (Mixtral, LoRAMoE) and cast back by the caller: the logits are cast to
fp32 and the softmax is asked for fp32 explicitly, so a bf16/fp16 autocast (`loralab.utils.precision`)
changes the router's matmul but never its softmax.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F
from torch import nn

from loralab.errors import ConfigError
from loralab.moe.state import RoutingState
from loralab.utils.registry import Registry


def topk_gates(probs: torch.Tensor, k: int | None, renormalize: bool) -> torch.Tensor:
    """Keep the k largest of `probs` (..., E) per token, zero the rest; renormalise the kept ones if asked."""
    if k is None or k >= probs.shape[-1]:
        return probs
    values, index = probs.topk(k, dim=-1)
    if renormalize:
        values = values / values.sum(dim=-1, keepdim=True).clamp_min(1e-20)
    return torch.zeros_like(probs).scatter(-1, index, values)


class Router(nn.Module, ABC):
    """Base class: `forward(x, state) -> (weights, logits)`, both (..., num_experts) fp32."""

    def __init__(self, num_experts: int) -> None:
        super().__init__()
        self.num_experts = num_experts

    @abstractmethod
    def forward(self, x: torch.Tensor, state: RoutingState) -> tuple[torch.Tensor, torch.Tensor]:
        """Gate weights and logits for input `x` of shape (B, T, in_features)."""


class TokenRouter(Router):
    """Per-token linear router: softmax(W x / temperature), optionally top-k (renormalised or not).

    Args:
        in_features: Size of the token input.
        num_experts: E.
        top_k: Keep only the k largest gates per token (None: dense, as LoRAMoE and HydraLoRA).
        renormalize: Rescale the kept gates to sum to 1 (Rocket, MixLoRA, Mixtral).
        temperature: Softmax temperature.
        jitter: Multiplicative input noise U(1-eps, 1+eps) during training (MixLoRA option).
        init_std: None for nn.Linear's kaiming-uniform(a=sqrt(5)) init, else N(0, init_std).
    """

    def __init__(self, in_features: int, num_experts: int, *, top_k: int | None = None, renormalize: bool = False,
                 temperature: float = 1.0, jitter: float = 0.0, init_std: float | None = None) -> None:
        super().__init__(num_experts)
        if top_k is not None and not 1 <= top_k <= num_experts:
            raise ConfigError(f"top_k must be between 1 and num_experts={num_experts}, got {top_k}")
        if temperature <= 0:
            raise ConfigError(f"temperature must be > 0, got {temperature}")
        self.gate = nn.Linear(in_features, num_experts, bias=False)
        if init_std is not None:
            nn.init.normal_(self.gate.weight, std=init_std)
        self.top_k, self.renormalize, self.temperature, self.jitter = top_k, renormalize, temperature, jitter

    def forward(self, x: torch.Tensor, state: RoutingState) -> tuple[torch.Tensor, torch.Tensor]:
        if self.training and self.jitter > 0:
            x = x * torch.empty_like(x).uniform_(1.0 - self.jitter, 1.0 + self.jitter)
        logits = F.linear(x.to(self.gate.weight.dtype), self.gate.weight).float()
        probs = torch.softmax(logits / self.temperature, dim=-1, dtype=torch.float32)
        return topk_gates(probs, self.top_k, self.renormalize), logits


class TaskEmbeddingRouter(Router):
    """Routes by task only: softmax(W_g · Emb(task_id)) (MOELoRA). Output (B, 1, E), broadcast over tokens.

    Args:
        num_tasks: Size of the task-embedding table.
        num_experts: E.
        embed_dim: Task-embedding size (MOELoRA: 64).
        temperature: Softmax temperature.
    """

    def __init__(self, num_tasks: int, num_experts: int, *, embed_dim: int = 64, temperature: float = 1.0,
                 bias: bool = False) -> None:
        super().__init__(num_experts)
        self.embedding = nn.Embedding(num_tasks, embed_dim)
        self.gate = nn.Linear(embed_dim, num_experts, bias=bias)
        self.temperature = temperature

    def forward(self, x: torch.Tensor, state: RoutingState) -> tuple[torch.Tensor, torch.Tensor]:
        ids = state.batch_task_ids(x.shape[0], x.device)
        logits = self.gate(self.embedding(ids)).float()[:, None, :]
        return torch.softmax(logits / self.temperature, dim=-1, dtype=torch.float32), logits


class ScalingsRouter(Router):
    """Reads gate weights computed elsewhere for this layer (X-LoRA's classifier): state.extras[key][index]."""

    def __init__(self, num_experts: int, key: str, index: int) -> None:
        super().__init__(num_experts)
        self.key, self.index = key, index

    def forward(self, x: torch.Tensor, state: RoutingState) -> tuple[torch.Tensor, torch.Tensor]:
        weights, logits = state.extras[self.key]
        return weights[..., self.index, :], logits[..., self.index, :]


ROUTERS: Registry[type[Router]] = Registry("router")
ROUTERS.register("token", TokenRouter)
ROUTERS.register("task", TaskEmbeddingRouter)


def get_router(kind: str, **kwargs) -> Router:
    """Router factory (`UnknownNameError` with a did-you-mean for unknown kinds)."""
    return ROUTERS.get(kind)(**kwargs)


def kaiming_like_linear(weight: torch.Tensor) -> None:
    """nn.Linear's default init (kaiming-uniform, a=sqrt(5)), used by LoRA A matrices and LoRAMoE routers."""
    nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
