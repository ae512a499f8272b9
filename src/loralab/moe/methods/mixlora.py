"""MixLoRA (Li et al., 2024): https://arxiv.org/abs/2404.15159, code: TUDB-Labs/MixLoRA, TUDB-Labs/MoE-PEFT.

Attention linears get one ordinary LoRA (no mixture). Each FFN block becomes N experts that share the
frozen FFN, expert i adding its own LoRA to every FFN linear (gate/up/down, fc1/fc2, ...):

    E_i(x) = FFN(x) with W_j -> W_j + s B_{j,i} A_{j,i} on each FFN linear j,    s = alpha / r
    p = softmax(W_r x) (fp32),  w = top-k of p renormalised,  FFN'(x) = sum_{i in top-k} w_i E_i(x)

The router W_r is a Linear(hidden -> N, no bias, fp32) per block, initialised N(0, 0.02); optional
multiplicative jitter U(1 - eps, 1 + eps) on the block input during training. Auxiliary loss: Mixtral
load balancing over the concatenated router logits of all blocks, padding masked, times 0.001
(`loralab.moe.losses.load_balancing_loss`), training only. Trained: every LoRA and router. Defaults
follow `templates/mixlora.json`: r=16, alpha=32, dropout 0.05, N=8, k=2. Not mergeable.

How it runs: the FFN block is found by type (the outermost non-container module holding the model's
"ffn"-kind linears) and wrapped by composition in a `MixLoRABlock`, whose forward routes the tokens and
runs the FFN module's own forward once per expert on the tokens routed to it (as transformers'
Mixtral block does), with `state.extras[KEY]` naming the active expert that the FFN's
`ExpertLoRALinear` layers apply. No per-architecture code.

Deviations from the official code:
* Any architecture whose FFN is a module of its own (LLaMA, GPT-2, Falcon, Phi, ...), not only the
  LLaMA/Phi/Phi3 forwards written out in the official code; architectures whose FFN linears sit in the
  decoder layer itself (OPT, XGLM) are refused. FFN arguments shaped like the tokens (Bloom's and MPT's
  residual) are sliced with them.
* Efficiency, not numbers: the official "efficient operator" computes the frozen gate/up projections
  once for all tokens; here the frozen FFN runs once per (token, chosen expert), k times the base cost.
* One r / alpha / dropout for attention and expert LoRAs (the official `expert_lora` override is not
  offered; the template uses the same values); `act_fn` overrides are not offered (the FFN's own
  activation is used, the official default).
* Jitter as in MoE-PEFT (training only, on the block input that router and experts see); the
  inference package also applies it at inference.
* Addition: library LoRAs (`--experts`) may initialise the experts: expert i's FFN LoRAs come from
  library LoRA i (N = the number of LoRAs, r their rank), and the attention LoRA is the mean of the
  library LoRAs' attention updates, exactly, as one LoRA of rank N*r (its A the stacked A_i, its B the
  stacked s_i B_i / (N s_1)); with one library LoRA the model is that LoRA exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from loralab.errors import ConfigError
from loralab.models import classify_linear_modules
from loralab.moe.builder import MethodBuilder, expert_weights
from loralab.moe.config import MethodConfig, check_fraction, check_positive
from loralab.moe.layer import MoELoRALinear
from loralab.moe.losses import load_balancing_loss
from loralab.moe.model import MoEModel, replace_module
from loralab.moe.registry import MethodContract, MethodSpec, register_method
from loralab.moe.routers import Router, TokenRouter
from loralab.moe.state import RouterRecord, RoutingState

KEY = "mixlora_expert"  # state.extras key: index of the expert the running MixLoRABlock applies
_CONTAINERS = (nn.ModuleList, nn.ModuleDict, nn.Sequential)


@dataclass
class MixLoRAConfig(MethodConfig):
    """MixLoRA settings (MoE-PEFT names in brackets).

    Args:
        num_experts: Experts per FFN block, N [num_experts]; with library experts, the number of LoRAs.
        top_k: Experts per token, k [top_k].
        rank: r of every LoRA [r]; from the library LoRAs when they are given.
        alpha: LoRA alpha, scale alpha / r [lora_alpha] (library experts keep their own alpha / r).
        dropout: Dropout on the LoRA input [lora_dropout].
        router_init_std: Std of the router's normal init [router_init_range].
        jitter: Multiplicative jitter eps on the block input in training, 0: off [jitter_noise].
        aux_loss_coef: Weight of the load-balancing loss, 0: off [router_aux_loss_coef].
        attention_lora: Put a plain LoRA on the attention linears (the template does).
        attention_rank: Rank of the attention LoRA (None: `rank`; N*r with library experts).
        blocks: Resolved FFN block names (filled in when the model is built).
        attention_modules: Resolved attention linear names (filled in when the model is built).
    """

    num_experts: int = 8
    top_k: int = 2
    rank: int = 16
    alpha: float = 32.0
    dropout: float = 0.05
    router_init_std: float = 0.02
    jitter: float = 0.0
    aux_loss_coef: float = 0.001
    attention_lora: bool = True
    attention_rank: int | None = None
    blocks: tuple[str, ...] | None = None
    attention_modules: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        check_positive("num_experts", self.num_experts)
        check_positive("top_k", self.top_k)
        check_positive("rank", self.rank)
        if self.attention_rank is not None:
            check_positive("attention_rank", self.attention_rank)
        if self.top_k > self.num_experts:
            raise ConfigError(f"top_k={self.top_k} is more than num_experts={self.num_experts}")
        check_fraction("dropout", self.dropout)
        check_fraction("jitter", self.jitter)
        if not self.router_init_std > 0:
            raise ConfigError(f"router_init_std must be > 0, got {self.router_init_std}")
        if not self.aux_loss_coef >= 0:
            raise ConfigError(f"aux_loss_coef must be >= 0, got {self.aux_loss_coef}")


class ActiveExpertRouter(Router):
    """No parameters: a one-hot gate on the expert the enclosing block is running (`state.extras[KEY]`)."""

    def forward(self, x: torch.Tensor, state: RoutingState) -> tuple[torch.Tensor, torch.Tensor]:
        gates = torch.zeros(*x.shape[:-1], self.num_experts, device=x.device)
        gates[..., active_expert(state, self.num_experts)] = 1.0
        return gates, gates


def active_expert(state: RoutingState, num_experts: int) -> int:
    if num_experts == 1:
        return 0
    index = state.extras.get(KEY)
    if index is None:
        raise RuntimeError("a MixLoRA expert linear ran outside its MixLoRABlock (no active expert)")
    return index


class ExpertLoRALinear(MoELoRALinear):
    """A MoELoRALinear that applies only the active expert's LoRA, the usual way: W0 x + s_i B_i A_i dropout(x).

    With one expert it is a plain LoRA (MixLoRA's attention linears). It records no router decision:
    the block records its own.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.base_layer(x)
        i, r = active_expert(self._state, self.num_experts), self.rank
        a, b = self.lora_A[i * r:(i + 1) * r], self.lora_B[:, i * r:(i + 1) * r]
        lora = (self.dropout(x).to(a.dtype) @ a.t()) @ b.t()
        return result + (lora * self.scaling[i]).to(result.dtype)


class MixLoRABlock(nn.Module):
    """An FFN block turned into N experts with a top-k token router (sparse: each expert sees its tokens only).

    Args:
        ffn: The FFN module, whose linears are `ExpertLoRALinear` layers with N experts.
        router: TokenRouter(hidden -> N, top-k, renormalised).
        state: The routing state of the owning model.
        name: Qualified name of the block, used in router records.
        jitter: Multiplicative input jitter in training (0: off).
    """

    is_loralab_layer = True  # `MoEModel.unload()` puts `base_layer` (the FFN) back in its place

    def __init__(self, ffn: nn.Module, router: TokenRouter, state: RoutingState, name: str, jitter: float) -> None:
        super().__init__()
        self.ffn, self.router, self.name, self.jitter = ffn, router, name, jitter
        self.num_experts = router.num_experts
        object.__setattr__(self, "_state", state)

    @property
    def base_layer(self) -> nn.Module:
        return self.ffn

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs):
        state = self._state
        if self.training and self.jitter > 0:
            noise = torch.empty_like(hidden_states).uniform_(1.0 - self.jitter, 1.0 + self.jitter)
            hidden_states = hidden_states * noise
        weights, logits = self.router(hidden_states, state)  # (B, T, N) fp32, zeros outside the top-k
        if state.record:
            state.records.append(RouterRecord(self.name, logits, weights, self.router.top_k))
        lead = hidden_states.shape[:-1]
        n_tokens = lead.numel()
        flat_w = weights.reshape(n_tokens, self.num_experts)
        out, dtype = None, hidden_states.dtype
        for i in range(self.num_experts):
            index = flat_w[:, i].nonzero().squeeze(1)  # the tokens whose top-k holds expert i
            if index.numel() == 0:
                continue
            pick = _token_slicer(lead, index)
            y = self._run_expert(i, pick(hidden_states), [pick(a) for a in args],
                                 {k: pick(v) for k, v in kwargs.items()}).reshape(index.numel(), -1)
            if out is None:
                out, dtype = torch.zeros(n_tokens, y.shape[-1], dtype=torch.float32, device=y.device), y.dtype
            out.index_add_(0, index, y.float() * flat_w[index, i, None])
        if out is None:  # no tokens at all
            return self._run_expert(0, hidden_states, args, kwargs)
        return out.to(dtype).reshape(*lead, -1)

    def _run_expert(self, index: int, x: torch.Tensor, args, kwargs) -> torch.Tensor:
        """The FFN's own forward with expert `index`'s LoRAs active."""
        self._state.extras[KEY] = index
        try:
            y = self.ffn(x, *args, **kwargs)
        finally:
            self._state.extras.pop(KEY, None)
        if not isinstance(y, torch.Tensor):
            raise TypeError(f"MixLoRA needs an FFN that returns a tensor; {type(self.ffn).__name__} returned "
                            f"{type(y).__name__}")
        return y


