"""MultiLoRA-style baseline (Wang et al., 2023): https://arxiv.org/abs/2311.11501.

    h = W0 x + sum_i s_i B_i A_i dropout(x)

N LoRA modules in parallel on every target linear ("horizontal scaling"), each with a learnable scaling
factor s_i (one per module and linear) that starts at 0, and both A_i and B_i initialised with
kaiming-uniform instead of B = 0: the zero scales keep the initial update at zero while every module
starts from a different, non-degenerate subspace, which is how the paper reduces the dominance of a few
singular directions in multi-task training. No router and no task input: one update shared by every
task, so the model merges into the base weights (`merge_and_unload`).

Not checked against official code (none was found offline): the structure and initialisation follow the
paper's abstract and method summary; the number of modules (N = 4, matching the 4x LoRA parameter count
MoRE reports for its MultiLoRA baseline), rank per module (8) and dropout are this library's choices.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from loralab.errors import UserInputError
from loralab.moe.builder import MethodBuilder
from loralab.moe.config import MethodConfig, check_fraction, check_positive
from loralab.moe.layer import MoELoRALinear
from loralab.moe.model import MoEModel
from loralab.moe.registry import MethodContract, MethodSpec, register_method
from loralab.moe.routers import Router
from loralab.moe.state import RoutingState


@dataclass
class MultiLoRAConfig(MethodConfig):
    """MultiLoRA settings.

    Args:
        num_modules: N parallel LoRA modules per linear.
        rank: Rank of each module.
        dropout: Dropout on the LoRA input.
        targets: "all", "attention", "ffn" or module-name suffixes.
        modules: Resolved qualified module names (filled in when the model is built).
    """

    num_modules: int = 4
    rank: int = 8
    dropout: float = 0.05
    targets: str | tuple[str, ...] = "all"
    modules: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        check_positive("num_modules", self.num_modules)
        check_positive("rank", self.rank)
        check_fraction("dropout", self.dropout)


class LearnedScales(Router):
    """Input-independent gates: N learnable scaling factors, initialised to 0; returns (B, 1, N) twice."""

    def __init__(self, num_experts: int) -> None:
        super().__init__(num_experts)
        self.scale = nn.Parameter(torch.zeros(num_experts))

    def forward(self, x: torch.Tensor, state: RoutingState) -> tuple[torch.Tensor, torch.Tensor]:
        scales = self.scale.float()[None, None, :].expand(x.shape[0], 1, -1)  # per sample, like every router
        return scales, scales


def merge_deltas(moe: MoEModel, task_id: int | None) -> dict[str, torch.Tensor]:
    return {name: layer.expert_delta(layer.router.scale.detach().float())
            for name, layer in moe.model.named_modules() if isinstance(layer, MoELoRALinear)}


def build(model, cfg: MultiLoRAConfig, experts, tasks) -> MoEModel:
    if experts:
        raise UserInputError("multilora trains its LoRA modules from scratch; it cannot take --experts")
    builder = MethodBuilder(model, "multilora")

    def make(name, base):
        router = LearnedScales(cfg.num_modules).to(base.weight.device)
        layer = MoELoRALinear(base, router, cfg.num_modules, cfg.rank, 1.0, cfg.dropout, builder.state, name=name)
        for b in layer.lora_B.data.split(cfg.rank, dim=1):  # kaiming for B too: the zero scales keep the init
            nn.init.kaiming_uniform_(b, a=math.sqrt(5))
        return layer

    builder.inject(builder.targets(cfg), make)
    return builder.finish(cfg, tasks, trainable=lambda n: "lora_" in n or n.endswith(".router.scale"),
                    merge_deltas=merge_deltas)


register_method(MethodSpec(
    name="multilora", config_cls=MultiLoRAConfig, build=build, library="none", mergeable=True,
    paper="https://arxiv.org/abs/2311.11501", faithful=False,
    description="MultiLoRA-style: N parallel LoRAs with zero-initialised learnable scales, kaiming A and B.",
    contract=MethodContract(config={"num_modules": 3, "rank": 2}, trained=r"(lora_A|lora_B|router\.scale)$"),
))
