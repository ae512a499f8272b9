"""The one hyperparameter set that every adapter of a library is trained with."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from annotated_types import Ge, Gt, Le, Lt, MinLen

from loralab.errors import ConfigError
from loralab.utils.config import (OVERRIDES_WHERE, Describe, Override, as_overrides, check, check_fields,
                                  check_overridden, from_mapping, read_yaml_mapping)
from loralab.utils.extras import has_extra, missing_extra
from loralab.utils.precision import Precision, resolve_precision

SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup")

# The constraints live in the type hints: the config-file schema (`loralab.utils.config`) and direct
# construction (`__post_init__`) both read them, so a limit is declared once and worded the same everywhere.
PositiveInt = Annotated[int, Ge(1)]
Fraction = Annotated[float, Ge(0), Lt(1)]
# numpy's seed (transformers.set_seed seeds it) must fit in 32 bits and be >= 0
Seed = Annotated[int, Ge(0), Le(2**32 - 1)]
# Every example keeps at most max_length - 1 answer tokens after >= 1 prompt token, so 1 would leave
# nothing to train on (every label masked); 2 keeps one answer token.
MaxLength = Annotated[int, Ge(2), Describe("an integer >= 2 (at least one prompt and one answer token)")]
TargetModules = Literal["all-linear"] | Annotated[tuple[str, ...], MinLen(1)]
# the names themselves are checked against the installed transformers (`tracking.parse_report_to`)
ReportToValue = Annotated[str | Annotated[tuple[str, ...], MinLen(1)],
                          Describe("none, all, an integration name (tensorboard, wandb, mlflow, ...) or a list "
                                   "of them")]


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
        mixed_precision: Training precision of configs written before the run-wide `precision` setting:
            "auto" (follow `precision`), "no" (fp32), "fp16" or "bf16"; when `precision` is "auto" an explicit
            value here decides, and one that contradicts an explicit `precision` is refused
            (`training_precision`).
        checkpoint_steps: Save a resumable trainer checkpoint every N steps (None: never).
        report_to: Where HF Trainer reports the loss, learning rate and router statistics of each logging step:
            "none", "all" (every integration installed), or one or more of transformers' reporting integrations
            (tensorboard, wandb, mlflow, ...) as a list or a comma-separated string (`loralab.training.tracking`).
        val_every: Measure the answer-only loss on the validation split every N optimiser steps and after the
            last step (None: never). It shows whether training has converged; it changes no trained weight
            (no training randomness is used, so the training losses are the same with and without it).
        val_examples: Validation examples per task when `val_every` is set: the first N of the task's
            validation split in its stable (id) order; a multi-task run measures N of every task.
    """

    rank: PositiveInt = field(default=8, metadata={"help": "LoRA rank r."})
    alpha: Annotated[float, Gt(0)] = field(default=16.0, metadata={"help": "LoRA alpha (scale alpha/r)."})
    dropout: Fraction = field(default=0.05, metadata={"help": "Dropout on the LoRA input."})
    target_modules: TargetModules = field(default="all-linear", metadata={"help": "all-linear or names."})
    learning_rate: Annotated[float, Gt(0)] = field(default=5e-4, metadata={"help": "Peak learning rate."})
    scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "cosine"
    warmup_ratio: Fraction = 0.05
    weight_decay: Annotated[float, Ge(0)] = 0.0  # AdamW refuses a negative one (only once training starts)
    max_steps: PositiveInt | None = 200
    epochs: Annotated[float, Gt(0)] = 1.0
    batch_size: PositiveInt = 8
    grad_accum: PositiveInt = 1
    max_length: MaxLength = 512
    max_train_examples: PositiveInt | None = None
    seed: Seed = 0
    mixed_precision: Literal["auto", "no", "fp16", "bf16"] = "auto"
    checkpoint_steps: PositiveInt | None = None
    report_to: ReportToValue = field(default="none", metadata={"help": "none, all, or integration names."})
    val_every: PositiveInt | None = field(default=None, metadata={"help": "Validation loss every N steps."})
    val_examples: PositiveInt = field(default=64, metadata={"help": "Validation examples per task."})

    # fields that change logging or checkpointing, not the trained weights: adapters differing only here share a
    # library, and a checkpoint trained with other values of them is resumed
    LOGGING_FIELDS = frozenset({"report_to", "checkpoint_steps", "val_every", "val_examples"})
    # the validation settings: not in `to_dict` while validation is off (`val_every` None), so every dict
    # written before they existed (cell ids, library entries, checkpoint fingerprints) stays the same
    VALIDATION_FIELDS = frozenset({"val_every", "val_examples"})

    def __post_init__(self) -> None:
        check_fields(self)
        if self.report_to != "none":  # the names are transformers' (checked against it), kept in one canonical form
            from loralab.training.tracking import parse_report_to

            object.__setattr__(self, "report_to", parse_report_to(self.report_to))
        names = (self.report_to,) if isinstance(self.report_to, str) else self.report_to
        if "tensorboard" in names and not has_extra("tensorboard"):
            # here, so a config asking for it fails when it is read (a bench dry run too), not after the model loads;
            # the other integrations are checked before training starts (`tracking.check_integrations`)
            raise missing_extra("tensorboard", "report_to: 'tensorboard'")

    def to_dict(self) -> dict[str, Any]:
        """Every field as plain JSON data, but the `VALIDATION_FIELDS` only when validation is on."""
        out = dataclasses.asdict(self)
        if self.val_every is None:
            for name in self.VALIDATION_FIELDS:
                del out[name]
        for name in ("target_modules", "report_to"):
            if isinstance(out[name], tuple):
                out[name] = list(out[name])
        return out

    def replace(self, **changes: Any) -> LoRAHparams:
        return dataclasses.replace(self, **changes)


