"""LoraHub (Huang et al., COLM 2024): https://arxiv.org/abs/2307.13269, code: sail-sg/lorahub `lorahub/algorithm.py`.

A gradient-free composition of library LoRAs for a target task. The factors are combined separately,
per module (as the official `get_final_weights`, which sums every tensor of the PEFT state dicts):

    A_hat = sum_i w_i A_i,   B_hat = sum_i w_i B_i,   dW = s * B_hat A_hat      (not sum_i w_i dW_i)

and w is found by nevergrad's `NGOpt` (start w = 0, bounds [-1.5, 1.5], budget 40 = `max_inference_step`)
minimising, on K few-shot examples of the target task:

    objective(w) = CE(w) + 0.05 * mean_i |w_i|

The result is one plain PEFT LoRA adapter (rank r, the experts' config), so `merge_and_unload()` folds it
into the base weights at zero inference cost. `loralab_train.json` records the weights, the few-shot
example ids and the whole objective trajectory.

Deviations from the official code (hence `faithful=False`):

* CE is the mean cross-entropy over all answer tokens of the K examples (answer-only, as loralab trains
  and scores). The official `default_get_loss` sums per-batch token means and divides by the number of
  examples, i.e. CE / K with one batch, which weights the L1 term K times more than here.
* The official code returns NGOpt's recommendation unconditionally. Here the recommendation is evaluated
  (once more, if it is a point the search did not evaluate) and kept unless a point evaluated during the
  search scored strictly lower; then that point is kept. NGOpt's first candidate is the start w = 0
  (at budget 40 it picks COBYLA; checked for 1 to 200 experts), so the result never scores worse than
  the base model (w = 0 is the zero LoRA).
* The K examples are drawn from the target task's train split with `random.Random(f"{seed}/{task}")`
  (K per task; several --task tasks pool their examples); the BBH reproduction uses each task's 5 fixed
  few-shot examples.
* Experts whose scaling alpha / r differs from the first expert's have it folded into A
  (A_i -> (s_i / s_1) A_i), so w = e_i gives expert i exactly; with the library's shared
  hyperparameters every s_i is equal and this is the official formula. A module that only some
  experts target counts as zero in the others (the official code requires identical modules).
* The paper's setup is Flan-T5 (encoder-decoder); here any causal LM loralab loads.

nevergrad is required (`pip install 'loralab[lorahub]'`); there is no silent fallback. `optimizer` may name any
other nevergrad optimizer (e.g. "CMA", "OnePlusOne").
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from loralab.errors import AdapterError, ConfigError, UnknownNameError
from loralab.moe.config import MethodConfig, check_positive
from loralab.moe.methods.baselines import check_distinct_experts, peft_format_build, provenance, save_peft_adapter
from loralab.moe.registry import MethodSpec, register_method
from loralab.utils.precision import Precision, resolve_precision

logger = logging.getLogger(__name__)


@dataclass
class LoRAHubConfig(MethodConfig):
    """LoraHub settings (official defaults).

    Args:
        budget: Objective evaluations of the search (`max_inference_step`, 40).
        lower: Lower bound of every weight (-1.5).
        upper: Upper bound of every weight (1.5).
        num_examples: Few-shot examples per target task from its train split (5).
        l1: Coefficient of the mean |w| penalty (0.05).
        optimizer: nevergrad optimizer name ("NGOpt").
    """

    budget: int = 40
    lower: float = -1.5
    upper: float = 1.5
    num_examples: int = 5
    l1: float = 0.05
    optimizer: str = "NGOpt"

    def __post_init__(self) -> None:
        check_positive("budget", self.budget)
        check_positive("num_examples", self.num_examples)
        if not self.lower < 0 < self.upper:
            raise ConfigError(f"bounds must contain the start w = 0 (lower < 0 < upper), "
                              f"got [{self.lower}, {self.upper}]")
        if self.l1 < 0:
            raise ConfigError(f"l1 must be >= 0, got {self.l1}")


def compose(loras: Sequence[Any], weights: Sequence[float]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per module: (A_hat, B_hat) = (sum_i w_i (s_i / s_1) A_i, sum_i w_i B_i), in float32.

    Args:
        loras: Library LoRAs (`LibraryLoRA`: `weights` module -> (A (r, in), B (out, r)), `scaling`).
        weights: One weight per LoRA.

    Returns:
        Module name -> (A_hat (r, in), B_hat (out, r)); the composed update is `s_1 * B_hat @ A_hat`.
    """
    if len(loras) != len(weights):
        raise ValueError(f"{len(weights)} weights for {len(loras)} LoRAs")
    s1 = loras[0].scaling
    modules = sorted(set().union(*(lora.weights for lora in loras)))
    out = {}
    for module in modules:
        a_hat = b_hat = None
        for w, lora in zip(weights, loras):
            if module not in lora.weights:
                continue
            a, b = lora.weights[module]
            a = a.float() * (float(w) * lora.scaling / s1)
            b = b.float() * float(w)
            a_hat = a if a_hat is None else a_hat + a
            b_hat = b if b_hat is None else b_hat + b
        out[module] = (a_hat, b_hat)
    return out