def _token_slicer(lead: torch.Size, index: torch.Tensor):
    """Takes the chosen tokens of every tensor shaped (*lead, ...) as (1, n, ...); anything else passes through."""

    def pick(value):
        if isinstance(value, torch.Tensor) and value.shape[:len(lead)] == lead:
            return value.reshape(lead.numel(), *value.shape[len(lead):])[index][None]
        return value

    return pick


def find_ffn_blocks(model: nn.Module) -> dict[str, list[str]]:
    """FFN block name -> its FFN linears: the outermost non-container modules that hold "ffn"-kind linears."""
    kinds = classify_linear_modules(model)
    modules = dict(model.named_modules())
    owners: dict[str, list[str]] = {}
    for name, kind in kinds.items():
        if kind == "ffn":
            parts = name.split(".")
            depth = len(parts) - 1
            while depth > 0 and isinstance(modules[".".join(parts[:depth])], _CONTAINERS):
                depth -= 1
            owners.setdefault(".".join(parts[:depth]), []).append(name)
    if not owners:
        raise ConfigError("mixlora: this model has no FFN linear layers to turn into experts")
    outermost = [o for o in owners if not any(o.startswith(p + ".") for p in owners if p and p != o)]
    for block in outermost:
        if not block or any(k == "attention" and n.startswith(block + ".") for n, k in kinds.items()):
            where = type(modules[block]).__name__
            raise ConfigError(f"mixlora: the FFN linears of this model sit in {where} next to its attention, not in "
                              "an FFN module of their own, so there is no FFN forward to route (e.g. OPT, XGLM)")
    return {b: _ffn_linears(kinds, b) for b in outermost}


