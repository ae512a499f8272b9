"""MTL-LoRA (Yang et al., 2024): https://arxiv.org/abs/2410.09437, code: pUmpKin-Co/MTL-LoRA
(`src/adapter/mlora.py`, `mLoRALinear`).

    h = W0 x + s * sum_j softmax(w_t / tau)_j * B_j Λ_t A dropout(x),    s = alpha / r

for the sample's task t: A (r, in) is shared by all tasks (kaiming-uniform, a=sqrt(5)), Λ_t is a
per-task (r, r) matrix initialised to the identity (or, with `diagonal`, a per-task r-vector of ones),
B_1..B_{num_B} (out, r) are up-projections shared by all tasks (zero-initialised), and w_t are per-task
logits over the B heads (kaiming-uniform, a=sqrt(5), over the (num_tasks, num_B) table), softmaxed
in fp32 at temperature tau (the code's `B_scale`). Routing is by task id only; no auxiliary loss.
Trained: A, Λ, the B heads and w. Defaults from `script/llama2_7B_mlora_qkvo.sh` and
`mlora_finetune.py`: attention q/k/v/o ("attention", found by type), num_B 3, temperature 0.1,
full (non-diagonal) Λ, dropout 0.05; r and alpha are script arguments (8 and 16 here, the
`mlora_finetune.py` defaults). Per-task merge: the update for task t is s (sum_j w_tj B_j) Λ_t A.

Library (optional; an addition, not in the paper): one library LoRA may warm-start the layer:
A <- its A, every B_j <- its B, Λ_t = I, rank and scale from the LoRA. Then every task starts out
computing exactly that LoRA (the heads are equal, so their softmax mix is B), and with num_B = 1 the
layer is the plain PEFT LoRA. More than one library LoRA is refused: A is shared, so there is no
faithful way to hold several LoRAs.

Deviations from the official code: the layer wraps the base linear (any architecture, GPT-2's Conv1D
too) instead of subclassing nn.Linear; the task comes from the routing state (batch `task_ids` or
`MoEModel.routing(task=...)`) instead of a `lambda_index` forward argument threaded through a patched
LLaMA; the merged q/k/v variant (`mLoRAMergedLinear`) and the tunable scaler (off in the script) are
not implemented.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from loralab.errors import ConfigError, UserInputError
from loralab.moe.builder import MethodBuilder, expert_weights
from loralab.moe.config import MethodConfig, check_fraction, check_positive
from loralab.moe.layer import linear_features
from loralab.moe.model import MoEModel
from loralab.moe.registry import MethodContract, MethodSpec, register_method
from loralab.moe.routers import kaiming_like_linear
from loralab.moe.state import RouterRecord, RoutingState


@dataclass
class MTLLoRAConfig(MethodConfig):
    """MTL-LoRA settings (official script defaults).

    Args:
        rank: r of the shared A, of Λ_t and of every B head.
        alpha: LoRA alpha (scale alpha / rank).
        num_B: Number of shared up-projection heads B_j.
        temperature: tau, the softmax temperature over the head logits w_t (`B_scale`).
        diagonal: Λ_t diagonal (an r-vector) instead of a full r x r matrix.
        dropout: Dropout on the LoRA input.
        targets: "attention" (q/k/v/o), "ffn", "all" or module-name suffixes.
        modules: Resolved qualified module names (filled in when the model is built).
    """

    rank: int = 8
    alpha: float = 16.0
    num_B: int = 3  # the official name
    temperature: float = 0.1
    diagonal: bool = False
    dropout: float = 0.05
    targets: str | tuple[str, ...] = "attention"
    modules: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        check_positive("rank", self.rank)
        check_positive("num_B", self.num_B)
        check_fraction("dropout", self.dropout)
        if not self.temperature > 0:
            raise ConfigError(f"temperature must be > 0, got {self.temperature}")


class MTLLoRALinear(nn.Module):
    """A frozen base linear plus MTL-LoRA's task-specific low-rank update.

    Shapes (T tasks, H = num_B heads, r rank): lora_A (r, in); lora_lambdas (T, r, r), or (T, r) when
    diagonal; lora_B (H, out, r); lora_B_w (T, H). Input x (B, ..., in) -> output (B, ..., out); the
    task of each sample comes from the routing state ((B,) ids).

    Args:
        base_layer: The wrapped nn.Linear or Conv1D (kept as a submodule, frozen).
        num_tasks: T.
        rank: r.
        num_b: H.
        scaling: s = alpha / r.
        temperature: tau.
        dropout: Dropout on the LoRA input.
        state: The routing state of the owning model.
        diagonal: Diagonal Λ_t.
        name: Qualified name, used in router records.
    """

    is_loralab_layer = True  # `MoEModel.unload()` puts `base_layer` back in its place

    def __init__(self, base_layer: nn.Module, num_tasks: int, rank: int, num_b: int, scaling: float,
                 temperature: float, dropout: float, state: RoutingState, *, diagonal: bool = False,
                 name: str = "") -> None:
        super().__init__()
        in_features, out_features = linear_features(base_layer)
        self.base_layer = base_layer
        self.rank, self.num_b, self.diagonal, self.name = rank, num_b, diagonal, name
        self.scaling, self.temperature = float(scaling), float(temperature)
        kw = {"dtype": base_layer.weight.dtype, "device": base_layer.weight.device}
        self.lora_A = nn.Parameter(torch.empty(rank, in_features, **kw))
        kaiming_like_linear(self.lora_A)
        lambdas = torch.ones(num_tasks, rank, **kw) if diagonal else torch.eye(rank, **kw).repeat(num_tasks, 1, 1)
        self.lora_lambdas = nn.Parameter(lambdas)
        self.lora_B = nn.Parameter(torch.zeros(num_b, out_features, rank, **kw))
        self.lora_B_w = nn.Parameter(torch.empty(num_tasks, num_b, **kw))
        kaiming_like_linear(self.lora_B_w)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        object.__setattr__(self, "_state", state)  # shared context, not a submodule or a parameter

    def set_lora(self, a: torch.Tensor, b: torch.Tensor) -> None:
        """Warm start from one LoRA (A: (r, in), B: (out, r)): A <- a and every head B_j <- b."""
        with torch.no_grad():
            self.lora_A.copy_(a)
            self.lora_B.copy_(b.unsqueeze(0).expand_as(self.lora_B))

    def head_weights(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(n, H) fp32 softmax(w_t / tau) and the logits w_t, for task ids (n,)."""
        logits = self.lora_B_w[ids].float()
        return torch.softmax(logits / self.temperature, dim=-1), logits

    def task_lambdas(self, ids: torch.Tensor) -> torch.Tensor:
        """(n, r, r) Λ_t for task ids (n,)."""
        lam = self.lora_lambdas[ids]
        return torch.diag_embed(lam) if self.diagonal else lam

    def task_delta(self, task_id: int) -> torch.Tensor:
        """The (out, in) weight update s (sum_j w_tj B_j) Λ_t A of one task (for merging)."""
        ids = torch.tensor([task_id], device=self.lora_A.device)
        weights, _ = self.head_weights(ids)
        b = torch.einsum("j,jor->or", weights[0].to(self.lora_B.dtype), self.lora_B)
        return self.scaling * (b @ self.task_lambdas(ids)[0] @ self.lora_A)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.base_layer(x)
        batch = x.shape[0]
        ids = self._state.batch_task_ids(batch, x.device)
        weights, logits = self.head_weights(ids)
        if self._state.record:
            self._state.records.append(RouterRecord(self.name, logits[:, None], weights[:, None]))
        task_b = torch.einsum("bj,jor->bor", weights.to(self.lora_B.dtype), self.lora_B)  # (B, out, r)
        xd = self.dropout(x).to(self.lora_A.dtype).reshape(batch, -1, x.shape[-1])  # (B, N, in)
        h = xd @ self.lora_A.t()  # (B, N, r)
        h = h @ self.task_lambdas(ids).transpose(-1, -2)  # Λ_t (A x)
        h = h @ task_b.transpose(-1, -2)  # (B, N, out)
        return result + (h * self.scaling).reshape(result.shape).to(result.dtype)