def training_precision(requested: str | None, hp: LoRAHparams | None, device: Any = None) -> Precision:
    """The precision a run with `hp` runs under: `requested` ("auto", "fp32", "bf16", "fp16"; None: "auto"),
    or `hp.mixed_precision` when that names one and `requested` is "auto" (so older configs train as before).

    Raises:
        ConfigError: an explicit `requested` that differs from an explicit `mixed_precision`.
    """
    legacy = hp.mixed_precision if hp is not None else "auto"
    if legacy == "auto":
        return resolve_precision(requested, device)
    wanted = "fp32" if legacy == "no" else legacy
    if requested not in (None, "auto") and requested != wanted:
        resolve_precision(requested, device)  # an unknown name is reported as such first
        raise ConfigError(f"precision: {requested!r} contradicts mixed_precision {legacy!r} of the hyperparameters; "
                          f"precision sets training too: drop mixed_precision or set precision {wanted!r}")
    chosen = resolve_precision(wanted, device)
    return dataclasses.replace(chosen, reason=f"mixed_precision {legacy!r}: {chosen.reason}")


def load_hparams(path: str | os.PathLike[str] | None = None, *, overrides: Sequence[Override | str] = (),
                 **options: Any) -> LoRAHparams:
    """Defaults, then the YAML file's keys, then non-None `options` (e.g. max_steps from the CLI's --max-steps),
    then `overrides` (`KEY=VALUE`, see `loralab.utils.config.parse_override`).

    A key set both by an option and by an override is refused (one of them would be silently ignored).
    """
    data = check(LoRAHparams, read_yaml_mapping(path), str(path)) if path is not None else {}
    given = {k: v for k, v in options.items() if v is not None}
    # each layer is checked on its own first, so an error names where the value came from: the file, an option
    # (a flag) or an override
    where = "options" if given else str(path or "hyperparameters")
    merged = {**data, **given}
    if not overrides:
        return from_mapping(LoRAHparams, merged, where=where)
    check(LoRAHparams, merged, where)
    parsed = as_overrides(overrides)
    for o in parsed:
        if o.path[0] in given:
            raise ConfigError(f"{o.path[0]} is given twice: by its option ({given[o.path[0]]!r}) and by the override "
                              f"{o.text!r}; give it once", param=o.path[0])
    return from_mapping(LoRAHparams, check_overridden(LoRAHparams, merged, parsed), where=OVERRIDES_WHERE)