def fewshot_examples(tasks: Sequence[Any], k: int, seed: int) -> list[tuple[Any, Any]]:
    """(task, example) pairs: K examples per task from its train split, drawn by `seed` (all if fewer)."""
    pairs = []
    for task in tasks:
        train = task.split("train")
        chosen = random.Random(f"{seed}/{task.name}").sample(range(len(train)), min(k, len(train)))
        pairs.extend((task, train[i]) for i in sorted(chosen))
    return pairs


def fewshot_features(tasks: Sequence[Any], tokenizer, hp, k: int, seed: int) -> tuple[list[dict], list[str]]:
    """Tokenised answer-only features of the few-shot examples (as loralab trains), and their ids."""
    from loralab.training.trainer import training_features

    hp = hp.replace(max_train_examples=None)
    pairs = fewshot_examples(tasks, k, seed)
    features = [f for task, ex in pairs for f in training_features(task, tokenizer, hp, [ex])]
    return features, [ex.id for _, ex in pairs]


class LoRAHubObjective:
    """The search objective on a model: one PEFT LoRA whose factors are overwritten with each composition.

    Args:
        model: The base causal LM; a PEFT LoRA (the first expert's config) is injected into it.
        loras: The library LoRAs to compose.
        features: Answer-only features of the few-shot examples (`fewshot_features`).
        l1: Coefficient of mean |w|.
        batch_size: Examples per forward pass (does not change the value: CE is a token mean over all).
        pad_token_id: Padding id for batching.
    """

    def __init__(self, model, loras: Sequence[Any], features: list[dict], *, l1: float, batch_size: int,
                 pad_token_id: int, precision: Precision | None = None) -> None:
        from peft import LoraConfig, get_peft_model
        from peft.tuners.lora import LoraLayer

        self.loras, self.features, self.l1, self.batch_size = list(loras), features, l1, batch_size
        self.pad_token_id = pad_token_id
        self.precision = precision if precision is not None else resolve_precision("fp32")
        modules = sorted(set().union(*(lora.weights for lora in self.loras)))
        config = LoraConfig.from_pretrained(str(self.loras[0].path))
        # the expert's recorded base model (loralab's spelling, e.g. a resolved folder or a tiny model's alias): PEFT
        # sets its own from `model` and warns when the two differ; the saved adapter records loralab's again
        config.base_model_name_or_path = None
        if set(modules) != set(self.loras[0].weights):  # some expert targets a module the first one does not
            config.target_modules = modules
        self.peft_model = get_peft_model(model, config)
        self.peft_model.eval()
        causal = self.peft_model.base_model.model
        self.layers = {n: m for n, m in causal.named_modules() if isinstance(m, LoraLayer)}
        scalings = {m.scaling.get("default") for m in self.layers.values()}
        if set(self.layers) != set(modules) or scalings != {self.loras[0].scaling}:
            self.unload()
            raise AdapterError(f"{self.loras[0].path}: its adapter config does not reproduce its own modules and "
                               "scaling on this model (rank_pattern/alpha_pattern are not supported)")

    @torch.no_grad()
    def set_weights(self, weights: Sequence[float]) -> None:
        for module, (a_hat, b_hat) in compose(self.loras, weights).items():
            layer = self.layers[module]
            layer.lora_A["default"].weight.copy_(a_hat)
            layer.lora_B["default"].weight.copy_(b_hat)

    @torch.inference_mode()
    def cross_entropy(self) -> float:
        """Mean CE over every answer token of the few-shot features, with the current weights."""
        from loralab.training.trainer import PadCollator, answer_only_loss

        collate = PadCollator(self.pad_token_id)
        device = next(self.peft_model.parameters()).device
        total, count = 0.0, 0
        for i in range(0, len(self.features), self.batch_size):
            batch = {k: v.to(device) for k, v in collate(self.features[i:i + self.batch_size]).items()}
            with self.precision.autocast():
                loss, n_tokens, _ = answer_only_loss(self.peft_model, batch, None)
            total += float(loss) * int(n_tokens)
            count += int(n_tokens)
        return total / max(count, 1)

    def __call__(self, weights: Sequence[float]) -> tuple[float, float]:
        """(objective, cross-entropy) at `weights`."""
        self.set_weights(weights)
        ce = self.cross_entropy()
        return ce + self.l1 * float(np.mean(np.abs(np.asarray(weights, dtype=float)))), ce

    def unload(self):
        """The base model without the LoRA layers (weights untouched)."""
        return self.peft_model.unload()


