"""KV-cache scoring: the prompt runs once, its key/value cache is repeated for the choices.

`score` (one question) and the batched path for models that do not take a custom 4D attention mask (see
`loralab.eval.loglik`) use it: up to `batch_size` questions with the same number of choices run their prompts in
one left-padded forward (attention mask, explicit position ids counting real tokens only), then all their choices
in one more, right-padded, on the repeated cache. Right padding needs no attention mask for one question (causal
attention never looks forward) and keeps natural positions, so that works for any causal LM that returns a cache.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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


class KVCacheScoring:
    """The KV-cache scoring paths of `LoglikScorer` (which provides `device`, `pad_token_id`, `max_length` and
    `_forward`, the counted model call)."""

    device: torch.device
    pad_token_id: int
    max_length: int
    _forward: Callable[..., object]

    def _score_cached_batches(self, shared, batch_size: int, results: list, advance: Callable[[int], None]):
        """The KV-cache batching (models without custom-mask support); returns the questions left to run alone."""
        # same number of choices per batch; then longest choice, then prompt length: less padding on both passes
        shared = sorted(shared, key=lambda q: (len(q[2]), -max(len(c) for c in q[2]), -len(q[1])))
        alone, start = [], 0
        while start < len(shared):
            end = start + 1
            while end < len(shared) and end - start < batch_size and len(shared[end][2]) == len(shared[start][2]):
                end += 1
            chunk = shared[start:end]
            if len(chunk) == 1:
                alone.extend(chunk)
            else:
                for (i, _, _), s in zip(chunk, self._score_batch([q[1] for q in chunk], [q[2] for q in chunk])):
                    results[i] = s
                advance(len(chunk))
            start = end
        return alone

    def _score_batch(self, ctxs: list[list[int]], conts_list: list[list[list[int]]]) -> list[ChoiceScores]:
        """Several questions with the same number of choices: left-padded prompts, then all choices at once."""
        n_q, n_c = len(ctxs), len(conts_list[0])
        width = max(len(c) for c in ctxs)
        pad = self.pad_token_id
        ids = torch.full((n_q, width), pad, dtype=torch.long)
        mask = torch.zeros((n_q, width), dtype=torch.long)
        for q, ctx in enumerate(ctxs):
            ids[q, width - len(ctx):] = torch.tensor(ctx)
            mask[q, width - len(ctx):] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp_min(0)
        out = self._forward(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True)
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
            tail_logits = self._forward(input_ids=tail_ids, attention_mask=full_mask, position_ids=tail_pos,
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
        out = self._forward(input_ids=ctx_ids, use_cache=True)
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
            pad = self.pad_token_id
            batch = torch.tensor([t + [pad] * (longest - len(t)) for t in tails], device=self.device)
            tail_logp = torch.log_softmax(self._forward(input_ids=batch, past_key_values=cache).logits.float(), dim=-1)
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
            logp = torch.log_softmax(self._forward(input_ids=ids).logits[0].float(), dim=-1)
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
