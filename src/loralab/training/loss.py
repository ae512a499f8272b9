"""The answer-only loss, with logits computed only where loss is taken (`logits_to_keep`).

The LM head is the most expensive matmul of a small model (vocab x hidden per position), so the model is
asked for logits only at the positions whose next token is an answer token. Training takes the summed
cross-entropy over the accumulated batch (`answer_only_loss`); validation takes it per row
(`answer_token_losses`) so the loss over a validation set is its token-weighted mean, whatever the batching.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from loralab.training.features import IGNORE, ROUTING_KEYS


def _answer_logits(model: torch.nn.Module, inputs: dict[str, torch.Tensor]):
    """(model output, targets): logits only at the positions (union over the batch) that predict an answer token."""
    next_labels = inputs["labels"][:, 1:]
    keep = (next_labels != IGNORE).any(dim=0).nonzero().squeeze(1)
    routing = {k: inputs[k] for k in ROUTING_KEYS if k in inputs}
    out = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], logits_to_keep=keep, **routing)
    return out, next_labels[:, keep]


def answer_only_loss(model: torch.nn.Module, inputs: dict[str, torch.Tensor], num_items: torch.Tensor | int | None):
    """Summed CE over answer tokens / num_items, with logits computed only at positions that predict them.

    Returns (loss, number of scored tokens, auxiliary loss or None). Positions are the union over the batch
    (the model takes one index list for all rows); rows with no answer at a kept position contribute
    nothing there. Routing keys in the batch go to the model; a LoRA-MoE model returns its auxiliary loss
    in `output.aux_loss`.
    """
    out, targets = _answer_logits(model, inputs)
    logits = out.logits.float()
    loss_sum = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE,
                               reduction="sum")
    n_tokens = (targets != IGNORE).sum()
    loss = loss_sum / (num_items if num_items is not None else n_tokens.clamp(min=1))
    return loss, n_tokens, out.get("aux_loss")


def answer_token_losses(model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row: (summed CE over its answer tokens, number of answer tokens); the same CE as `answer_only_loss`.

    No auxiliary loss: a validation loss measures the answers, not a router's regulariser.
    """
    out, targets = _answer_logits(model, inputs)
    logits = out.logits.float()
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE,
                         reduction="none").view(targets.shape)
    return ce.sum(dim=1), (targets != IGNORE).sum(dim=1)
