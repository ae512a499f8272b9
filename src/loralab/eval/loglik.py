"""Log-likelihood scoring of multiple-choice continuations, sharing the prompt across choices.

Tokenisation follows lm-evaluation-harness (`HFLM._encode_pair`): trailing whitespace of the context
moves to the continuation, the context is encoded alone and the continuation is the rest of the
encoding of context+continuation, without special tokens. So `acc` equals lm-eval's on the same strings.

`score` runs the prompt once and its choices together on the repeated KV cache (`loralab.eval.kvcache`).

`score_many` batches across questions: one question per forward reads every weight twice per question, which on
a CPU (memory-bound at a few rows) or a GPU (launch-bound) costs more than the arithmetic. Where the model honours
a custom 4D attention mask and position ids (probed once, `packing.tree_mask_works`), each question becomes one
packed row (its prompt, then every choice, a tree mask keeping the choices apart; `loralab.eval.packing`), and
rows of similar length share a forward: up to `batch_size` questions, `max_batch_tokens` padded tokens and 5 %
padding. Questions with different numbers of choices share forwards, and the token rows pushed stay within 1.05x
of each prompt once and each choice once (`stats`), except for a question longer than the budget, which runs alone
on the KV cache. Other models batch on the KV cache (`kvcache`): questions with the same number of choices, prompts
in one left-padded forward, then all their choices in one more. Models whose forward takes no `position_ids`
(BLOOM, MPT) are scored one question at a time.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence

import torch

from loralab.errors import NonFiniteScoreError
from loralab.eval.kvcache import ChoiceScores, KVCacheScoring
from loralab.eval.packing import (
    DEFAULT_MAX_TOKENS,
    EvalStats,
    pack_rows,
    packed_length,
    plan_batches,
    target_scores,
    tree_mask_works,
)


def encode_pair(tokenizer, context: str, continuation: str, prefix_token_id: int) -> tuple[list[int], list[int]]:
    """lm-eval's split of context+continuation into tokens (also used to build training examples)."""
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces > 0:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    if not context:
        return [prefix_token_id], tokenizer.encode(continuation, add_special_tokens=False)
    whole = tokenizer.encode(context + continuation, add_special_tokens=False)
    ctx = tokenizer.encode(context, add_special_tokens=False)
    return ctx, whole[len(ctx):]


def prefix_token_id(tokenizer) -> int:
    """The token lm-eval puts before an empty context: BOS, else EOS."""
    prefix = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    return prefix if prefix is not None else 0


