"""Greedy generation in left-padded batches.

`generate_greedy` cuts each continuation before the task's earliest stop string. `generate_bigbench`
stops where BIG-bench's postprocessing would cut (after the first stop string, unless it starts the
text) and returns the whole decoded continuation for `bigbench_postprocess`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from loralab.data.schema import GenerationSpec
from loralab.eval.metrics import cut_at_stop


@torch.inference_mode()
def generate_greedy(model: torch.nn.Module, tokenizer: Any, prompts: Sequence[str], spec: GenerationSpec) -> list[str]:
    """Greedy continuations of `prompts` (one batch), each cut at the first stop string."""
    kwargs = {"stop_strings": list(spec.stop), "tokenizer": tokenizer} if spec.stop else {}
    enc = _encode(model, tokenizer, prompts)
    texts = _generate(model, tokenizer, enc, spec.max_new_tokens, kwargs)
    return [cut_at_stop(t, spec.stop) for t in texts]


@torch.inference_mode()
def generate_bigbench(
    model: torch.nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    stop_strings: Sequence[str | None],
    max_new_tokens: int,
) -> list[str]:
    """Greedy continuations of `prompts`, row i ending early once `stop_strings[i]` occurs at an index > 0.

    BIG-bench keeps a stop string found at index 0 and cuts nothing then, so such a row runs to
    `max_new_tokens`, as it does in BIG-bench. Nothing is cut here: apply `bigbench_postprocess`.
    """
    if len(stop_strings) != len(prompts):
        raise ValueError(f"need one stop string (or None) per prompt: {len(stop_strings)} for {len(prompts)}")
    enc = _encode(model, tokenizer, prompts)
    kwargs: dict[str, Any] = {}
    if any(stop_strings):
        criteria = _StopAfterStart(tokenizer, stop_strings, prompt_len=enc["input_ids"].shape[1])
        kwargs["stopping_criteria"] = StoppingCriteriaList([criteria])
    return _generate(model, tokenizer, enc, max_new_tokens, kwargs)


class _StopAfterStart(StoppingCriteria):
    """Per row: done once the generated text contains its stop string first at an index > 0.

    A row whose first occurrence is at index 0 never stops on it (its first occurrence cannot move),
    which is exactly where BIG-bench's `text.find(stop) > 0` cuts nothing.
    """

    def __init__(self, tokenizer: Any, stop_strings: Sequence[str | None], prompt_len: int) -> None:
        self.tokenizer = tokenizer
        self.stops = list(stop_strings)
        self.prompt_len = prompt_len  # the left-padded prompt width: what follows it is generated

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        texts = self.tokenizer.batch_decode(input_ids[:, self.prompt_len:], skip_special_tokens=True)
        done = [bool(stop) and text.find(stop) > 0 for stop, text in zip(self.stops, texts)]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


def _encode(model: torch.nn.Module, tokenizer: Any, prompts: Sequence[str]) -> dict[str, torch.Tensor]:
    device = next(model.parameters()).device
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # generation continues from the right end of every row
    try:
        enc = tokenizer(list(prompts), return_tensors="pt", padding=True, add_special_tokens=False)
    finally:
        tokenizer.padding_side = side
    return {k: v.to(device) for k, v in enc.items()}


def _generate(model: torch.nn.Module, tokenizer: Any, enc: dict[str, torch.Tensor], max_new_tokens: int,
              kwargs: dict[str, Any]) -> list[str]:
    out = model.generate(
        **enc,
        max_new_tokens=max_new_tokens,
        do_sample=False,
        pad_token_id=tokenizer.pad_token_id,
        **kwargs,
    )
    new_tokens = out[:, enc["input_ids"].shape[1]:]
    return tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
