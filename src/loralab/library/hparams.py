"""The one hyperparameter set that every adapter of a library is trained with."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Literal

from loralab.errors import ConfigError
from loralab.utils.config import from_mapping, read_yaml_mapping

SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup")


@dataclass(frozen=True)
class LoRAHparams:
    """Shared LoRA training hyperparameters (one set for every task of a library).

    Args:
        rank: LoRA rank r.
        alpha: LoRA alpha; the update is scaled by alpha / rank.
        dropout: Dropout on the LoRA input.
        target_modules: "all-linear" (every linear layer found by type, minus the output head), or
            a list of module-name suffixes.
        learning_rate: Peak learning rate (AdamW).
        scheduler: Learning-rate schedule after warmup.
        warmup_ratio: Fraction of steps spent warming up.
        weight_decay: AdamW weight decay.
        max_steps: Optimiser steps per adapter; when None, `epochs` passes over the train split.
        epochs: Passes over the train split when `max_steps` is None.
        batch_size: Examples per device per micro-batch.
        grad_accum: Micro-batches per optimiser step.
        max_length: Longest tokenised example; longer prompts lose tokens from the left.
        max_train_examples: Cap on train examples per task (None: the whole split).
        seed: Seed for LoRA init, data order and dropout.
        mixed_precision: "auto" (bf16 on CUDA if supported, else fp32), "no", "fp16" or "bf16".
        checkpoint_steps: Save a resumable trainer checkpoint every N steps (None: never).
        report_to: "none" or "tensorboard" (loss, learning rate and router statistics per logging step).
    """

    rank: int = field(default=8, metadata={"help": "LoRA rank r."})
    alpha: float = field(default=16.0, metadata={"help": "LoRA alpha (scale alpha/r)."})
    dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA input."})
    target_modules: str | tuple[str, ...] = field(default="all-linear", metadata={"help": "all-linear or names."})
    learning_rate: float = field(default=5e-4, metadata={"help": "Peak learning rate."})
    scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "cosine"
    warmup_ratio: float = 0.05
    weight_decay: float = 0.0
    max_steps: int | None = 200
    epochs: float = 1.0
    batch_size: int = 8
    grad_accum: int = 1
    max_length: int = 512
    max_train_examples: int | None = None
    seed: int = 0
    mixed_precision: Literal["auto", "no", "fp16", "bf16"] = "auto"
    checkpoint_steps: int | None = None
    report_to: Literal["none", "tensorboard"] = "none"

    # fields that change logging or checkpointing, not the trained weights: adapters differing only here share a library
    LOGGING_FIELDS = frozenset({"report_to", "checkpoint_steps"})

    def __post_init__(self) -> None:
        _positive("rank", self.rank)
        _positive("batch_size", self.batch_size)
        _positive("grad_accum", self.grad_accum)
        _positive("max_length", self.max_length)
        for name in ("max_steps", "max_train_examples", "checkpoint_steps"):
            if getattr(self, name) is not None:
                _positive(name, getattr(self, name))
        if self.alpha <= 0:
            raise ConfigError(f"alpha must be > 0, got {self.alpha}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if not self.learning_rate > 0:
            raise ConfigError(f"learning_rate must be > 0, got {self.learning_rate}")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.epochs <= 0:
            raise ConfigError(f"epochs must be > 0, got {self.epochs}")
        if self.scheduler not in SCHEDULERS:
            raise ConfigError(f"scheduler must be one of {SCHEDULERS}, got {self.scheduler!r}")
        if isinstance(self.target_modules, str) and self.target_modules != "all-linear":
            raise ConfigError(f"target_modules must be 'all-linear' or a list of names, got {self.target_modules!r}")
        if not isinstance(self.target_modules, str) and not self.target_modules:
            raise ConfigError("target_modules must not be an empty list")

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        if isinstance(self.target_modules, tuple):
            out["target_modules"] = list(self.target_modules)
        return out

    def replace(self, **changes: Any) -> LoRAHparams:
        return dataclasses.replace(self, **changes)


def _positive(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")


def load_hparams(path: str | os.PathLike[str] | None = None, **overrides: Any) -> LoRAHparams:
    """Defaults, then the YAML file's keys, then non-None `overrides` (e.g. max_steps from the CLI)."""
    data = read_yaml_mapping(path) if path is not None else {}
    data.update({k: v for k, v in overrides.items() if v is not None})
    return from_mapping(LoRAHparams, data, where=str(path or "hyperparameters"))
