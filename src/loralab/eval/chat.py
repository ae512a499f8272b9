"""`apply_chat_template` (lm-eval's `--apply_chat_template`): score an instruct model on its chat format.

Off by default. When on, each prompt (few-shot demonstrations included) is one user turn, rendered with the
tokenizer's own chat template and its generation prompt (`tokenizer.apply_chat_template(..., tokenize=False,
add_generation_prompt=True)`), so the answer is the assistant's turn. As lm-eval does with a chat template, the
answer follows the generation prompt directly: a multiple-choice continuation loses its leading whitespace (lm-eval
drops its `target_delimiter`; a loralab choice carries its delimiter in its text), unless nothing would be
left. Generation targets are compared stripped already. Tokenisation is unchanged: no special tokens are
added, the template's own (BOS, role markers) are in the rendered text.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from loralab.errors import UserInputError


def chat_template(tokenizer: Any, owner: str = "this tokenizer") -> str:
    """The tokenizer's chat template, or a one-line error naming `owner` (a base model usually has none)."""
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):  # transformers allows named templates; `apply_chat_template` uses "default"
        template = template.get("default")
    if not isinstance(template, str) or not template.strip():
        raise UserInputError(f"apply_chat_template: {owner} has no chat template (a base model usually has none); "
                             "evaluate without it, or use an instruct model", param="apply_chat_template")
    return template


def template_sha256(tokenizer: Any) -> str:
    """SHA-256 of the chat template text (lm-eval records the same as `chat_template_sha`)."""
    return hashlib.sha256(chat_template(tokenizer).encode("utf-8")).hexdigest()


def render_chat(tokenizer: Any, prompts: Sequence[str], owner: str = "this tokenizer") -> list[str]:
    """Each prompt as one user turn with the generation prompt after it, as text (`owner`: see `chat_template`)."""
    chat_template(tokenizer, owner)
    return [tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                          add_generation_prompt=True) for prompt in prompts]


def answer_turn(choices: Sequence[str]) -> tuple[str, ...]:
    """Multiple-choice continuations as the start of the assistant's turn: leading whitespace dropped (never to '')."""
    return tuple(choice.lstrip() or choice for choice in choices)