def _ffn_linears(kinds: dict[str, str], block: str) -> list[str]:
    return [n for n, k in kinds.items() if k == "ffn" and n.startswith(block + ".")]


def aux_loss(moe: MoEModel) -> torch.Tensor | None:
    cfg, state = moe.method_config, moe.state
    logits = [r.logits for r in state.records if r.name in moe.mixlora_blocks]
    if not moe.training or cfg.aux_loss_coef == 0 or not logits:
        return None
    return cfg.aux_loss_coef * load_balancing_loss(logits, cfg.top_k, state.attention_mask)


def _init_attention_from_library(layer: ExpertLoRALinear, name: str, experts, rank: int) -> None:
    """Attention LoRA = mean of the library updates, exactly: A = [A_1; ...; A_N], B = [s_1 B_1, ...] / (N s_1)."""
    n, s1 = len(experts), experts[0].scaling
    with torch.no_grad():
        layer.scaling[0] = s1
        for i, lora in enumerate(experts):
            if name in lora.weights:  # a LoRA that does not adapt this module adds nothing (its B slot is 0)
                a, b = lora.weights[name]
                layer.lora_A[i * rank:(i + 1) * rank].copy_(a)
                layer.lora_B[:, i * rank:(i + 1) * rank].copy_(b * (lora.scaling / (n * s1)))