def merge_deltas(moe: MoEModel, task_id: int | None) -> dict[str, torch.Tensor]:
    t = moe.merge_task_id(task_id)
    return {name: layer.task_delta(t) for name, layer in moe.model.named_modules() if isinstance(layer, MTLLoRALinear)}


def build(model, cfg: MTLLoRAConfig, experts, tasks) -> MoEModel:
    if not tasks:
        raise UserInputError("mtllora routes by task: it needs at least one task")
    if experts and len(experts) != 1:
        raise UserInputError(f"mtllora shares one A across tasks, so it can start from one library LoRA, "
                             f"not {len(experts)}")
    lora = experts[0] if experts else None
    if lora is not None:
        cfg = cfg.replace(rank=lora.rank, alpha=lora.scaling * lora.rank)
    builder = MethodBuilder(model, "mtllora")

    def make(name, base):
        layer = MTLLoRALinear(base, len(tasks), cfg.rank, cfg.num_B, cfg.alpha / cfg.rank, cfg.temperature,
                              cfg.dropout, builder.state, diagonal=cfg.diagonal, name=name)
        if lora is not None:
            layer.set_lora(*expert_weights(lora, name))
        return layer

    builder.inject(builder.targets(cfg), make)
    return builder.finish(cfg, tasks, experts, trainable=lambda n: "lora_" in n, merge_deltas=merge_deltas)


register_method(MethodSpec(
    name="mtllora", config_cls=MTLLoRAConfig, build=build, library="optional", mergeable=True,
    paper="https://arxiv.org/abs/2410.09437",
    description="MTL-LoRA: shared A, per-task Lambda_t, shared B heads mixed by per-task softmax weights.",
    contract=MethodContract(config={"targets": "all", "rank": 4, "num_B": 2}, trained=r"\.lora_(A|B|lambdas|B_w)$",
                            one_expert={"num_B": 1}),
))