@dataclass
class SearchResult:
    """Outcome of the weight search.

    Attributes:
        weights: The chosen weights.
        objective: Their objective value.
        trajectory: Every evaluation in order: {"weights", "objective", "loss"} (loss: the CE part).
        recommendation: NGOpt's recommendation and its objective.
        chosen: "recommendation" or "best_evaluated".
    """

    weights: list[float]
    objective: float
    trajectory: list[dict[str, Any]] = field(default_factory=list)
    recommendation: dict[str, Any] = field(default_factory=dict)
    chosen: str = "recommendation"


def _nevergrad():
    from loralab.utils.extras import require_extra

    return require_extra("nevergrad", "lorahub (its gradient-free weight search)")


def search_weights(score: Callable[[list[float]], tuple[float, float]], n: int, cfg: LoRAHubConfig,
                   seed: int) -> SearchResult:
    """Minimise `score(w)[0]` over w in [lower, upper]^n from w = 0 with nevergrad, `cfg.budget` evaluations."""
    ng = _nevergrad()
    if cfg.optimizer not in ng.optimizers.registry:
        raise UnknownNameError("nevergrad optimizer", cfg.optimizer, ng.optimizers.registry)
    param = ng.p.Array(init=np.zeros(n), lower=cfg.lower, upper=cfg.upper)
    param.random_state = np.random.RandomState(seed)
    optimizer = ng.optimizers.registry[cfg.optimizer](parametrization=param, budget=cfg.budget)
    trajectory = []
    for _ in range(cfg.budget):  # what optimizer.minimize does with one worker, keeping every value
        candidate = optimizer.ask()
        weights = [float(x) for x in candidate.value]
        objective, loss = score(weights)
        optimizer.tell(candidate, objective)
        trajectory.append({"weights": weights, "objective": objective, "loss": loss})
    rec = [float(x) for x in optimizer.provide_recommendation().value]
    seen = next((t for t in trajectory if t["weights"] == rec), None)
    rec_objective = seen["objective"] if seen is not None else score(rec)[0]
    best = min(trajectory, key=lambda t: t["objective"])
    recommendation = {"weights": rec, "objective": rec_objective, "evaluated_again": seen is None}
    if best["objective"] < rec_objective:
        return SearchResult(best["weights"], best["objective"], trajectory, recommendation, "best_evaluated")
    return SearchResult(rec, rec_objective, trajectory, recommendation, "recommendation")


def train_lorahub(request) -> dict[str, Any]:
    start = time.perf_counter()
    cfg, lm, hp, loras = request.config, request.lm, request.hparams, request.loras
    check_distinct_experts(request)
    features, ids = fewshot_features(request.tasks, lm.tokenizer, hp, cfg.num_examples, hp.seed)
    pad = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
    objective = LoRAHubObjective(lm.model, loras, features, l1=cfg.l1, batch_size=hp.batch_size, pad_token_id=pad,
                                 precision=request.precision)
    try:
        result = search_weights(objective, len(loras), cfg, hp.seed)
        objective.set_weights(result.weights)
        evaluations = len(result.trajectory) + int(result.recommendation["evaluated_again"])
        logger.info("lorahub: objective %.4f at the first evaluation -> %.4f (%s) after %d evaluations",
                    result.trajectory[0]["objective"], result.objective, result.chosen, evaluations)
        seconds = round(time.perf_counter() - start, 2)
        info = {"train": {"steps": evaluations, "loss": result.objective, "seconds": seconds,
                          "examples": len(features)},
                "hparams": hp.to_dict(), "model": lm.name, "precision": request.precision.to_dict(),
                "lorahub": {"weights": dict(zip([lora.task for lora in loras], result.weights)),
                            "objective": result.objective, "chosen": result.chosen,
                            "recommendation": result.recommendation, "fewshot_ids": ids, "seed": hp.seed,
                            "trajectory": result.trajectory}}
        save_peft_adapter(objective.peft_model, request.out, provenance(request, info))
    finally:
        lm.model = objective.unload()
    return info


register_method(MethodSpec(
    name="lorahub", config_cls=LoRAHubConfig, build=peft_format_build("lorahub"), library="required",
    mergeable=True, paper="https://arxiv.org/abs/2307.13269", faithful=False, train=train_lorahub,
    contract=None,
    description="LoraHub: gradient-free (NGOpt) weights composing library LoRA factors; one PEFT adapter.",
))
