"""Packed multiple-choice rows: one question's prompt and all its choices in one sequence, and the accounting.

A question is laid out as one row: its prompt, then each choice's tokens but the last (the last is only a
target), one choice after another. A 4D attention mask makes it a tree: prompt tokens see the prompt so far,
a choice token sees the whole prompt and its own choice so far, never another choice; position ids restart
after the prompt for every choice. Each choice is then scored exactly as if it ran alone after the prompt, the
prompt runs once, and no row is padded inside. Rows of one forward are padded at the end only, and
`plan_batches` puts rows of similar length together, so little padding is left.

`EvalStats` counts the token rows a scorer pushes through the model (batch x padded length, summed over its
forwards) against the least any scorer that runs each prompt once and each choice once must push (every
prompt token, every choice token but the last; no padding).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import torch

from loralab.errors import LoralabError

logger = logging.getLogger(__name__)

PAD_SLACK = 0.05  # a forward never holds more padding than this fraction of its real tokens
DEFAULT_MAX_TOKENS = 2048  # padded tokens per forward: bounds the logits (tokens x vocab) held at once


@dataclass
class EvalStats:
    """Token rows pushed through the model by a scorer, and the least it could have pushed.

    Attributes:
        questions: Questions scored.
        choices: Choices scored.
        forwards: Model forward passes (a one-off 3-token probe of the attention mask is not counted).
        rows: Token rows of those forwards, padding included (sum of batch x padded length).
        prompt_tokens: Prompt tokens, each question once (after truncation to the model's length).
        choice_tokens: Choice (continuation) tokens, each choice once.
        choice_inputs: Choice tokens that must be fed: all but each choice's last, which is only a target.
    """

    questions: int = 0
    choices: int = 0
    forwards: int = 0
    rows: int = 0
    prompt_tokens: int = 0
    choice_tokens: int = 0
    choice_inputs: int = 0

    @property
    def min_rows(self) -> int:
        """Each prompt once, each choice once (but its last token), no padding."""
        return self.prompt_tokens + self.choice_inputs

    @property
    def ratio(self) -> float:
        """rows / min_rows (1.0 is the bound); NaN before anything was scored."""
        return self.rows / self.min_rows if self.min_rows else math.nan

    @property
    def ratio_all_tokens(self) -> float:
        """rows / (prompt tokens + all choice tokens): the looser count, which includes each choice's last token."""
        total = self.prompt_tokens + self.choice_tokens
        return self.rows / total if total else math.nan

    def add_question(self, ctx: Sequence[int], conts: Sequence[Sequence[int]]) -> None:
        self.questions += 1
        self.choices += len(conts)
        self.prompt_tokens += len(ctx)
        self.choice_tokens += sum(len(c) for c in conts)
        self.choice_inputs += sum(max(len(c) - 1, 0) for c in conts)

    def add_forward(self, batch: int, length: int) -> None:
        self.forwards += 1
        self.rows += batch * length

    def as_dict(self) -> dict[str, float]:
        return {**asdict(self), "min_rows": self.min_rows, "ratio": self.ratio,
                "ratio_all_tokens": self.ratio_all_tokens}


def packed_length(ctx: Sequence[int], conts: Sequence[Sequence[int]]) -> int:
    """Tokens in the question's packed row."""
    return len(ctx) + sum(max(len(c) - 1, 0) for c in conts)


def plan_batches(lengths: Sequence[int], max_questions: int, max_tokens: int,
                 slack: float = PAD_SLACK) -> list[list[int]]:
    """Group rows (indices into `lengths`) into forwards: longest first, each forward taking the next rows while
    it has at most `max_questions` rows, at most `max_tokens` padded tokens and at most `slack` padding.

    A row longer than `max_tokens` gets a forward of its own. Because no forward exceeds the slack, the rows of
    all forwards together are at most (1 + slack) x the real tokens, whatever the lengths.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    start = 0
    while start < len(order):
        width = lengths[order[start]]
        real, end = width, start + 1
        while end < len(order) and end - start < max_questions:
            n, nxt = end - start + 1, lengths[order[end]]
            if n * width > max_tokens or n * width > (1 + slack) * (real + nxt):
                break
            real, end = real + nxt, end + 1
        batches.append(order[start:end])
        start = end
    return batches


@dataclass
class PackedBatch:
    """Model inputs for packed rows, and where each prediction sits in the flattened (batch x length) logits.

    `pred_rows[k]` is the flattened logits row whose next-token distribution scores `targets[k]`. Per question,
    its prompt's own predictions come first (`ctx_spans`), then each choice's (`choice_spans`).
    """

    input_ids: torch.Tensor
    position_ids: torch.Tensor
    attention_mask: torch.Tensor
    pred_rows: torch.Tensor
    targets: torch.Tensor
    ctx_spans: list[tuple[int, int]]
    choice_spans: list[list[tuple[int, int]]]


def pack_rows(questions: Sequence[tuple[Sequence[int], Sequence[Sequence[int]]]], pad_id: int,
              dtype: torch.dtype, device: torch.device) -> PackedBatch:
    """One row per (prompt, choices) question, end-padded to the longest; the tree mask as an additive float mask
    (0 where attention is allowed, the dtype's minimum elsewhere): eager attention adds a mask, so a boolean one
    would be silently wrong there, while SDPA takes either."""
    width = max(packed_length(ctx, conts) for ctx, conts in questions)
    ids, pos, seg = [], [], []
    pred_rows: list[int] = []
    targets: list[int] = []
    ctx_spans, choice_spans = [], []
    for b, (ctx, conts) in enumerate(questions):
        base, n_ctx = b * width, len(ctx)
        row_ids, row_pos, row_seg = list(ctx), list(range(n_ctx)), [0] * n_ctx
        start = len(targets)
        pred_rows.extend(base + j for j in range(n_ctx - 1))
        targets.extend(ctx[1:])
        ctx_spans.append((start, len(targets)))
        spans = []
        for c, cont in enumerate(conts):
            start, offset = len(targets), len(row_ids)
            tail = list(cont[:-1])
            row_ids += tail
            row_pos += range(n_ctx, n_ctx + len(tail))
            row_seg += [c + 1] * len(tail)
            if cont:  # the prompt's last token predicts the choice's first, each tail token the next one
                pred_rows.append(base + n_ctx - 1)
                pred_rows.extend(base + offset + j for j in range(len(tail)))
                targets.extend(cont)
            spans.append((start, len(targets)))
        choice_spans.append(spans)
        n_pad = width - len(row_ids)
        ids.append(row_ids + [pad_id] * n_pad)
        pos.append(row_pos + [0] * n_pad)
        row_seg += [-1] * n_pad  # padding sees the prompt and earlier padding: no row of the mask is empty
        seg.append(row_seg)
    segments = torch.tensor(seg, device=device)
    causal = torch.ones(width, width, dtype=torch.bool, device=device).tril()
    allowed = causal & ((segments[:, None, :] == 0) | (segments[:, None, :] == segments[:, :, None]))
    mask = torch.zeros(allowed.shape, dtype=dtype, device=device).masked_fill_(~allowed, torch.finfo(dtype).min)
    return PackedBatch(torch.tensor(ids, device=device), torch.tensor(pos, device=device), mask[:, None],
                       torch.tensor(pred_rows, dtype=torch.long, device=device),
                       torch.tensor(targets, dtype=torch.long, device=device), ctx_spans, choice_spans)


def target_scores(logits: torch.Tensor, pred_rows: torch.Tensor, targets: torch.Tensor,
                  chunk: int = 256) -> tuple[list[float], list[bool]]:
    """Log-probability of each target under its row's distribution, and whether it is that row's argmax.

    The log-normaliser and argmax are taken `chunk` rows at a time, so no second (tokens x vocab) tensor is
    held besides the logits themselves.
    """
    flat = logits.reshape(-1, logits.shape[-1])
    lse = torch.empty(flat.shape[0], dtype=torch.float32, device=flat.device)
    best = torch.empty(flat.shape[0], dtype=torch.long, device=flat.device)
    for s in range(0, flat.shape[0], chunk):
        rows = flat[s:s + chunk].float()
        lse[s:s + chunk] = torch.logsumexp(rows, dim=-1)
        best[s:s + chunk] = rows.argmax(dim=-1)
    logp = flat[pred_rows, targets].float() - lse[pred_rows]
    return logp.tolist(), (best[pred_rows] == targets).tolist()


def tree_mask_works(forward: Callable[..., torch.Tensor], dtype: torch.dtype, device: torch.device,
                    vocab_size: int) -> bool:
    """Whether the model honours a custom 4D mask and explicit position ids (most transformers models do; some
    attention kernels and ALiBi models ignore or refuse them, and ignoring would be silently wrong).

    `forward(input_ids, attention_mask, position_ids)` returns logits (None: the model's own causal default).
    A prompt [a] with choices [b1..b4, .] and [c, .] packs to [a, b1..b4, c]: c must see neither b nor sit at
    position 5, so its logits must match [a, c] run alone, much closer than what seeing the b's or position 5
    would change; the b's must match [a, b1..b4] run alone.
    """
    a, c, *bs = (t % vocab_size for t in (1, 2, 3, 4, 5, 6))
    try:
        packed = pack_rows([([a], [[*bs, a], [c, a]])], 0, dtype, device)
        ids, tree, pos = packed.input_ids, packed.attention_mask, packed.position_ids
        got = forward(ids, tree, pos)[0].float()
        causal = torch.ones(6, 6, dtype=torch.bool, device=device).tril()
        leaky = torch.zeros_like(tree).masked_fill_(~causal, torch.finfo(dtype).min)
        seen_b = forward(ids, leaky, pos)[0, -1].float()
        at_5 = forward(ids, tree, torch.arange(6, device=device)[None])[0, -1].float()
        alone_b = forward(ids[:, :5], None, None)[0].float()
        alone_c = forward(torch.tensor([[a, c]], device=device), None, None)[0, -1].float()
    except LoralabError:
        raise  # e.g. a task-routed method without a task: the real forward would say the same
    except (RuntimeError, ValueError, TypeError, IndexError) as exc:
        logger.debug("custom 4D attention masks not usable (%s: %s); scoring with a shared KV cache", type(exc), exc)
        return False
    effect = min((seen_b - alone_c).abs().max().item(), (at_5 - alone_c).abs().max().item())
    error = max((got[-1] - alone_c).abs().max().item(), (got[:5] - alone_b).abs().max().item())
    works = error <= 0.1 * effect  # honoured: float noise; ignored: error == effect
    if not works:
        logger.debug("custom 4D attention mask or position ids ignored (error %.3g vs effect %.3g); scoring "
                     "with a KV cache", error, effect)
    return works
