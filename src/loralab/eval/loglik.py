"""Log-likelihood scoring of multiple-choice continuations, sharing the prompt across choices.

Tokenisation follows lm-evaluation-harness (`HFLM._encode_pair`): trailing whitespace of the context
moves to the continuation, the context is encoded alone and the continuation is the rest of the
encoding of context+continuation, without special tokens. So `acc` equals lm-eval's on the same strings.

The prompt runs once per question; its key/value cache is repeated for the choices, which then run
together in one right-padded batch. Right padding needs no attention mask (causal attention never looks
forward) and keeps natural positions, so this works for any causal LM that returns a cache.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F


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

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        return encode_pair(self.tokenizer, context, continuation, self.prefix_token_id)

    @torch.inference_mode()
    def score(self, context: str, choices: Sequence[str]) -> ChoiceScores:
        pairs = [self.encode_pair(context, c) for c in choices]
        ctx = pairs[0][0]
        conts = [cont for _, cont in pairs]
        if any(p[0] != ctx for p in pairs):
            return self._score_separately(pairs)
        budget = self.max_length - max(len(c) for c in conts) + 1
        ctx = ctx[-max(budget, 1):]
        return self._score_shared(ctx, conts)

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
