"""What the model-based strategies (ppl, embedding) share: which target examples they read, and batching.

Both read only the target's train or validation split: the test split is what a selection is later
evaluated on, so choosing LoRAs by it would leak the answers into the choice.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

from loralab.data import Example, Task
from loralab.errors import ConfigError

SELECTION_SPLITS = ("train", "validation")


def check_positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")


@dataclass
class ExampleOptions:
    """How many target examples a model-based strategy reads, and how.

    Args:
        n_examples: The first N examples (by id) of the target's `split`.
        split: "train" or "validation"; never "test", which a selection is evaluated on.
        batch_size: Sequences per forward pass.
        max_length: Longest tokenised sequence; longer prompts lose tokens from the left.
    """

    n_examples: int = 16
    split: Literal["train", "validation"] = "train"
    batch_size: int = 8
    max_length: int = 512

    def __post_init__(self) -> None:
        for name in ("n_examples", "batch_size", "max_length"):
            check_positive_int(name, getattr(self, name))
        if self.split not in SELECTION_SPLITS:
            raise ConfigError(f"split must be one of {', '.join(SELECTION_SPLITS)} (never test: a selection is "
                              f"evaluated there), got {self.split!r}")

    def length_limit(self, model) -> int:
        """`max_length`, but never past the model's context (learned position tables would index out of range)."""
        context = getattr(getattr(model, "config", None), "max_position_embeddings", None)
        return min(self.max_length, int(context)) if context else self.max_length

    def target_examples(self, task: Task) -> list[Example]:
        """The first `n_examples` of the target's split; an `EmptySplitError` names the task and split."""
        return task.split(self.split, self.n_examples)


def chunks(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
