"""Log-likelihood scoring of multiple-choice continuations, sharing the prompt across choices.

Tokenisation follows lm-evaluation-harness (`HFLM._encode_pair`): trailing whitespace of the context
moves to the continuation, the context is encoded alone and the continuation is the rest of the
encoding of context+continuation, without special tokens. So `acc` equals lm-eval's on the same strings.

The prompt runs once per question; its key/value cache is repeated for the choices, which then run
together in one right-padded batch. Right padding needs no attention mask (causal attention never looks
forward) and keeps natural positions, so this works for any causal LM that returns a cache.

`score_many` also batches across questions: up to `batch_size` questions with the same number of choices run
their prompts in one left-padded forward (attention mask, explicit position ids counting real tokens only),
then all their choices in one more, on the repeated cache. One question per forward reads every weight twice
per question, which on a CPU (memory-bound at a few rows) or a GPU (launch-bound) costs more than the
arithmetic; batching amortises it. Models whose forward takes no `position_ids` (BLOOM, MPT) are scored one
question at a time.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from loralab.errors import NonFiniteScoreError


@dataclass
class ChoiceScores:
    """Per-choice scores of one question.

    Attributes:
        logliks: Summed log-probability of each continuation given the prompt.
        is_greedy: Whether each continuation is the greedy decoding.
        mean_nlls: Mean negative log-likelihood per token of the whole prompt+continuation sequence.
        n_tokens: Continuation lengths in tokens.
    """

    logliks: list[float]
    is_greedy: list[bool]
    mean_nlls: list[float]
    n_tokens: list[int]


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


class LoglikScorer:
    """Scores continuations of a prompt with a causal LM.

    Args:
        model: A causal LM (transformers or PEFT-wrapped), in eval mode.
        tokenizer: Its tokenizer.
        max_length: Longest sequence fed to the model; longer prompts lose tokens from the left.
    """

    def __init__(self, model: torch.nn.Module, tokenizer, max_length: int | None = None) -> None:
        self.model = model
        self.tokenizer = tokenizer
        config = getattr(model, "config", None)
        self.max_length = max_length or int(getattr(config, "max_position_embeddings", 2048) or 2048)
        self.device = next(model.parameters()).device
        self.prefix_token_id = prefix_token_id(tokenizer)
        self.batchable = _accepts_position_ids(model)

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        return encode_pair(self.tokenizer, context, continuation, self.prefix_token_id)

    @torch.inference_mode()
    def score(self, context: str, choices: Sequence[str]) -> ChoiceScores:
        pairs = [self.encode_pair(context, c) for c in choices]
        ctx = pairs[0][0]
        conts = [cont for _, cont in pairs]
        if any(p[0] != ctx for p in pairs):
            return _finite(self._score_separately(pairs), context, choices)
        budget = self.max_length - max(len(c) for c in conts) + 1
        ctx = ctx[-max(budget, 1):]
        return _finite(self._score_shared(ctx, conts), context, choices)

    @torch.inference_mode()
    def score_many(self, items: Sequence[tuple[str, Sequence[str]]], batch_size: int = 8) -> list[ChoiceScores]:
        """`score` for many (context, choices) questions, up to `batch_size` questions per forward pass.

        Questions are grouped by number of choices (so every prompt's cache is repeated the same number of
        times) and, within a group, by longest choice and prompt length (less padding); the result is in the
        input order.
        """
        results: list[ChoiceScores | None] = [None] * len(items)
        shared: list[tuple[int, list[int], list[list[int]]]] = []
        for i, (context, choices) in enumerate(items):
            pairs = [self.encode_pair(context, c) for c in choices]
            ctx, conts = pairs[0][0], [cont for _, cont in pairs]
            if any(p[0] != ctx for p in pairs):
                results[i] = self._score_separately(pairs)
                continue
            budget = self.max_length - max(len(c) for c in conts) + 1
            shared.append((i, ctx[-max(budget, 1):], conts))
        if batch_size <= 1 or not self.batchable:
            for i, ctx, conts in shared:
                results[i] = self._score_shared(ctx, conts)
            for (context, choices), scores in zip(items, results):
                _finite(scores, context, choices)
            return results  # type: ignore[return-value]
        # same number of choices per batch; then longest choice, then prompt length: less padding on both passes
        shared.sort(key=lambda q: (len(q[2]), -max(len(c) for c in q[2]), -len(q[1])))
        start = 0
        while start < len(shared):
            end = start + 1
            while end < len(shared) and end - start < batch_size and len(shared[end][2]) == len(shared[start][2]):
                end += 1
            chunk = shared[start:end]
            if len(chunk) == 1:
                scores = [self._score_shared(chunk[0][1], chunk[0][2])]
            else:
                scores = self._score_batch([q[1] for q in chunk], [q[2] for q in chunk])
            for (i, _, _), s in zip(chunk, scores):
                results[i] = s
            start = end
        for (context, choices), scores in zip(items, results):
            _finite(scores, context, choices)
        return results  # type: ignore[return-value]

    def _score_batch(self, ctxs: list[list[int]], conts_list: list[list[list[int]]]) -> list[ChoiceScores]:
        """Several questions with the same number of choices: left-padded prompts, then all choices at once."""
        n_q, n_c = len(ctxs), len(conts_list[0])
        width = max(len(c) for c in ctxs)
        pad = self.tokenizer.pad_token_id or 0
        ids = torch.full((n_q, width), pad, dtype=torch.long)
        mask = torch.zeros((n_q, width), dtype=torch.long)
        for q, ctx in enumerate(ctxs):
            ids[q, width - len(ctx):] = torch.tensor(ctx)
            mask[q, width - len(ctx):] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp_min(0)
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True)
        cache = out.past_key_values
        tails = [c[:-1] for conts in conts_list for c in conts]
        longest = max(len(t) for t in tails)
        if longest > 0 and not hasattr(cache, "batch_repeat_interleave"):
            return [self._score_separately([(ctx, c) for c in conts]) for ctx, conts in zip(ctxs, conts_list)]
        logits = out.logits
        ctx_nlls, first_logps = [], []
        for q, ctx in enumerate(ctxs):
            rows = logits[q, width - len(ctx):].float()
            target = torch.tensor(ctx[1:], device=self.device)
            ctx_nlls.append(F.cross_entropy(rows[:-1], target, reduction="sum").item() if len(ctx) > 1 else 0.0)
            first_logps.append(torch.log_softmax(rows[-1], dim=-1))
        del out, logits
        tail_logp = None
        if longest > 0:
            cache.batch_repeat_interleave(n_c)
            tail_ids = torch.full((n_q * n_c, longest), pad, dtype=torch.long)
            tail_mask = torch.zeros((n_q * n_c, longest), dtype=torch.long)
            for k, t in enumerate(tails):
                if t:
                    tail_ids[k, :len(t)] = torch.tensor(t)
                    tail_mask[k, :len(t)] = 1
            tail_ids, tail_mask = tail_ids.to(self.device), tail_mask.to(self.device)
            lengths = mask.sum(-1).repeat_interleave(n_c)
            tail_pos = lengths[:, None] + torch.arange(longest, device=self.device)[None, :]
            full_mask = torch.cat([mask.repeat_interleave(n_c, dim=0), tail_mask], dim=1)
            tail_logits = self.model(input_ids=tail_ids, attention_mask=full_mask, position_ids=tail_pos,
                                     past_key_values=cache).logits
            # log-softmax only the rows that predict a choice token (not the padding of shorter tails)
            rows_k = [k for k, t in enumerate(tails) for _ in t]
            rows_j = [j for t in tails for j in range(len(t))]
            tail_logp = torch.log_softmax(tail_logits[rows_k, rows_j].float(), dim=-1)
        results, offset = [], 0
        for q, (ctx, conts) in enumerate(zip(ctxs, conts_list)):
            scores = ChoiceScores([], [], [], [])
            for cont in conts:
                rows = first_logps[q][None]
                if len(cont) > 1:
                    rows = torch.cat([rows, tail_logp[offset:offset + len(cont) - 1]])
                    offset += len(cont) - 1
                self._append(scores, rows, cont, ctx_nlls[q], len(ctx))
            results.append(scores)
        return results

    def _score_shared(self, ctx: list[int], conts: list[list[int]]) -> ChoiceScores:
        ctx_ids = torch.tensor([ctx], device=self.device)
        out = self.model(input_ids=ctx_ids, use_cache=True)
        ctx_logits = out.logits[0].float()
        ctx_nll = F.cross_entropy(ctx_logits[:-1], ctx_ids[0, 1:], reduction="sum").item() if len(ctx) > 1 else 0.0
        first_logp = torch.log_softmax(ctx_logits[-1], dim=-1)
        cache = out.past_key_values
        tails = [c[:-1] for c in conts]
        longest = max(len(t) for t in tails)
        tail_logp = None
        if longest > 0:
            if not hasattr(cache, "batch_repeat_interleave"):
                return self._score_separately([(ctx, c) for c in conts])
            cache.batch_repeat_interleave(len(conts))
            pad = self.tokenizer.pad_token_id or 0
            batch = torch.tensor([t + [pad] * (longest - len(t)) for t in tails], device=self.device)
            tail_logp = torch.log_softmax(self.model(input_ids=batch, past_key_values=cache).logits.float(), dim=-1)
        scores = ChoiceScores([], [], [], [])
        for i, cont in enumerate(conts):
            rows = [first_logp] + ([tail_logp[i, j] for j in range(len(cont) - 1)] if tail_logp is not None else [])
            self._append(scores, torch.stack(rows), cont, ctx_nll, len(ctx))
        return scores

    def _score_separately(self, pairs: Sequence[tuple[list[int], list[int]]]) -> ChoiceScores:
        """Fallback: each prompt+continuation as its own sequence (contexts differ, or no cache)."""
        scores = ChoiceScores([], [], [], [])
        for ctx, cont in pairs:
            seq = (ctx + cont)[-(self.max_length + 1):]
            ids = torch.tensor([seq[:-1]], device=self.device)
            logp = torch.log_softmax(self.model(input_ids=ids).logits[0].float(), dim=-1)
            n_ctx = len(seq) - len(cont)
            targets = torch.tensor(seq[1:n_ctx], device=self.device)
            ctx_nll = -logp[: n_ctx - 1].gather(1, targets[:, None]).sum().item() if n_ctx > 1 else 0.0
            self._append(scores, logp[n_ctx - 1:], cont, ctx_nll, n_ctx)
        return scores

    def _append(self, scores: ChoiceScores, logp: torch.Tensor, cont: list[int], ctx_nll: float, n_ctx: int) -> None:
        """Add one continuation's scores given `logp` (len(cont), vocab): row j predicts cont[j]."""
        target = torch.tensor(cont, device=logp.device)
        token_logp = logp.gather(1, target[:, None]).squeeze(1)
        loglik = token_logp.sum().item()
        scores.logliks.append(loglik)
        scores.is_greedy.append(bool((logp.argmax(-1) == target).all().item()))
        scores.mean_nlls.append((ctx_nll - loglik) / (n_ctx - 1 + len(cont)))
        scores.n_tokens.append(len(cont))


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
