"""LoRAMoE (Dou et al., ACL 2024): https://arxiv.org/abs/2312.09979, code: Ablustrund/LoRAMoE.

    h = W0 x + sum_i softmax(W_r x)_i * s * B_i A_i dropout(x),    s = alpha / r

on every FFN linear (found by type), each with its own dense fp32-softmax router (no top-k, no
temperature) and E experts; trained: experts and routers. The localized balancing constraint (LBC,
`loralab.moe.losses.localized_balancing_loss`) is summed over all wrapped linears and added with
weight beta. Paper defaults: E=6, r=4, alpha=32, delta=0.1, beta=0.1 (the official demo script runs
with the constraint off; the paper's values are the defaults here).

Task types: LoRAMoE labels each sample 0 or 1; the first half of the experts is favoured for type 1
("world knowledge" in the paper; which label is which is not stated in the code). `task_types` maps
task names to labels; unlisted tasks are type 0, and so is every sample of a batch that carries no
`task_types` at all (e.g. one from a user's own `transformers.Trainer`). With library experts
(`--library/--experts`, as the LoRALib benchmark ran it) there is one expert per library LoRA,
initialised from its A/B on the FFN linears, with its own scaling.

Deviations from the official code: the LBC statistic Q is each sample's mean gate over its real
tokens (the official sum over all positions includes padding, and with masked padding a sum would
measure the spread of sample lengths; see `loralab.moe.losses`); the official code skips the LBC when
a batch has no task types, here such a batch is all type 0; the layer works on any architecture's FFN
linears, not only LLaMA's gate/up/down.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from loralab.errors import ConfigError
from loralab.moe.builder import MethodBuilder, expert_weights
from loralab.moe.config import MethodConfig, check_fraction, check_positive
from loralab.moe.layer import MoELoRALinear, linear_features
from loralab.moe.losses import localized_balancing_loss
from loralab.moe.model import MoEModel
from loralab.moe.registry import MethodContract, MethodSpec, register_method
from loralab.moe.routers import TokenRouter


@dataclass
class LoRAMoEConfig(MethodConfig):
    """LoRAMoE settings.

    Args:
        num_experts: Experts per linear (E); with library experts, the number of library LoRAs.
        rank: Rank of each expert (from the library LoRAs when they are given).
        alpha: LoRA alpha (scale alpha / rank) of experts trained from scratch.
        dropout: Dropout on the LoRA input.
        targets: "ffn" (paper), "attention", "all" or module-name suffixes.
        lbc_delta: delta, the imbalance between the favoured and the other expert group.
        lbc_beta: beta, the weight of the LBC in the total loss (0 turns it off).
        task_types: Task name -> LoRAMoE task type (0 or 1); unlisted tasks are type 0.
        modules: Resolved qualified module names (filled in when the model is built).
    """

    num_experts: int = 6
    rank: int = 4
    alpha: float = 32.0
    dropout: float = 0.05
    targets: str | tuple[str, ...] = "ffn"
    lbc_delta: float = 0.1
    lbc_beta: float = 0.1
    task_types: dict = field(default_factory=dict)
    modules: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        check_positive("num_experts", self.num_experts)
        check_positive("rank", self.rank)
        check_fraction("dropout", self.dropout)
        check_fraction("lbc_delta", self.lbc_delta, closed=True)
        if self.lbc_beta < 0:
            raise ConfigError(f"lbc_beta must be >= 0, got {self.lbc_beta}")
        bad = {k: v for k, v in self.task_types.items() if v not in (0, 1)}
        if bad:
            raise ConfigError(f"task_types values must be 0 or 1, got {bad}")


def lbc_aux_loss(moe: MoEModel) -> torch.Tensor | None:
    """beta * the LBC summed over every wrapped linear, in training; None when off or nothing was routed.

    A batch without `task_types` (a user's own `transformers.Trainer` and collator) is all type 0, the
    label loralab's own training path gives unlisted tasks; so both paths optimise the same objective
    instead of the constraint silently vanishing on one of them.
    """
    cfg, state = moe.method_config, moe.state
    if not moe.training or cfg.lbc_beta == 0 or not state.records:
        return None
    task_types = state.task_types
    if task_types is None:
        first = state.records[0].weights
        task_types = torch.zeros(first.shape[0], dtype=torch.long, device=first.device)
    total = sum(localized_balancing_loss(r.weights, task_types, cfg.lbc_delta, state.attention_mask)
                for r in state.records)
    return cfg.lbc_beta * total


def build_token_moe(model, cfg, experts, tasks, *, router_kwargs: dict, method: str, aux_loss=None) -> MoEModel:
    """Shared by LoRAMoE and Rocket: per-linear token routers over E experts, optionally from library LoRAs."""
    if experts:
        cfg = cfg.replace(num_experts=len(experts), rank=experts[0].rank)
    builder = MethodBuilder(model, method)
    scaling = [e.scaling for e in experts] if experts else cfg.alpha / cfg.rank

    def make(name, base):
        in_features, _ = linear_features(base)
        router = TokenRouter(in_features, cfg.num_experts, **router_kwargs).to(base.weight.device)
        layer = MoELoRALinear(base, router, cfg.num_experts, cfg.rank, scaling, cfg.dropout, builder.state, name=name)
        for i, lora in enumerate(experts or []):
            layer.set_expert(i, *expert_weights(lora, name))
        return layer

    builder.inject(builder.targets(cfg), make)
    return builder.finish(cfg, tasks, experts, trainable=lambda n: "lora_" in n or ".router." in n, aux_loss=aux_loss)


def build(model, cfg: LoRAMoEConfig, experts, tasks) -> MoEModel:
    return build_token_moe(model, cfg, experts, tasks, router_kwargs={}, method="loramoe", aux_loss=lbc_aux_loss)


register_method(MethodSpec(
    name="loramoe", config_cls=LoRAMoEConfig, build=build, library="optional", mergeable=False,
    paper="https://arxiv.org/abs/2312.09979",
    description="LoRAMoE: dense per-token router over LoRA experts on the FFN, localized balancing constraint.",
    contract=MethodContract(config={"targets": "all", "num_experts": 3},
                            trained=r"(lora_A|lora_B|router\.gate\.weight)$", one_expert={"num_experts": 1}),
))
