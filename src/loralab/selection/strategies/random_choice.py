"""`random`: a seeded random choice, the floor any informed strategy has to beat.

Each candidate's score is a uniform draw seeded by (seed, target, candidate), not one stream over
the candidate list. So the draw of a LoRA does not change when another LoRA joins or leaves the
library (or when the target's own LoRA is included or not), different targets get independent
choices, and the result is the same in every process (`random.Random` seeds strings with SHA-512,
not with Python's salted `hash`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from loralab.errors import ConfigError
from loralab.selection.base import SelectionContext, Selector
from loralab.selection.registry import register_selector


@dataclass
class RandomConfig:
    """Args: seed: Any integer; the same seed gives the same choice."""

    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigError(f"seed must be an integer, got {self.seed!r}")


@register_selector
class RandomSelector(Selector):
    name = "random"
    description = "seeded uniform random choice (the baseline)"
    score_name = "random draw"
    higher_is_better = True
    needs_model = False
    config_cls = RandomConfig
    seeded = True
    baseline = True

    def scores(self, context: SelectionContext) -> dict[str, float]:
        seed, target = self.config.seed, context.target.name
        return {e.task: random.Random(f"loralab-select:{seed}:{target}:{e.task}").random() for e in context.candidates}
