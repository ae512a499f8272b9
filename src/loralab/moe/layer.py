"""`MoELoRALinear`: a base linear layer plus a bank of LoRA experts mixed by a router.

    h = W0 x + sum_i g_i(x) * s_i * B_i A_i dropout(x)

The experts run together: their A matrices are stacked into one (E*r, in) matrix, the (…, E*r)
activations are scaled by the gates (each repeated r times), and one matmul through the stacked
(out, E*r) B gives the sum; no Python loop over experts. With `shared_a` (HydraLoRA) there is one A
of shape (r, in) whose output feeds every B head. The layer wraps the base module (nn.Linear or
GPT-2's Conv1D) rather than subclassing it, and the base weights stay frozen.
"""

from __future__ import annotations

import torch
from torch import nn

from loralab.moe.routers import Router, kaiming_like_linear
from loralab.moe.state import RouterRecord, RoutingState


def linear_features(module: nn.Module) -> tuple[int, int]:
    """(in_features, out_features) of an nn.Linear or a transformers Conv1D."""
    if isinstance(module, nn.Linear):
        return module.in_features, module.out_features
    weight = getattr(module, "weight", None)
    if weight is not None and weight.dim() == 2 and type(module).__name__ == "Conv1D":
        return int(weight.shape[0]), int(weight.shape[1])
    raise TypeError(f"cannot wrap {type(module).__name__}: only nn.Linear and Conv1D layers")


class MoELoRALinear(nn.Module):
    """A frozen base linear with E LoRA experts of rank r and a router.

    Args:
        base_layer: The wrapped linear (kept as a submodule, frozen).
        router: Maps the layer input to (B, T, E) gates.
        num_experts: E.
        rank: r of every expert.
        scaling: s_i per expert (alpha_i / r_i), a float for all or a list.
        dropout: Dropout on the LoRA input.
        shared_a: One A shared by all experts (HydraLoRA).
        name: Qualified name, used in router records.
        state: The routing state of the owning model.
    """

    is_loralab_layer = True  # `MoEModel.unload()` puts `base_layer` back in its place

    def __init__(self, base_layer: nn.Module, router: Router, num_experts: int, rank: int,
                 scaling: float | list[float], dropout: float, state: RoutingState, *, shared_a: bool = False,
                 name: str = "") -> None:
        super().__init__()
        in_features, out_features = linear_features(base_layer)
        self.base_layer = base_layer
        self.router = router
        self.num_experts, self.rank, self.shared_a, self.name = num_experts, rank, shared_a, name
        weight = base_layer.weight
        n_a = 1 if shared_a else num_experts
        self.lora_A = nn.Parameter(torch.empty(n_a * rank, in_features, dtype=weight.dtype, device=weight.device))
        self.lora_B = nn.Parameter(torch.zeros(out_features, num_experts * rank, dtype=weight.dtype, device=weight.device))
        for a in self.lora_A.data.split(rank):
            kaiming_like_linear(a)
        scalings = [float(scaling)] * num_experts if isinstance(scaling, (int, float)) else [float(s) for s in scaling]
        self.register_buffer("scaling", torch.tensor(scalings, dtype=torch.float32, device=weight.device))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        object.__setattr__(self, "_state", state)  # shared context, not a submodule or a parameter

    def set_expert(self, index: int, a: torch.Tensor, b: torch.Tensor, scaling: float | None = None) -> None:
        """Copy a trained LoRA (A: (r, in), B: (out, r)) into expert `index` (library initialisation)."""
        r = self.rank
        with torch.no_grad():
            self.lora_A[index * r:(index + 1) * r].copy_(a)
            self.lora_B[:, index * r:(index + 1) * r].copy_(b)
            if scaling is not None:
                self.scaling[index] = scaling

    def expert_delta(self, gates: torch.Tensor) -> torch.Tensor:
        """The weight update sum_i g_i s_i B_i A_i for fixed gates (E,), as (out, in) (for merging)."""
        r = self.rank
        a = self.lora_A if not self.shared_a else self.lora_A.repeat(self.num_experts, 1)
        scale = (gates.float() * self.scaling).repeat_interleave(r).to(a.dtype)
        return (self.lora_B * scale) @ a

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.base_layer(x)
        weights, logits = self.router(x, self._state)
        if self._state.record:
            self._state.records.append(RouterRecord(self.name, logits, weights, getattr(self.router, "top_k", None)))
        xd = self.dropout(x).to(self.lora_A.dtype)
        ax = xd @ self.lora_A.t()  # (B, T, E_a * r)
        if self.shared_a:
            ax = ax.repeat(*([1] * (ax.dim() - 1)), self.num_experts)  # (B, T, E * r)
        gate = (weights * self.scaling).repeat_interleave(self.rank, dim=-1).to(ax.dtype)  # (B, T|1, E * r)
        return result + ((ax * gate) @ self.lora_B.t()).to(result.dtype)
