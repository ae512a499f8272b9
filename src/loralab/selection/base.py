"""What every selection strategy shares: the `Selector` interface, its inputs, and the ranked result.

A strategy only scores candidates; ranking, `k`, leave-one-out and error checks live in one place
(`loralab.selection.select.select_experts`), so strategies cannot disagree on tie-breaking or on
which LoRAs were eligible.
"""

from __future__ import annotations

import math
import os
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal

from loralab.data import Task
from loralab.library.store import AdapterEntry, Library
from loralab.models import LoadedModel

OwnLoRA = Literal["excluded", "included", "absent"]


@dataclass(frozen=True)
class Selection:
    """One chosen library LoRA.

    Attributes:
        rank: 1 for the best candidate.
        task: The library task whose LoRA was chosen.
        score: The strategy's score (see `score_name`; for `ppl` lower is better, otherwise higher).
        score_name: What the score is ("perplexity", "cosine", "relevance", "random draw").
        strategy: The strategy that chose it.
        target: The target task the selection was made for.
        own_lora: The target's own LoRA: "excluded" (in the library, left out: leave-one-out),
            "included" (in the library and a candidate), or "absent" (not in the library).
        domain: The chosen LoRA's domain tag (from its library entry).
        path: The chosen adapter directory (plain PEFT format).
        precision: The resolved precision the strategy's forwards ran in ("fp32", "bf16", "fp16"); None for a
            strategy that runs no model (random, manual).
    """

    rank: int
    task: str
    score: float
    score_name: str
    strategy: str
    target: str
    own_lora: OwnLoRA
    domain: str
    path: str
    precision: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SelectionContext:
    """Everything a strategy may look at. Built by `select_experts`; strategies must not change it.

    Attributes:
        target: The target task.
        candidates: The eligible library entries (the target's own already left out if asked), sorted by task.
        library: The library they come from (for hash checks before loading weights).
        model_slug: The library's folder name of the base model.
        entries: Every library entry of this model, candidates or not (names a relevance file may use).
        lm: The base model, for strategies with `needs_model`; None before it is loaded and for the others.
        data_dir: Where suite task data lives (for strategies that read other tasks' examples).
        library_tasks: Task objects for library tasks that `load_task` cannot find by name.
        progress: Show progress bars.
    """

    target: Task
    candidates: list[AdapterEntry]
    library: Library
    model_slug: str
    entries: list[AdapterEntry]
    lm: LoadedModel | None = None
    data_dir: str | os.PathLike[str] | None = None
    library_tasks: Mapping[str, Task] = field(default_factory=dict)
    progress: bool = True


class Selector(ABC):
    """A LoRA selection strategy: scores every candidate LoRA for a target task.

    Subclasses set the class attributes and implement `scores`. `prepare` runs before any model is
    loaded, so a strategy can reject bad input (a relevance file, a missing task) in a second rather
    than after a model load.

    Attributes:
        name: Registry key (lowercase), what `--strategy` takes.
        description: One line.
        score_name: What the score means, for tables and records.
        higher_is_better: False when the lowest scores win (perplexity).
        needs_model: Whether `scores` needs `context.lm` (random and manual do not load a model).
        config_cls: The strategy's options as a dataclass (validated in its `__post_init__`).
        seeded: The choice depends on a `seed` option, which a benchmark cell sets to its own seed.
        baseline: A point of comparison for relevance-based selection (LoRALib compares relevant LoRAs
            against PPL-based and random selection); the benchmark's findings test the others against these.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    score_name: ClassVar[str]
    higher_is_better: ClassVar[bool] = True
    needs_model: ClassVar[bool] = False
    config_cls: ClassVar[type]
    seeded: ClassVar[bool] = False
    baseline: ClassVar[bool] = False

    def __init__(self, config: Any = None) -> None:
        self.config = config if config is not None else self.config_cls()

    def prepare(self, context: SelectionContext) -> None:  # noqa: B027 (optional hook)
        """Check inputs that do not need the model; raise a `UserInputError` on bad ones."""

    @abstractmethod
    def scores(self, context: SelectionContext) -> dict[str, float]:
        """Score of every candidate, keyed by its task name."""


def rank_scores(scores: Mapping[str, float], higher_is_better: bool) -> list[tuple[str, float]]:
    """Best first; equal scores in task-name order, so a selection never depends on dict or file order."""
    if any(math.isnan(s) for s in scores.values()):
        raise ValueError(f"a selection strategy returned NaN scores: {dict(scores)}")  # a bug, not bad input
    sign = -1.0 if higher_is_better else 1.0
    return sorted(scores.items(), key=lambda item: (sign * item[1], item[0]))
