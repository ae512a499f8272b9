"""Greedy generation in left-padded batches, cut at the task's stop strings."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from loralab.data.schema import GenerationSpec
from loralab.eval.metrics import cut_at_stop


@torch.inference_mode()
def generate_greedy(model: torch.nn.Module, tokenizer, prompts: Sequence[str], spec: GenerationSpec) -> list[str]:
    """Greedy continuations of `prompts` (one batch), each cut at the first stop string."""
    device = next(model.parameters()).device
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # generation continues from the right end of every row
    try:
        enc = tokenizer(list(prompts), return_tensors="pt", padding=True, add_special_tokens=False)
    finally:
        tokenizer.padding_side = side
    enc = {k: v.to(device) for k, v in enc.items()}
    kwargs = {"stop_strings": list(spec.stop), "tokenizer": tokenizer} if spec.stop else {}
    out = model.generate(
        **enc,
        max_new_tokens=spec.max_new_tokens,
        do_sample=False,
        pad_token_id=tokenizer.pad_token_id,
        **kwargs,
    )
    new_tokens = out[:, enc["input_ids"].shape[1]:]
    texts = tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
    return [cut_at_stop(t, spec.stop) for t in texts]
