"""MoRE (Zhang et al., Findings of ACL 2025): https://arxiv.org/abs/2505.22694, code: NLPfreshman0/MoRE.

One LoRA pair of maximum rank R per target linear; "expert" k is the rank prefix B[:, :k] A[:k]. Each task
t has a learned embedding e_t per module and a gate maps it to a distribution over ranks:

    p_t = softmax(W_g e_t + b_g)          k_t = argmax p_t          (a hard rank choice)
    h   = W0 x + (alpha / R) * sum_{j < k_t} c_j^2 B[:, j] A[j] dropout(x) * ste(p_t)[k_t]
    ste(p)[k] = p[k] - stopgrad(p[k]) + 1   (value 1 in the forward pass, gradient of p[k] backwards)

c_j = (j + 1) / R is the paper's "linear scaling" that balances updates across ranks (the low ranks are
shared by every task and would otherwise be updated far more often); as in the official code it is applied
to the rows of A and the columns of B, so component j is scaled by c_j^2. A contrastive loss aligns each
sample with its task's embedding in every module, L_con = mean over modules of
CE(cos(h_i, E) / tau, t_i), and the total loss is L_gen + lambda * L_con (lambda 0.1, tau 0.05).
Training draws one-task batches with probability softmax(|D_t| / sum |D|) (`task_batches`).

Implementation: rank component j is expert j of a `MoELoRALinear` with R rank-1 experts, and the
`RankSelector` router returns the gates c_j^2 * [j < k_t] * ste — so the nested prefixes are computed
in one stacked matmul like every other method, and the per-task weight update is a fixed matrix that
`merge_and_unload(task)` folds into W0 (zero extra inference cost; `loralab merge`).

Defaults from the official `script/finetune_more.sh`: R = 8, alpha = 32, dropout 0.1, every linear
(T5's q, k, v, o, wi, wo; found by type here). Init: A kaiming-uniform(a=sqrt(5)), B = 0, gate
kaiming-uniform (relu gain) with nn.Linear's bias init, task embeddings N(0, 0.01).

Deviations from the official code (each deliberate):
* the straight-through estimator is active in training, as the paper describes. The released code
  fixes each task's rank with the randomly initialised gate at the first forward pass (its `self.init`
  flag is set before it is tested), so its gate never receives gradient; `straight_through=False`
  reproduces that behaviour (the gate and embeddings then learn only from the contrastive loss);
* the sample representation h_i in the contrastive loss is the masked mean of the module's input over
  the sample's real tokens. The code takes the first token, which in T5's bidirectional encoder has seen
  the whole input but in a causal decoder has seen only itself;
* the embedding table has one row per training task (the code hard-codes 8 rows and 8 experts);
* the decoder's contrastive term is used (the code adds the encoder term twice);
* `straight_through`'s gradient flows at evaluation time too; it does not change any output.

Unseen tasks (`nearest_task`): run a few examples of the new task, let every module pick the training
task whose embedding is nearest (cosine) to the pooled input — the classifier the contrastive loss
trains — and use the task most modules and samples vote for; its rank choice and merge then apply.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from loralab.errors import ConfigError, UserInputError
from loralab.moe.builder import MethodBuilder
from loralab.moe.config import MethodConfig, check_fraction, check_positive
from loralab.moe.layer import MoELoRALinear, linear_features
from loralab.moe.model import MoEModel
from loralab.moe.registry import MethodContract, MethodSpec, register_method
from loralab.moe.routers import Router
from loralab.moe.state import RoutingState

CONTRASTIVE = "more_contrastive"  # state.extras: list of (B, num_tasks) cosine logits / tau, one per module
NEAREST = "more_nearest"  # state.extras: when set, modules route each sample to its nearest task embedding
VOTES = "more_votes"  # state.extras: (B,) nearest-task choices of every module in that mode


@dataclass
class MoREConfig(MethodConfig):
    """MoRE settings (official defaults).

    Args:
        rank: Maximum rank R = number of rank experts (official: 8).
        alpha: LoRA alpha; the scale is alpha / R.
        dropout: Dropout on the LoRA input.
        targets: "all" (official), "attention", "ffn" or module-name suffixes.
        contrastive_weight: lambda of the contrastive loss.
        contrastive_temperature: tau of the contrastive loss.
        rank_scaling: Apply the linear scaling c_j = (j + 1) / R to A rows and B columns.
        straight_through: Let the gate learn through the hard rank choice (paper); False: released code.
        task_batches: Train on one-task batches drawn with probability softmax(|D_t| / sum |D|).
        embedding_std: Std of the task-embedding init.
        modules: Resolved qualified module names (filled in when the model is built).
    """

    rank: int = 8
    alpha: float = 32.0
    dropout: float = 0.1
    targets: str | tuple[str, ...] = "all"
    contrastive_weight: float = 0.1
    contrastive_temperature: float = 0.05
    rank_scaling: bool = True
    straight_through: bool = True
    task_batches: bool = True
    embedding_std: float = 0.01
    modules: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        check_positive("rank", self.rank)
        check_fraction("dropout", self.dropout)
        if self.contrastive_weight < 0:
            raise ConfigError(f"contrastive_weight must be >= 0, got {self.contrastive_weight!r}")
        if self.contrastive_temperature <= 0:
            raise ConfigError(f"contrastive_temperature must be > 0, got {self.contrastive_temperature!r}")
        if self.embedding_std <= 0:
            raise ConfigError(f"embedding_std must be > 0, got {self.embedding_std!r}")


def rank_scales(max_rank: int, enabled: bool) -> torch.Tensor:
    """(R,) c_j^2 with c_j = (j + 1) / R (ones when the linear scaling is off)."""
    c = torch.arange(1, max_rank + 1, dtype=torch.float32) / max_rank
    return c**2 if enabled else torch.ones(max_rank)


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """(B, T, D) -> (B, D), averaging only real tokens when a (B, T) mask is given."""
    if mask is None or mask.shape[1] != x.shape[1]:
        return x.mean(dim=1)
    m = mask.to(x.dtype)[..., None]
    return (x * m).sum(dim=1) / m.sum(dim=1).clamp_min(1.0)


class RankSelector(Router):
    """Task embedding -> distribution over ranks -> hard rank choice, for one module.

    `forward` returns gates (B, 1, R) = c^2 * [j < k_t] * ste (the nested prefix of the chosen rank) and the
    gate logits (B, 1, R). In training with task ids it also records the contrastive logits
    cos(pooled x, E) / tau, (B, num_tasks), in `state.extras[CONTRASTIVE]`.
    """

    def __init__(self, in_features: int, num_tasks: int, max_rank: int, cfg: MoREConfig) -> None:
        super().__init__(max_rank)
        self.task_embedding = nn.Embedding(num_tasks, in_features)
        nn.init.normal_(self.task_embedding.weight, std=cfg.embedding_std)
        self.gate = nn.Linear(in_features, max_rank)
        nn.init.kaiming_uniform_(self.gate.weight, nonlinearity="relu")
        self.register_buffer("scales", rank_scales(max_rank, cfg.rank_scaling), persistent=False)
        self.straight_through, self.tau = cfg.straight_through, cfg.contrastive_temperature

    def rank_distribution(self, task_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(probs, logits), each (B, R) fp32, for task ids (B,)."""
        logits = self.gate(self.task_embedding(task_ids)).float()
        return torch.softmax(logits, dim=-1), logits

    def task_gates(self, task_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(gates (B, R), chosen rank index (B,), logits (B, R)) for task ids (B,).

        The gates are the prefix mask of the argmax rank times c^2 times the straight-through factor.
        """
        probs, logits = self.rank_distribution(task_ids)
        choice = probs.argmax(dim=-1)
        picked = probs.gather(-1, choice[:, None])
        ste = picked - picked.detach() + 1.0 if self.straight_through else torch.ones_like(picked)
        prefix = torch.arange(self.num_experts, device=choice.device)[None, :] <= choice[:, None]
        return prefix * self.scales * ste, choice, logits

    def contrastive_logits(self, pooled: torch.Tensor) -> torch.Tensor:
        """(B, num_tasks) cosine similarity of pooled inputs to every task embedding, over tau."""
        return F.cosine_similarity(pooled.float()[:, None, :], self.task_embedding.weight.float()[None], dim=-1) / self.tau

    def forward(self, x: torch.Tensor, state: RoutingState) -> tuple[torch.Tensor, torch.Tensor]:
        if state.extras.get(NEAREST):
            ids = self.contrastive_logits(masked_mean(x, state.attention_mask)).argmax(dim=-1)
            state.extras.setdefault(VOTES, []).append(ids)
        else:
            ids = state.batch_task_ids(x.shape[0], x.device)
            if self.training and state.task_ids is not None:
                pooled = masked_mean(x, state.attention_mask)
                state.extras.setdefault(CONTRASTIVE, []).append(self.contrastive_logits(pooled))
        gates, _, logits = self.task_gates(ids)
        return gates[:, None, :], logits[:, None, :]


def contrastive_loss(logits: Sequence[torch.Tensor], task_ids: torch.Tensor) -> torch.Tensor:
    """Mean over modules of CE(logits_m, task_ids); logits_m (B, num_tasks) are cosines over tau."""
    return torch.stack([F.cross_entropy(m.float(), task_ids.to(m.device)) for m in logits]).mean()


def more_aux_loss(moe: MoEModel) -> torch.Tensor | None:
    logits = moe.state.extras.get(CONTRASTIVE)
    if not logits or moe.method_config.contrastive_weight == 0:
        return None
    return moe.method_config.contrastive_weight * contrastive_loss(logits, moe.state.task_ids)


def selectors(moe: MoEModel) -> dict[str, RankSelector]:
    return {name: m.router for name, m in moe.model.named_modules()
            if isinstance(m, MoELoRALinear) and isinstance(m.router, RankSelector)}


@torch.no_grad()
def chosen_ranks(moe: MoEModel) -> dict[str, dict[str, int]]:
    """{task: {module: chosen rank k_t (1..R)}} as the model stands."""
    out: dict[str, dict[str, int]] = {t: {} for t in moe.tasks}
    for name, router in selectors(moe).items():
        ids = torch.arange(len(moe.tasks), device=router.gate.weight.device)
        for task, choice in zip(moe.tasks, router.task_gates(ids)[1].tolist()):
            out[task][name] = int(choice) + 1
    return out


def rank_stats(moe: MoEModel) -> dict[str, float]:
    """Mean chosen rank per task (logged during training, so the history shows how the choice moves)."""
    return {f"more/mean_rank/{task}": sum(r.values()) / max(len(r), 1) for task, r in chosen_ranks(moe).items()}


def merge_deltas(moe: MoEModel, task_id: int | None) -> dict[str, torch.Tensor]:
    task = moe.merge_task_id(task_id)
    deltas = {}
    for name, layer in moe.model.named_modules():
        if isinstance(layer, MoELoRALinear) and isinstance(layer.router, RankSelector):
            ids = torch.tensor([task], device=layer.router.gate.weight.device)
            deltas[name] = layer.expert_delta(layer.router.task_gates(ids)[0][0].detach())
    return deltas


@torch.no_grad()
def nearest_task(moe: MoEModel, batches: Sequence[dict[str, torch.Tensor]]) -> tuple[str, dict[str, int]]:
    """Pick the training task for an unseen task from a few of its (padded) batches; returns (task, votes)."""
    votes: Counter[int] = Counter()
    moe.eval()
    with moe.routing(record=False):
        for batch in batches:
            moe.state.begin(attention_mask=batch.get("attention_mask"))
            moe.state.extras[NEAREST] = True
            moe.model(input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask"))
            for ids in moe.state.extras.get(VOTES, []):
                votes.update(ids.tolist())
            moe.state.extras.clear()
    if not votes:
        raise UserInputError("nearest_task needs at least one non-empty batch of the unseen task")
    best = max(votes, key=lambda t: (votes[t], -t))
    return moe.tasks[best], {moe.tasks[t]: n for t, n in sorted(votes.items())}


def build(model, cfg: MoREConfig, experts, tasks) -> MoEModel:
    if experts:
        raise UserInputError("more trains its rank experts from scratch; it cannot take --experts")
    if not tasks:
        raise UserInputError("more routes by task: it needs at least one task")
    builder = MethodBuilder(model, "more")
    scaling = cfg.alpha / cfg.rank

    def make(name, base):
        selector = RankSelector(linear_features(base)[0], len(tasks), cfg.rank, cfg)
        selector.to(device=base.weight.device)
        layer = MoELoRALinear(base, selector, cfg.rank, 1, scaling, cfg.dropout, builder.state, name=name)
        nn.init.kaiming_uniform_(layer.lora_A, a=math.sqrt(5))  # the (R, in) matrix, as PEFT's LoRA A
        return layer

    builder.inject(builder.targets(cfg), make)
    return builder.finish(cfg, tasks, trainable=lambda n: "lora_" in n or ".router." in n, aux_loss=more_aux_loss,
                    merge_deltas=merge_deltas, stats=rank_stats)


register_method(MethodSpec(
    name="more", config_cls=MoREConfig, build=build, library="none", mergeable=True,
    paper="https://arxiv.org/abs/2505.22694",
    description="MoRE: rank-prefix experts of one LoRA, a task-embedding rank selector (STE), per-task merge.",
    # rank-1 experts are the rank components of one LoRA; per-module task embeddings and rank gates train too
    contract=MethodContract(
        config={"rank": 4}, trained=r"(lora_A|lora_B|router\.gate\.(weight|bias)|router\.task_embedding\.weight)$"),
))
