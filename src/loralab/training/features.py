"""What the trainer trains and validates on: (input_ids, labels) with loss on answer tokens only, and the collator.

Each example is the prompt followed by its answer (the correct choice, or the first target plus EOS for
generation), split into tokens exactly as the evaluation scores it (lm-eval's `_encode_pair`). Labels are
-100 on the prompt, so only answer tokens carry loss. Training features come from the train split (capped
by `max_train_examples`); validation features are the first `val_examples` of the validation split in its
stable order (sorted by id), encoded the same way, so the validation loss is the training loss on unseen data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from loralab.data.schema import Example, Task
from loralab.errors import ConfigError, EmptySplitError, TaskFormatError
from loralab.eval.loglik import encode_pair, prefix_token_id
from loralab.training.hparams import LoRAHparams

IGNORE = -100
ROUTING_KEYS = ("task_ids", "task_types")  # per-sample routing context that LoRA-MoE models take from the batch


def answer_features(task: Task, tokenizer, hp: LoRAHparams, examples: Sequence[Example]) -> list[dict]:
    """Tokenised (input_ids, labels) of `examples`, answers only in the labels, at most `hp.max_length` tokens."""
    prefix = prefix_token_id(tokenizer)
    features = []
    for ex in examples:
        prompt = task.prompt(ex)
        ctx, answer = encode_pair(tokenizer, prompt, ex.demonstration_answer(), prefix)
        if task.kind == "generation" and tokenizer.eos_token_id is not None:
            answer = answer + [tokenizer.eos_token_id]
        if not answer:  # an empty target and no EOS to append: every label would be masked (no loss, NaN)
            raise TaskFormatError(f"task {task.name!r}, example {ex.id!r}: its answer "
                                  f"{ex.demonstration_answer()!r:.40} has no token to train on")
        answer = answer[: hp.max_length - 1]  # max_length >= 2 (LoRAHparams), so one answer token always stays
        ctx = ctx[-(hp.max_length - len(answer)):]
        features.append({"input_ids": ctx + answer, "labels": [IGNORE] * len(ctx) + answer})
    return features


def training_features(task: Task, tokenizer, hp: LoRAHparams, examples: Sequence[Example] | None = None) -> list[dict]:
    """Tokenised (input_ids, labels) for the task's train split (or `examples`), the first `max_train_examples`."""
    examples = list(examples if examples is not None else task.split("train"))
    if hp.max_train_examples is not None:
        examples = examples[: hp.max_train_examples]
    return answer_features(task, tokenizer, hp, examples)


def validation_examples(task: Task, hp: LoRAHparams) -> list[Example]:
    """The first `hp.val_examples` of the task's validation split (sorted by id, so always the same ones).

    Raises:
        ConfigError: the task has no validation split (only asked when `val_every` is set).
    """
    try:
        return task.split("validation", hp.val_examples)
    except EmptySplitError:
        raise ConfigError(f"val_every: {hp.val_every} needs a validation split, but task {task.name!r} has no "
                          "validation examples; unset val_every or give the task a validation split") from None


def validation_features(task: Task, tokenizer, hp: LoRAHparams) -> list[dict]:
    """`answer_features` of `validation_examples`: what the validation loss is measured on."""
    return answer_features(task, tokenizer, hp, validation_examples(task, hp))


@dataclass
class PadCollator:
    """Right-pads a batch; labels are padded with -100 so padding never carries loss.

    Features may carry `task_ids` / `task_types` (ints); they become (B,) tensors for routing.
    """

    pad_token_id: int

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        longest = max(len(f["input_ids"]) for f in features)
        ids, labels, mask = [], [], []
        for f in features:
            pad = longest - len(f["input_ids"])
            ids.append(f["input_ids"] + [self.pad_token_id] * pad)
            labels.append(f["labels"] + [IGNORE] * pad)
            mask.append([1] * len(f["input_ids"]) + [0] * pad)
        batch = {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels), "attention_mask": torch.tensor(mask)}
        for key in ROUTING_KEYS:
            if key in features[0]:
                batch[key] = torch.tensor([f[key] for f in features], dtype=torch.long)
        return batch