def build(model, cfg: MixLoRAConfig, experts, tasks) -> MoEModel:
    if experts:
        if cfg.top_k > len(experts):
            raise ConfigError(f"top_k={cfg.top_k} is more than the {len(experts)} library experts")
        r = experts[0].rank
        cfg = cfg.replace(num_experts=len(experts), rank=r, attention_rank=len(experts) * r)
    if cfg.blocks is not None:
        kinds = classify_linear_modules(model)
        blocks = {b: _ffn_linears(kinds, b) for b in cfg.blocks}
    else:
        blocks = find_ffn_blocks(model)
    if cfg.attention_modules is not None:
        attention = list(cfg.attention_modules)
    elif cfg.attention_lora:
        attention = [n for n, k in classify_linear_modules(model).items() if k == "attention"]
    else:
        attention = []
    builder = MethodBuilder(model, "mixlora")
    n, r = cfg.num_experts, cfg.rank
    attn_rank = cfg.attention_rank or r

    def make_expert(name, base):
        layer = ExpertLoRALinear(base, ActiveExpertRouter(n), n, r, cfg.alpha / r, cfg.dropout, builder.state,
                                 name=name)
        for i, lora in enumerate(experts or []):
            layer.set_expert(i, *expert_weights(lora, name), scaling=lora.scaling)
        return layer

    def make_attention(name, base):
        layer = ExpertLoRALinear(base, ActiveExpertRouter(1), 1, attn_rank, cfg.alpha / attn_rank, cfg.dropout,
                                 builder.state, name=name)
        if experts:
            _init_attention_from_library(layer, name, experts, r)
        return layer

    builder.inject([name for names in blocks.values() for name in names], make_expert)
    builder.inject(attention, make_attention)
    hidden = model.config.get_text_config().hidden_size
    for name in blocks:
        ffn = model.get_submodule(name)
        device = next(ffn.parameters()).device
        router = TokenRouter(hidden, n, top_k=cfg.top_k, renormalize=True, init_std=cfg.router_init_std).to(device)
        replace_module(model, name, MixLoRABlock(ffn, router, builder.state, name, cfg.jitter))
    # the FFNs moved under `<block>.ffn.`: any tensor of theirs that is not a LoRA one stays a base weight
    builder.base_keys |= {k for k in model.state_dict() if any(k.startswith(block + ".ffn.") for block in blocks)
                          and not k.endswith((".lora_A", ".lora_B", ".scaling"))}
    cfg = cfg.replace(blocks=tuple(blocks), attention_modules=tuple(attention))
    moe = builder.finish(cfg, tasks, experts, trainable=lambda p: "lora_" in p or ".router.gate." in p,
                         aux_loss=aux_loss)
    object.__setattr__(moe, "mixlora_blocks", frozenset(blocks))
    moe.add_hook(_UnwrapExperts([model.get_submodule(b) for b in blocks]))
    return moe


class _UnwrapExperts:
    """Hook-like handle: `MoEModel.unload()` calls `remove()` first, putting the FFN linears back inside each
    block; then unload replaces each block by its FFN (`base_layer`) like any loralab layer."""

    def __init__(self, blocks: list[MixLoRABlock]) -> None:
        self.blocks = blocks

    def remove(self) -> None:
        for block in self.blocks:
            for name, module in list(block.ffn.named_modules()):
                if isinstance(module, ExpertLoRALinear):
                    replace_module(block.ffn, name, module.base_layer)


register_method(MethodSpec(
    name="mixlora", config_cls=MixLoRAConfig, build=build, library="optional", mergeable=False,
    paper="https://arxiv.org/abs/2404.15159",
    description="MixLoRA: LoRA on attention; FFN as N LoRA experts of the frozen FFN, top-2 router, load balancing.",
    # N=k=2 so every expert sees tokens (sparse routing: test_moe_mixlora.py); one library LoRA: the attention
    # LoRA and the single FFN expert are that LoRA, and top-1 of 1 has gate 1
    contract=MethodContract(config={"num_experts": 2, "top_k": 2}, trained=r"(lora_A|lora_B|router\.gate\.weight)$",
                            one_expert={"top_k": 1}),
))
