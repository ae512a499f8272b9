"""Rocket (Yang et al., 2024): https://arxiv.org/abs/2408.15915, code: Yaphabates/Rocket.

The mixture-of-experts step of the ROCKET pipeline: the selected library LoRAs become the experts
(expert i's A and B copied from LoRA i), a per-linear router Linear(in -> E, no bias) picks the top-2
experts per token from an fp32 softmax and renormalises them, and experts and router are fine-tuned
together:

    h = W0 x + sum_{i in top2} w_i * s_i * B_i A_i dropout(x)

Defaults follow the official code: targets q_proj and v_proj, top-2, renormalised, no auxiliary loss.
Deviation: each expert keeps its library scaling s_i = alpha_i / r_i; the official code applies no
alpha / r, which is the same thing for its LoRAs (alpha = r = 16). Expert selection (perplexity,
diversity) is `loralab select`; the data-augmentation step of the pipeline is out of scope.
"""

from __future__ import annotations

from dataclasses import dataclass

from loralab.errors import ConfigError
from loralab.moe.config import MethodConfig, check_fraction, check_positive
from loralab.moe.methods.loramoe import build_token_moe
from loralab.moe.model import MoEModel
from loralab.moe.registry import MethodContract, MethodSpec, register_method


@dataclass
class RocketConfig(MethodConfig):
    """Rocket settings.

    Args:
        top_k: Experts kept per token (2).
        renormalize: Renormalise the kept gates to sum to 1 (True).
        targets: Module-name suffixes or a kind; the official default is q_proj and v_proj.
        dropout: Dropout on the LoRA input.
        num_experts: Filled from the library LoRAs.
        rank: Filled from the library LoRAs.
        modules: Resolved qualified module names (filled in when the model is built).
    """

    top_k: int = 2
    renormalize: bool = True
    targets: str | tuple[str, ...] = ("q_proj", "v_proj")
    dropout: float = 0.05
    num_experts: int = 1
    rank: int = 8
    alpha: float = 16.0
    modules: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        check_positive("top_k", self.top_k)
        check_positive("num_experts", self.num_experts)
        check_positive("rank", self.rank)
        check_fraction("dropout", self.dropout)


def build(model, cfg: RocketConfig, experts, tasks) -> MoEModel:
    n = len(experts) if experts else cfg.num_experts
    if cfg.top_k > n:
        raise ConfigError(f"top_k={cfg.top_k} is more than the {n} experts")
    kwargs = {"top_k": cfg.top_k, "renormalize": cfg.renormalize}
    return build_token_moe(model, cfg, experts, tasks, router_kwargs=kwargs, method="rocket")


register_method(MethodSpec(
    name="rocket", config_cls=RocketConfig, build=build, library="required", mergeable=False,
    paper="https://arxiv.org/abs/2408.15915",
    description="Rocket: library LoRAs as experts, top-2 renormalised per-token router, joint fine-tuning.",
    contract=MethodContract(config={"targets": "all"}, trained=r"(lora_A|lora_B|router\.gate\.weight)$",
                            one_expert={"top_k": 1}),
))
