"""HydraLoRA (Tian et al., NeurIPS 2024): https://arxiv.org/abs/2404.19245, code: Clin0212/HydraLoRA.

An asymmetric LoRA on every FFN linear (found by type): one shared A (in -> r), N heads B_i (r -> out)
and a per-linear token router Linear(in -> N, no bias) with a dense fp32 softmax:

    h = W0 x + sum_i softmax(W_r x)_i * s * B_i A dropout(x),    s = alpha / r

A is kaiming-uniform, every B_i zero, the router nn.Linear's default (kaiming-uniform) init, as in the
official `peft/tuners/lora.py`. No auxiliary loss (the official layer returns `blcls = 0`). Trained:
A, the heads and the routers. Defaults follow the official script: r=4, alpha=32, dropout 0.05, N=4
(`lora_b_nums`), gate/up/down ("ffn"). Not mergeable (the gate depends on the token).

Deviations from the official code:
* The router weight is kept in fp32 and the softmax taken in fp32 (the official router Linear is in the
  model dtype, with the softmax in fp32); the gates are cast back to the LoRA dtype.
* N is a config value; the paper's choice of N by k-means / DBSCAN over the data is not implemented.
* `targets` may name other linears than the FFN ones (the official script fixes gate/up/down).
* Addition: library LoRAs (`--experts`) may initialise it, exactly: with N library LoRAs of rank r the
  shared A is their stacked A_i (rank N*r) and head i is B_i placed in the columns of A_i (zeros
  elsewhere), with its own scaling s_i, so that h = W0 x + sum_i g_i s_i B_i A_i x at the start; with
  one LoRA it is that LoRA. (Taking A from one LoRA would pair each B_i with an A it was not trained
  with.) Training then lets every head use the whole shared A, as HydraLoRA intends.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from loralab.errors import ConfigError
from loralab.moe.builder import MethodBuilder, expert_weights
from loralab.moe.config import MethodConfig, check_fraction, check_positive
from loralab.moe.layer import MoELoRALinear, linear_features
from loralab.moe.model import MoEModel
from loralab.moe.registry import MethodContract, MethodSpec, register_method
from loralab.moe.routers import TokenRouter


@dataclass
class HydraLoRAConfig(MethodConfig):
    """HydraLoRA settings.

    Args:
        num_experts: B heads per linear, N (`lora_nums`); with library experts, the number of LoRAs.
        rank: r of the shared A (N * the library rank with library experts).
        alpha: LoRA alpha (scale alpha / r) of heads trained from scratch.
        dropout: Dropout on the LoRA input.
        targets: "ffn" (paper), "attention", "all" or module-name suffixes.
        modules: Resolved qualified module names (filled in when the model is built).
    """

    num_experts: int = 4
    rank: int = 4
    alpha: float = 32.0
    dropout: float = 0.05
    targets: str | tuple[str, ...] = "ffn"
    modules: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        check_positive("num_experts", self.num_experts)
        check_positive("rank", self.rank)
        check_fraction("dropout", self.dropout)
        if not self.alpha > 0:
            raise ConfigError(f"alpha must be > 0, got {self.alpha}")


def init_from_library(layer: MoELoRALinear, name: str, experts) -> None:
    """Shared A = [A_1; ...; A_N]; head i = B_i in the columns of A_i, zeros elsewhere; scaling s_i."""
    r, total = experts[0].rank, layer.rank
    with torch.no_grad():
        layer.lora_B.zero_()
        for i, lora in enumerate(experts):
            a, b = expert_weights(lora, name)
            layer.lora_A[i * r:(i + 1) * r].copy_(a)
            layer.lora_B[:, i * total + i * r:i * total + (i + 1) * r].copy_(b)
            layer.scaling[i] = lora.scaling


def build(model, cfg: HydraLoRAConfig, experts, tasks) -> MoEModel:
    if experts:
        cfg = cfg.replace(num_experts=len(experts), rank=len(experts) * experts[0].rank)
    builder = MethodBuilder(model, "hydralora")

    def make(name, base):
        in_features, _ = linear_features(base)
        router = TokenRouter(in_features, cfg.num_experts).to(base.weight.device)
        layer = MoELoRALinear(base, router, cfg.num_experts, cfg.rank, cfg.alpha / cfg.rank, cfg.dropout,
                              builder.state, shared_a=True, name=name)
        if experts:
            init_from_library(layer, name, experts)
        return layer

    builder.inject(builder.targets(cfg), make)
    return builder.finish(cfg, tasks, experts, trainable=lambda n: "lora_" in n or ".router.gate." in n)


register_method(MethodSpec(
    name="hydralora", config_cls=HydraLoRAConfig, build=build, library="optional", mergeable=False,
    paper="https://arxiv.org/abs/2404.19245",
    description="HydraLoRA: one shared A and N B heads per FFN linear, mixed by a dense per-token router.",
    # one library LoRA gives N=1 with that LoRA's A/B: plain LoRA
    contract=MethodContract(config={"targets": "all", "num_experts": 3},
                            trained=r"(lora_A|lora_B|router\.gate\.weight)$"),
))
