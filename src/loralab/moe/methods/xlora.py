"""X-LoRA (Buehler & Buehler, 2024): https://arxiv.org/abs/2402.07148, as in PEFT's `tuners/xlora`.

Frozen library LoRAs are the experts on every module any of them targets. Per forward pass:

1. Scaling pass: the model runs with every expert weighted by `scaling_pass_value` (0: the plain base
   model), without gradients, and the classifier reads its last hidden state at every token.
2. The classifier (depth 1: Linear(hidden -> E, or E*L when `layerwise`); deeper: Linear+ReLU+Dropout
   blocks of width `size`) gives logits; `softmax(logits / temperature)` (when `enable_softmax`);
   optionally top-k per module (the others zeroed, no renormalisation); with `softmax_topk`, a softmax
   per token over the kept scalings, i.e. over the probabilities when `enable_softmax` is on too, not
   over the logits (PEFT's `get_maybe_topk_scalings`; without top-k, over all of them); times
   `global_scaling_weight`.
3. The real pass uses those scalings: h_l = W0 x + sum_i lambda[b, t, l, i] * s_i * B_i A_i dropout(x).

Only the classifier trains (unless `trainable_adapters`). No auxiliary loss. The two passes are driven
by a forward pre-hook on this model instance (not a process-wide patch), so `generate()` gets them too.
KV cache: the scaling pass keeps its own cache (the "dual cache" of mistral.rs), which is exact because
a token's scalings depend only on it and the tokens before it; PEFT instead disables the cache.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import nn

from loralab.errors import ConfigError, UserInputError
from loralab.moe.builder import MethodBuilder
from loralab.moe.config import MethodConfig, check_fraction, check_positive
from loralab.moe.layer import MoELoRALinear
from loralab.moe.model import MoEModel
from loralab.moe.registry import MethodContract, MethodSpec, register_method
from loralab.moe.routers import ScalingsRouter, topk_gates

logger = logging.getLogger(__name__)
KEY = "xlora"


@dataclass
class XLoRAConfig(MethodConfig):
    """X-LoRA settings (PEFT `XLoraConfig` names and defaults).

    Args:
        depth: Classifier depth (xlora_depth).
        size: Hidden width of a deeper classifier (xlora_size).
        dropout_p: Dropout between classifier blocks (xlora_dropout_p).
        layerwise: One set of scalings per wrapped module (layerwise_scalings).
        enable_softmax: Softmax over experts (True).
        softmax_topk: Softmax per token over the kept top-k scalings (enable_softmax_topk); with
            `enable_softmax` also on, over the kept probabilities (a second softmax, as in PEFT).
        top_k: Keep the k largest scalings per module and token (top_k_lora; None: all).
        temperature: Softmax temperature (softmax_temperature).
        scaling_pass_value: Expert weight in the scaling pass (0: base model; None: 1/E).
        global_scaling_weight: Multiplies every scaling.
        trainable_adapters: Also train the experts (use_trainable_adapters).
        lora_dropout: Dropout on the LoRA input.
        num_experts / rank / modules: Filled from the library LoRAs.
    """

    depth: int = 1
    size: int = 2048
    dropout_p: float = 0.2
    layerwise: bool = False
    enable_softmax: bool = True
    softmax_topk: bool = False
    top_k: int | None = None
    temperature: float = 1.0
    scaling_pass_value: float | None = 0.0
    global_scaling_weight: float = 1.0
    trainable_adapters: bool = False
    lora_dropout: float = 0.0
    num_experts: int = 1
    rank: int = 8
    modules: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        check_positive("depth", self.depth)
        check_positive("size", self.size)
        check_positive("num_experts", self.num_experts)
        check_fraction("dropout_p", self.dropout_p)
        check_fraction("lora_dropout", self.lora_dropout)
        if self.top_k is not None:
            check_positive("top_k", self.top_k)
        if self.temperature <= 0:
            raise ConfigError(f"temperature must be > 0, got {self.temperature}")


class XLoRAClassifier(nn.Module):
    """Maps the scaling pass's last hidden state (B, T, H) to logits (B, T, L, E)."""

    def __init__(self, hidden: int, num_experts: int, num_layers: int, cfg: XLoRAConfig) -> None:
        super().__init__()
        out = num_experts * (num_layers if cfg.layerwise else 1)
        blocks: list[nn.Module] = []
        width = hidden
        for _ in range(cfg.depth - 1):
            blocks += [nn.Linear(width, cfg.size), nn.ReLU()] + ([nn.Dropout(cfg.dropout_p)] if cfg.dropout_p > 0 else [])
            width = cfg.size
        blocks.append(nn.Linear(width, out))
        self.net = nn.Sequential(*blocks)
        self.num_experts, self.num_layers, self.layerwise = num_experts, num_layers, cfg.layerwise

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = self.net(hidden.to(self.net[0].weight.dtype)).float()
        b, t = logits.shape[:2]
        if self.layerwise:
            return logits.view(b, t, self.num_layers, self.num_experts)
        return logits.view(b, t, 1, self.num_experts).expand(b, t, self.num_layers, self.num_experts)