class LoglikScorer(KVCacheScoring):
    """Scores continuations of a prompt with a causal LM.

    Args:
        model: A causal LM (transformers or PEFT-wrapped), in eval mode.
        tokenizer: Its tokenizer.
        max_length: Longest sequence fed to the model; longer prompts lose tokens from the left.
        pack: Let `score_many` pack each question into one row when the model supports it (False: the shared
            KV-cache batching only; scores agree to float noise either way).
        max_batch_tokens: Padded tokens per packed forward at most (a longer question runs on its own, with the
            KV cache), which bounds the logits held at once.

    Attributes:
        stats: Token rows pushed through the model so far, against the minimum (`packing.EvalStats`).
    """

    def __init__(self, model: torch.nn.Module, tokenizer, max_length: int | None = None, *, pack: bool = True,
                 max_batch_tokens: int = DEFAULT_MAX_TOKENS) -> None:
        self.model = model
        self.tokenizer = tokenizer
        config = getattr(model, "config", None)
        self.max_length = max_length or int(getattr(config, "max_position_embeddings", 2048) or 2048)
        params = list(model.parameters())
        self.device = params[0].device
        self.dtype = next((p.dtype for p in params if p.is_floating_point()), torch.float32)
        self.prefix_token_id = prefix_token_id(tokenizer)
        self.pad_token_id = tokenizer.pad_token_id or 0
        self.batchable = _accepts_position_ids(model)
        self.max_batch_tokens = max_batch_tokens
        # a packed row carries its own mask, so a sliding window or attention chunk would not be applied:
        # pack only rows no longer than those (within them the window never bites)
        windows = [getattr(config, k, None) for k in ("sliding_window", "attention_chunk_size")]
        self.max_packed = min([self.max_length] + [w for w in windows if isinstance(w, int) and w > 0])
        self._vocab_size = int(getattr(config, "vocab_size", 0) or 4)
        self.stats = EvalStats()
        self._pack: bool | None = None if pack else False  # None: not probed yet

    @property
    def packable(self) -> bool:
        """Whether `score_many` packs questions into rows (the model honours custom 4D masks; probed once)."""
        if self._pack is None:
            with torch.inference_mode():
                self._pack = self.batchable and self._probe()
        return self._pack

    def _probe(self) -> bool:
        return tree_mask_works(
            lambda ids, mask, pos: self.model(input_ids=ids, attention_mask=mask, position_ids=pos,
                                              use_cache=False).logits,
            self.dtype, self.device, self._vocab_size)

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        return encode_pair(self.tokenizer, context, continuation, self.prefix_token_id)

    @torch.inference_mode()
    def score(self, context: str, choices: Sequence[str]) -> ChoiceScores:
        pairs = [self.encode_pair(context, c) for c in choices]
        ctx, conts = self._shared_context(pairs)
        if ctx is None:
            return _finite(self._score_separately(pairs), context, choices)
        return _finite(self._score_shared(ctx, conts), context, choices)

    @torch.inference_mode()
    def score_many(self, items: Sequence[tuple[str, Sequence[str]]], batch_size: int = 8,
                   progress: Callable[[int], None] | None = None) -> list[ChoiceScores]:
        """`score` for many (context, choices) questions, up to `batch_size` questions per forward pass.

        Packed (see the module docstring): rows longest first, a forward taking up to `batch_size` questions,
        `max_batch_tokens` padded tokens and 5 % padding; questions with any number of choices share forwards.
        Otherwise questions are grouped by number of choices (so every prompt's cache is repeated the same
        number of times) and, within a group, by longest choice and prompt length. `batch_size` 1: one question
        at a time (`score`). The result is in the input order; `progress(n)` is called as n more are done.
        """
        advance = progress or (lambda n: None)
        results: list[ChoiceScores | None] = [None] * len(items)
        shared: list[tuple[int, list[int], list[list[int]]]] = []
        for i, (context, choices) in enumerate(items):
            pairs = [self.encode_pair(context, c) for c in choices]
            ctx, conts = self._shared_context(pairs)
            if ctx is None:
                results[i] = self._score_separately(pairs)
                advance(1)
            else:
                shared.append((i, ctx, conts))
        alone = shared
        if batch_size > 1 and self.batchable and self.packable:
            lengths = [packed_length(ctx, conts) for _, ctx, conts in shared]
            limit = min(self.max_batch_tokens, self.max_packed)
            rows = [k for k, n in enumerate(lengths) if n <= limit]
            alone = [shared[k] for k, n in enumerate(lengths) if n > limit]
            for batch in plan_batches([lengths[k] for k in rows], batch_size, self.max_batch_tokens):
                chunk = [shared[rows[k]] for k in batch]
                for (i, _, _), scores in zip(chunk, self._score_packed([(q[1], q[2]) for q in chunk])):
                    results[i] = scores
                advance(len(chunk))
        elif batch_size > 1 and self.batchable:
            alone = self._score_cached_batches(shared, batch_size, results, advance)
        for i, ctx, conts in alone:
            results[i] = self._score_shared(ctx, conts)
            advance(1)
        for (context, choices), scores in zip(items, results):
            _finite(scores, context, choices)
        return results  # type: ignore[return-value]

    def _shared_context(self, pairs: Sequence[tuple[list[int], list[int]]]):
        """(prompt truncated to fit the longest choice, continuations), counted in `stats`; (None, None) when the
        choices' contexts differ."""
        ctx, conts = pairs[0][0], [cont for _, cont in pairs]
        if any(p[0] != ctx for p in pairs):
            self.stats.add_question(ctx, conts)
            return None, None
        budget = self.max_length - max(len(c) for c in conts) + 1
        ctx = ctx[-max(budget, 1):]
        self.stats.add_question(ctx, conts)
        return ctx, conts

    def _forward(self, **inputs):
        ids = inputs["input_ids"]
        self.stats.add_forward(ids.shape[0], ids.shape[1])
        return self.model(**inputs)

    def _score_packed(self, questions: list[tuple[list[int], list[list[int]]]]) -> list[ChoiceScores]:
        """Several questions, any numbers of choices: one packed row each, one forward, no cache."""
        batch = pack_rows(questions, self.pad_token_id, self.dtype, self.device)
        logits = self._forward(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                               position_ids=batch.position_ids, use_cache=False).logits
        logp, greedy = target_scores(logits, batch.pred_rows, batch.targets)
        del logits
        results = []
        for (ctx, conts), (c0, c1), spans in zip(questions, batch.ctx_spans, batch.choice_spans):
            ctx_nll = -sum(logp[c0:c1])
            scores = ChoiceScores([], [], [], [])
            for cont, (s, e) in zip(conts, spans):
                loglik = sum(logp[s:e])
                scores.logliks.append(loglik)
                scores.is_greedy.append(all(greedy[s:e]))
                scores.mean_nlls.append((ctx_nll - loglik) / (len(ctx) - 1 + len(cont)))
                scores.n_tokens.append(len(cont))
            results.append(scores)
        return results


def _finite(scores: ChoiceScores, context: str, choices: Sequence[str]) -> ChoiceScores:
    """`scores`, unless a log-likelihood is NaN or infinite: then the model is broken, and a metric from it
    is not a result (NaN compares false, so argmax would pick the first choice and report its accuracy)."""
    for choice, loglik, nll in zip(choices, scores.logliks, scores.mean_nlls):
        if not (math.isfinite(loglik) and math.isfinite(nll)):
            bad = loglik if not math.isfinite(loglik) else nll
            raise NonFiniteScoreError(
                f"the model scored choice {choice[:40]!r} of prompt {context[-60:]!r} as {bad} (not a finite "
                "log-likelihood): its weights or an adapter hold NaN/inf, or the dtype overflows; "
                "no result is reported")
    return scores


def _accepts_position_ids(model: torch.nn.Module) -> bool:
    """Whether the transformers model inside `model` (PEFT, loralab method wrappers) takes `position_ids`."""
    seen: set[int] = set()
    while id(model) not in seen:
        seen.add(id(model))
        from transformers import PreTrainedModel

        if isinstance(model, PreTrainedModel):
            return "position_ids" in inspect.signature(model.forward).parameters
        inner = model.get_base_model() if hasattr(model, "get_base_model") else getattr(model, "model", None)
        if not isinstance(inner, torch.nn.Module):
            return False
        model = inner
    return False
