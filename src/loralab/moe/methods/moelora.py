"""MOELoRA (Liu et al., SIGIR 2024): https://arxiv.org/abs/2310.18339, code: liuqidong07/MOELoRA-peft.

    h = W0 x + sum_i g_i(t) * s * B_i A_i dropout(x),    g(t) = softmax(W_g Emb(t)),    s = alpha / r

on every target linear. The total LoRA rank r is split across the N experts (expert i: A_i (r/N, in),
B_i (out, r/N)); s = alpha / r uses the total rank, as the official `update_layer` does. The gate sees
only the sample's task id t: Emb is an nn.Embedding(num_tasks, 64) (default N(0, 1) init), W_g a
Linear(64 -> N, no bias). As in the variant the official run uses (`MMOELoraConfigS`,
`PeftModelForCausalLMShared`), there is ONE task embedding and gate for the whole model: the gate
vector is computed once per forward pass and every layer uses it. The gate lives on the `MoEModel`
(`task_gate`); each layer's router only holds an unregistered reference to it and caches the gate in
the routing state on first use in a forward pass. Trained: experts, task embedding and gate. No
auxiliary loss. Init: A ~ N(0, 0.01), B = 0. Defaults from the official run script
(`experiments/moelora.bash`, `arguments.py`): r=16, N=8, dropout 0.1, alpha 32, and all linears
(ChatGLM's query_key_value, dense, dense_h_to_4h, dense_4h_to_h; "all" here, found by type).

Per-task merge: the weight update for task t is sum_i g_i(t) s B_i A_i (the official `merge(task_id)`).

Library experts (optional): with `--library/--experts`, expert i is initialised from library LoRA i
(N = number of LoRAs, expert rank = library rank, so the total rank is N x library rank) and keeps
that LoRA's scaling alpha_i / r_i (saved with the checkpoint).

Deviations from the official code:
* task ids are 0-based with one embedding row per training task; the official table has
  task_num + 1 rows with id 0 reserved (unused by the shared single-task path);
* one task per sample; the official multi-hot input (mean-pooled task embeddings) is not supported;
* the gate softmax runs in fp32 (the official one in the model dtype);
* one dropout mask on x is shared by all experts (the official loop draws a new mask per expert), so
  the experts run as one stacked matmul.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from loralab.errors import ConfigError, UserInputError
from loralab.moe.builder import MethodBuilder, expert_weights
from loralab.moe.config import MethodConfig, check_fraction, check_positive
from loralab.moe.layer import MoELoRALinear
from loralab.moe.model import MoEModel
from loralab.moe.registry import MethodContract, MethodSpec, register_method
from loralab.moe.routers import Router, TaskEmbeddingRouter
from loralab.moe.state import RoutingState

KEY = "moelora"  # state.extras key of the per-forward gate (weights, logits), each (B, 1, N)


@dataclass
class MOELoRAConfig(MethodConfig):
    """MOELoRA settings (official run defaults).

    Args:
        rank: Total LoRA rank r, split evenly across the experts (each expert has rank r / num_experts).
        num_experts: N.
        alpha: LoRA alpha; the scale is alpha / r with the total rank r.
        dropout: Dropout on the LoRA input.
        targets: "all" (official: every linear), "attention", "ffn" or module-name suffixes.
        task_embedding_dim: Size of the task embedding (64).
        modules: Resolved qualified module names (filled in when the model is built).
    """

    rank: int = 16
    num_experts: int = 8
    alpha: float = 32.0
    dropout: float = 0.1
    targets: str | tuple[str, ...] = "all"
    task_embedding_dim: int = 64
    modules: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        check_positive("rank", self.rank)
        check_positive("num_experts", self.num_experts)
        check_positive("task_embedding_dim", self.task_embedding_dim)
        check_fraction("dropout", self.dropout)
        if self.rank % self.num_experts:
            raise ConfigError(f"rank (the total rank, split across experts) must be divisible by num_experts, "
                              f"got rank={self.rank} and num_experts={self.num_experts}")

    @property
    def expert_rank(self) -> int:
        return self.rank // self.num_experts


class SharedTaskGate(Router):
    """A layer's view of the model-level task gate: (B, 1, N) weights computed once per forward pass.

    The first layer that runs in a forward pass evaluates the gate and caches it in `state.extras`
    (cleared by `RoutingState.begin`); the others reuse it. The gate is held as a plain attribute, not a
    submodule, so it is registered (and saved) once, on the `MoEModel`.
    """

    def __init__(self, gate: TaskEmbeddingRouter) -> None:
        super().__init__(gate.num_experts)
        object.__setattr__(self, "_gate", gate)

    def forward(self, x: torch.Tensor, state: RoutingState) -> tuple[torch.Tensor, torch.Tensor]:
        cached = state.extras.get(KEY)
        if cached is None or cached[0].shape[0] != x.shape[0]:  # batch size changes e.g. under beam search
            cached = self._gate(x, state)
            state.extras[KEY] = cached
        return cached


def task_gate_weights(moe: MoEModel, task_id: int) -> torch.Tensor:
    """(N,) gate g(t) of one task."""
    gate = moe.task_gate
    ids = torch.tensor([task_id], device=gate.embedding.weight.device)
    return torch.softmax(gate.gate(gate.embedding(ids)).float() / gate.temperature, dim=-1)[0]


def merge_deltas(moe: MoEModel, task_id: int | None) -> dict[str, torch.Tensor]:
    gates = task_gate_weights(moe, moe.merge_task_id(task_id))
    return {name: layer.expert_delta(gates.to(layer.scaling.device))
            for name, layer in moe.model.named_modules() if isinstance(layer, MoELoRALinear)}


def build(model, cfg: MOELoRAConfig, experts, tasks) -> MoEModel:
    if not tasks:
        raise UserInputError("moelora routes by task: it needs at least one task")
    if experts:
        cfg = cfg.replace(num_experts=len(experts), rank=len(experts) * experts[0].rank)
    builder = MethodBuilder(model, "moelora")
    names = builder.targets(cfg)
    device = next(model.parameters()).device
    gate = TaskEmbeddingRouter(len(tasks), cfg.num_experts, embed_dim=cfg.task_embedding_dim).to(device)
    scaling = [e.scaling for e in experts] if experts else cfg.alpha / cfg.rank

    def make(name, base):
        layer = MoELoRALinear(base, SharedTaskGate(gate), cfg.num_experts, cfg.expert_rank, scaling, cfg.dropout,
                              builder.state, name=name)
        nn.init.normal_(layer.lora_A, mean=0.0, std=0.01)
        for i, lora in enumerate(experts or []):
            layer.set_expert(i, *expert_weights(lora, name))
        return layer

    builder.inject(names, make)
    return builder.finish(cfg, tasks, experts, modules={"task_gate": gate},
                    trainable=lambda n: "lora_" in n or n.startswith("task_gate."), merge_deltas=merge_deltas)


register_method(MethodSpec(
    name="moelora", config_cls=MOELoRAConfig, build=build, library="optional", mergeable=True,
    paper="https://arxiv.org/abs/2310.18339",
    description="MOELoRA: total rank split across LoRA experts, mixed by one model-level task-embedding gate.",
    contract=MethodContract(config={"targets": "all", "num_experts": 3, "rank": 6},
                            trained=r"\.lora_[AB]$|^task_gate\."),
))