def scalings_from_logits(logits: torch.Tensor, cfg: XLoRAConfig) -> torch.Tensor:
    """(B, T, L, E) logits -> scalings: softmax / temperature, top-k per module, softmax over the kept
    ones, global weight; step for step as PEFT's classifier and `XLoraLayer.get_maybe_topk_scalings`."""
    weights = torch.softmax(logits / cfg.temperature, dim=-1) if cfg.enable_softmax else logits
    if cfg.top_k is not None:
        weights = topk_gates(weights, cfg.top_k, renormalize=False)
    if cfg.softmax_topk:
        # PEFT re-softmaxes the values left after top-k (the probabilities when enable_softmax is on, not the
        # logits, so the result is flatter) and tells the kept entries by their being non-zero
        kept = weights != 0
        weights = torch.softmax(weights.masked_fill(~kept, float("-inf")), dim=-1).masked_fill(~kept, 0.0)
    return weights * cfg.global_scaling_weight


class _ScalingPass:
    """Forward pre-hook: run the scaling pass and put the scalings into the routing state."""

    def __init__(self, moe: MoEModel, classifier: XLoRAClassifier) -> None:
        self.moe, self.classifier, self.active, self.cache = moe, classifier, False, None

    def __call__(self, module, args, kwargs):
        if self.active:
            return None
        cfg, state = self.moe.method_config, self.moe.state
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        inputs_embeds = kwargs.get("inputs_embeds")
        ref = input_ids if input_ids is not None else inputs_embeds
        b, t = ref.shape[:2]
        value = 1.0 / cfg.num_experts if cfg.scaling_pass_value is None else cfg.scaling_pass_value
        dummy = torch.full((b, t, self.classifier.num_layers, cfg.num_experts), value, device=ref.device)
        state.extras[KEY] = (dummy, torch.zeros_like(dummy))
        keep = {k: v for k, v in kwargs.items()
                if k in ("input_ids", "inputs_embeds", "attention_mask", "position_ids", "cache_position")}
        if args:
            keep["input_ids"] = args[0]
        cache = self._scaling_cache(module, kwargs, b)
        if cache is not None:
            keep[_cache_kwarg(module)] = cache
        record, state.record, self.active = state.record, False, True
        try:
            with torch.no_grad():
                out = module(**keep, use_cache=cache is not None, output_hidden_states=True, logits_to_keep=1)
        finally:
            self.active, state.record = False, record
        logits = self.classifier(out.hidden_states[-1])
        state.extras[KEY] = (scalings_from_logits(logits, cfg), logits)
        return None

    def _scaling_cache(self, module, kwargs, batch_size: int):
        """The scaling pass's own KV cache, kept in step with the main one (None when no cache is used).

        A new sequence (no past, or an empty one) starts a new cache; a continuation reuses it, repeated
        when the main cache was (sharing one prompt across several continuations, as the multiple-choice
        scorer does). A cache that does not match the main one's length is an error, not a silent mix.
        """
        # recent transformers (5.x) name the cache `cache`, and generate() passes it so; older ones and direct
        # callers (loralab's scorer) use `past_key_values`. Missing it would restart the scaling pass's cache at
        # every decoding step, so each new token would get scalings computed without its context
        past = next((kwargs[k] for k in CACHE_KWARGS if kwargs.get(k) is not None), None)
        past_len = past.get_seq_length() if past is not None and hasattr(past, "get_seq_length") else 0
        if past_len == 0:
            self.cache = _new_cache(module) if (past is not None or kwargs.get("use_cache")) else None
            return self.cache
        if self.cache is None or self.cache.get_seq_length() != past_len:
            raise RuntimeError("X-LoRA: the scaling-pass cache is out of step with the model's past_key_values; "
                               "start a new sequence without past_key_values")
        cached = _cache_batch(self.cache) or batch_size
        if cached != batch_size:
            if batch_size % cached:
                raise RuntimeError(f"X-LoRA: cannot expand a scaling cache of batch {cached} to {batch_size}")
            self.cache.batch_repeat_interleave(batch_size // cached)
        return self.cache


CACHE_KWARGS = ("cache", "past_key_values")


def _cache_kwarg(model) -> str:
    """The name this model's forward takes its KV cache under (`cache` in recent transformers)."""
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _cache_batch(cache) -> int | None:
    layers = getattr(cache, "layers", None)
    keys = getattr(layers[0], "keys", None) if layers else None
    return int(keys.shape[0]) if keys is not None and keys.dim() > 0 else None


def _new_cache(model):
    from transformers import DynamicCache

    try:
        return DynamicCache(config=model.config)
    except TypeError:
        return DynamicCache()


def build(model, cfg: XLoRAConfig, experts, tasks) -> MoEModel:
    if experts:
        modules = sorted(set().union(*(e.weights for e in experts)), key=list(dict(model.named_modules())).index)
        cfg = cfg.replace(num_experts=len(experts), rank=experts[0].rank, modules=tuple(modules))
    if not cfg.modules:
        raise UserInputError("xlora needs library LoRAs as experts: pass --library and --experts")
    if cfg.top_k is not None and cfg.top_k > cfg.num_experts:
        raise ConfigError(f"top_k={cfg.top_k} is more than the {cfg.num_experts} experts")
    if experts and cfg.softmax_topk and cfg.enable_softmax:  # once per new model, not on every checkpoint load
        logger.warning("xlora: softmax_topk and enable_softmax are both on: the kept scalings are a softmax of "
                       "probabilities (in [0, 1]), so no two differ by more than a factor e (PEFT warns likewise)")
    builder = MethodBuilder(model, "xlora")
    names = builder.targets(cfg)
    index = {n: i for i, n in enumerate(names)}
    scaling = [e.scaling for e in experts] if experts else 1.0

    def make(name, base):
        router = ScalingsRouter(cfg.num_experts, KEY, index[name])
        layer = MoELoRALinear(base, router, cfg.num_experts, cfg.rank, scaling, cfg.lora_dropout, builder.state,
                              name=name)
        for i, lora in enumerate(experts or []):
            if name in lora.weights:
                layer.set_expert(i, *lora.weights[name])
            else:  # this LoRA does not adapt this module: a zero expert there (B = 0)
                layer.set_expert(i, torch.zeros_like(layer.lora_A[:cfg.rank]), torch.zeros_like(layer.lora_B[:, :cfg.rank]))
        return layer

    builder.inject(names, make)
    hidden = model.config.get_text_config().hidden_size
    device = next(model.parameters()).device
    classifier = XLoRAClassifier(hidden, cfg.num_experts, len(names), cfg).to(device)
    trainable = (lambda n: n.startswith("xlora_classifier.") or (cfg.trainable_adapters and "lora_" in n))
    moe = builder.finish(cfg, tasks, experts, modules={"xlora_classifier": classifier}, trainable=trainable)
    hook = _ScalingPass(moe, moe.xlora_classifier)
    moe.add_hook(model.register_forward_pre_hook(hook, with_kwargs=True))
    return moe


register_method(MethodSpec(
    name="xlora", config_cls=XLoRAConfig, build=build, library="required", mergeable=False,
    paper="https://arxiv.org/abs/2402.07148",
    description="X-LoRA: frozen library LoRAs mixed per token and module by a classifier over a scaling pass.",
    contract=MethodContract(config={"depth": 2, "size": 16}, trained=r"^xlora_classifier\."),
))
