"""`embedding`: automatic task relevance, no human and no adapter weights: the base model's view of the data.

A task's embedding is the mean over its first `n_examples` prompts of each prompt's mean-pooled
hidden state (layer `layer` of the base model, padding masked; every prompt weighs the same whatever
its length). The target is read on its `split` (train by default, never test); each candidate on its
own train split, the data its LoRA was trained on. The score is the cosine similarity of the target's
embedding and the candidate task's; the highest k win.

Only prompts are embedded, not answers: a selection should work from the inputs a target task
gives. Candidate tasks are found by name with `load_task` (suite tasks), or in `library_tasks` for
tasks that were built from files; every one is loaded before the model, so a missing task fails early.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from loralab.data import Example, Task
from loralab.errors import ConfigError, UserInputError
from loralab.selection.base import SelectionContext, Selector
from loralab.selection.examples import ExampleOptions, chunks
from loralab.selection.registry import register_selector

logger = logging.getLogger(__name__)


@dataclass
class EmbeddingConfig(ExampleOptions):
    """Options of `embedding`: `ExampleOptions` plus `layer`, the hidden-state index (-1: the last layer's output).

    Index 0 is the token embeddings, i the output of block i (transformers' `hidden_states`).
    """

    layer: int = -1

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.layer, bool) or not isinstance(self.layer, int):
            raise ConfigError(f"layer must be an integer, got {self.layer!r}")


@register_selector
class EmbeddingSelector(Selector):
    name = "embedding"
    description = "cosine similarity of mean-pooled base-model hidden states of target and library-task prompts"
    score_name = "cosine"
    higher_is_better = True
    needs_model = True
    config_cls = EmbeddingConfig
    _candidates: dict[str, tuple[Task, list[Example]]] | None = None

    def prepare(self, context: SelectionContext) -> None:
        cfg = self.config
        self._target_examples = cfg.target_examples(context.target)
        self._candidates = {}
        for entry in context.candidates:
            task = candidate_task(context, entry.task)
            self._candidates[entry.task] = (task, task.split("train", cfg.n_examples))

    def scores(self, context: SelectionContext) -> dict[str, float]:
        from loralab.utils.progress import progress_bar

        if self._candidates is None:
            self.prepare(context)
        assert context.lm is not None and self._candidates is not None, "embedding needs the model"
        target = self._embed(context, context.target, self._target_examples)
        scores = {}
        with progress_bar(len(self._candidates), "embedding", context.progress) as advance:
            for name, (task, examples) in self._candidates.items():
                other = self._embed(context, task, examples)
                scores[name] = float(torch.nn.functional.cosine_similarity(target, other, dim=0))
                logger.debug("embedding cosine %s ~ %s: %.4f", context.target.name, name, scores[name])
                advance(1)
        return scores

    @torch.inference_mode()
    def _embed(self, context: SelectionContext, task: Task, examples: list[Example]) -> torch.Tensor:
        """Mean over `examples` of each prompt's mean-pooled hidden state, in float64."""
        from loralab.eval.loglik import prefix_token_id

        lm, cfg = context.lm, self.config
        model, tokenizer = lm.model, lm.tokenizer
        device = next(model.parameters()).device
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        prefix = prefix_token_id(tokenizer)
        max_length = cfg.length_limit(model)
        total = None
        for chunk in chunks(examples, cfg.batch_size):
            ids = [tokenizer.encode(task.prompt(ex), add_special_tokens=False)[-max_length:] or [prefix]
                   for ex in chunk]
            longest = max(len(x) for x in ids)
            input_ids = torch.tensor([x + [pad] * (longest - len(x)) for x in ids], device=device)
            mask = torch.tensor([[1] * len(x) + [0] * (longest - len(x)) for x in ids], device=device)
            out = model(input_ids=input_ids, attention_mask=mask, output_hidden_states=True, logits_to_keep=1)
            n_states = len(out.hidden_states)
            if not -n_states <= cfg.layer < n_states:
                raise ConfigError(f"layer must be in {-n_states}..{n_states - 1} for this model, got {cfg.layer}")
            hidden = out.hidden_states[cfg.layer].double()
            weights = mask.unsqueeze(-1).double()
            pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1)  # (batch, hidden): one vector per prompt
            total = pooled.sum(dim=0) if total is None else total + pooled.sum(dim=0)
        return total / len(examples)


def candidate_task(context: SelectionContext, name: str) -> Task:
    """The task a library LoRA was trained on: given in `library_tasks`, the target itself, or a suite task."""
    from loralab.data import load_task
    from loralab.data.suite import SUITE

    if name in context.library_tasks:
        return context.library_tasks[name]
    if name == context.target.name:
        return context.target
    if name in SUITE:
        return load_task(name, data_dir=context.data_dir)
    raise UserInputError(f"strategy 'embedding' needs examples of library task {name!r}, which is not a suite task "
                         "and so cannot be loaded by name; from Python, pass library_tasks={name: Task}, or use "
                         "another strategy")
