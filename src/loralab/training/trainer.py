"""Train one LoRA on one task with HF Trainer: loss on answer tokens only, logits only where loss is taken.

The features (`loralab.training.features`: prompt + answer, labels only on the answer) and the loss
(`loralab.training.loss`: logits only at the positions that predict an answer token) have their own
modules; their names are re-exported here. Mixed precision is autocast around the forward
(`loralab.utils.precision`): parameters, gradients and optimizer state stay fp32, and fp32 runs no autocast
at all. Everything else (gradient accumulation, fp16 loss scaling, multi-GPU, checkpoints, the validation
loop) is HF Trainer's.

Validation (`val_every`): HF's evaluation loop every N steps and after the last one, on validation features
encoded like the training ones. Its loss is the token-weighted mean of the same answer-token cross-entropy
over the whole validation set (HF's own `eval_loss` would average per-batch means, which depends on the
batching), without the auxiliary router loss. It runs with the model in eval mode (no dropout) and with
every random generator restored afterwards (the evaluation dataloader draws a seed from torch's global
generator on each pass), so training with validation takes exactly the steps it takes without.
"""

from __future__ import annotations

import logging
import math
import os
import random
import shutil
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from transformers import EvalPrediction, PrinterCallback, Trainer, TrainerCallback, TrainingArguments

from loralab.errors import ConfigError, TrainingDivergedError
from loralab.training.checkpoints import (CHECKPOINT_PREFIX, CHECKPOINT_STATE, RUN_FILE, checkpoint_dirs,
                                         latest_checkpoint, non_finite_parameters, resumable_checkpoint,
                                         run_fingerprint)
from loralab.training.features import IGNORE, ROUTING_KEYS, PadCollator, training_features
from loralab.training.hparams import LoRAHparams, training_precision
from loralab.training.loss import answer_only_loss, answer_token_losses
from loralab.training.progress import RichProgressCallback
from loralab.training.tracking import check_integrations, integrations, tracking_record
from loralab.utils.io import atomic_write_json, fsync_tree, read_json
from loralab.utils.precision import Precision, resolve_precision

__all__ = ["IGNORE", "ROUTING_KEYS", "AnswerOnlyTrainer", "PadCollator", "StepLogs", "TrainStats", "answer_only_loss",
           "train_adapter", "trainer_device", "training_arguments", "training_features"]

logger = logging.getLogger(__name__)


@runtime_checkable
class StepLogs(Protocol):
    """What a trained model may offer the trainer's logs: scalar statistics of its last forward.

    `MoEModel.step_logs` returns router statistics; a plain PEFT model offers nothing. The trainer averages
    them over the steps of each logging interval, so the engine never needs to know what a router is.
    """

    def step_logs(self) -> dict[str, float]: ...


class AnswerOnlyTrainer(Trainer):
    """HF Trainer with `answer_only_loss`; the loss is already normalised over the accumulated batch.

    Reliability on top of Trainer: every optimiser step's loss is recorded (`step_losses`) and a NaN/inf
    loss stops training with `TrainingDivergedError` before anything is saved at that step; a checkpoint is
    written only from finite weights and counts as complete only once `CHECKPOINT_STATE` is in it (written
    last, with the step losses so far); older checkpoints are removed only after that. With an `eval_dataset`,
    each validation loss is recorded in `val_history` (see the module docstring).
    """

    def __init__(self, *args: Any, batch_sampler=None, precision: Precision | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.precision = precision if precision is not None else resolve_precision("fp32", self.args.device)
        self.loss_is_scaled_for_ga = True
        self._router_sums: dict[str, float] = {}
        self._router_count = 0
        self._batch_sampler = batch_sampler
        self.method_history: list[dict[str, float]] = []
        self.step_losses: list[float] = []
        self.val_history: list[dict[str, float]] = []
        self._step_loss: torch.Tensor | None = None
        self.add_callback(_DivergenceGuard(self))

    def end_step(self, step: int) -> None:
        """Called after each optimiser step: record its loss, or stop when it is not finite."""
        if self._step_loss is None:
            return
        value = float(self._step_loss)
        self._step_loss = None
        if not math.isfinite(value):
            raise TrainingDivergedError(self.diverged_message(step, f"the loss is {value}"))
        self.step_losses.append(value)

    def diverged_message(self, step: int, what: str) -> str:
        kept = latest_checkpoint(self.args.output_dir)
        where = (f"the last good checkpoint is kept at {kept}" if kept is not None
                 else "no checkpoint was saved before it (checkpoint_steps keeps one)")
        return (f"training diverged at step {step}: {what} (learning_rate {self.args.learning_rate:g}); the diverged "
                f"weights were not saved and {where}; lower learning_rate"
                + ("" if self.precision.name == "fp32" else ", or use precision 'fp32'"))

    def _save_checkpoint(self, model, trial) -> None:  # noqa: D102
        if self.state.global_step >= self.state.max_steps:
            # No checkpoint of the finished run: HF Trainer resumed from one runs an extra optimiser step (its
            # scheduler is already at the end), so a kill before the adapter is published re-trains from the
            # previous checkpoint instead, which gives the same result.
            return
        bad = non_finite_parameters(self.model)
        if bad:
            raise TrainingDivergedError(self.diverged_message(self.state.global_step, f"weight {bad} is NaN/inf"))
        super()._save_checkpoint(model, trial)
        if not self.args.should_save:
            return
        folder = Path(self.args.output_dir) / f"{CHECKPOINT_PREFIX}{self.state.global_step}"
        fsync_tree(folder)
        atomic_write_json(folder / CHECKPOINT_STATE, {"global_step": self.state.global_step,
                                                      "step_losses": self.step_losses,
                                                      "method_history": self.method_history,
                                                      "val_history": self.val_history})
        for other in checkpoint_dirs(folder.parent):
            if other != folder:  # only now that the new one is complete
                shutil.rmtree(other, ignore_errors=True)

    def get_train_dataloader(self):  # noqa: D102
        if self._batch_sampler is None:
            return super().get_train_dataloader()
        from torch.utils.data import DataLoader

        loader = DataLoader(self.train_dataset, batch_sampler=self._batch_sampler, collate_fn=self.data_collator,
                            num_workers=self.args.dataloader_num_workers)
        return self.accelerator.prepare(loader)

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        """Add the router statistics averaged since the last log and the method's own statistics.

        They reach TensorBoard with the loss; the method statistics are also kept in `method_history`, one
        record per step (the end-of-training log at the step of the last logging step replaces that step's).
        An evaluation's log carries its metrics only (training statistics stay for the next training log).
        """
        if any(key.startswith("eval_") for key in logs):
            super().log(logs, *args, **kwargs)
            return
        if self._router_count:
            logs.update({k: v / self._router_count for k, v in self._router_sums.items()})
            self._router_sums, self._router_count = {}, 0
        stats_fn = getattr(self.model, "method_stats", None)
        stats = stats_fn() if callable(stats_fn) else {}
        if stats:
            logs.update(stats)
            record = {"step": self.state.global_step, **stats}
            if self.method_history and self.method_history[-1]["step"] == record["step"]:
                # HF Trainer's end-of-training log comes at the step of the last logging step: one record per step
                self.method_history[-1] = record
            else:
                self.method_history.append(record)
        super().log(logs, *args, **kwargs)

    def _collect_router_stats(self, model, aux) -> None:
        # the model reports its own per-step statistics (`StepLogs`); the engine knows nothing of routers
        stats = model.step_logs() if isinstance(model, StepLogs) else {}
        if not stats:
            return
        if aux is not None:
            stats["router/aux_loss"] = float(aux.detach())
        for key, value in stats.items():
            self._router_sums[key] = self._router_sums.get(key, 0.0) + value
        self._router_count += 1

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: D102
        num_items = num_items_in_batch
        # autocast covers the forward only (backward follows the forward's dtypes); the loss is taken in fp32
        with self.precision.autocast():
            loss, _, aux = answer_only_loss(model, inputs, num_items)
        if num_items is None:  # the Trainer did not count: normalise per micro-batch, then for accumulation
            loss = loss / self.current_gradient_accumulation_steps
        elif self.args.average_tokens_across_devices and self.accelerator.num_processes > 1:
            loss = loss * self.accelerator.num_processes
        if aux is not None:  # auxiliary losses are per micro-batch means: scale them for accumulation
            loss = loss + aux / self.current_gradient_accumulation_steps
        self._collect_router_stats(model, aux)
        step_part = loss.detach().float().mean()  # (a vector under DataParallel, reduced as Trainer does)
        self._step_loss = step_part if self._step_loss is None else self._step_loss + step_part
        return (loss, None) if return_outputs else loss


    def evaluate(self, *args: Any, **kwargs: Any) -> dict[str, float]:
        """HF's evaluation, with every random generator as it was before it; its loss goes to `val_history`."""
        with kept_rng_state():
            metrics = super().evaluate(*args, **kwargs)
        prefix = kwargs.get("metric_key_prefix", "eval")
        if f"{prefix}_loss" in metrics:
            self.val_history.append({"step": self.state.global_step, "loss": float(metrics[f"{prefix}_loss"])})
        return metrics

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):  # noqa: D102
        # per row: summed answer-token CE as the "predictions", answer-token count as the "labels", so that
        # `token_mean_loss` weighs every token alike and multi-process gathering keeps one entry per example
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.precision.autocast():
            sums, counts = answer_token_losses(model, inputs)
        return None, sums.detach(), counts


def token_mean_loss(prediction: EvalPrediction) -> dict[str, float]:
    """The validation loss: summed answer-token CE over all validation examples / their answer tokens."""
    total = float(np.sum(prediction.predictions, dtype=np.float64))
    tokens = int(np.sum(prediction.label_ids))
    return {"loss": total / max(tokens, 1)}


@contextmanager
def kept_rng_state() -> Iterator[None]:
    """Restore torch's (CPU and this process's CUDA device), Python's and NumPy's random state on exit."""
    py_state, np_state = random.getstate(), np.random.get_state()
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


class _DivergenceGuard(TrainerCallback):
    """Hands each finished optimiser step to the trainer, which records its loss or stops on NaN/inf."""

    def __init__(self, trainer: AnswerOnlyTrainer) -> None:
        self.trainer = trainer

    def on_step_end(self, args, state, control, **kwargs):
        self.trainer.end_step(state.global_step)


def trainer_device() -> str:
    """Where HF Trainer runs the model: CUDA when there is one, else the CPU (`use_cpu`), whatever it was given on."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def training_arguments(hp: LoRAHparams, work_dir: str | os.PathLike[str], n_examples: int,
                       precision: Precision | None = None) -> TrainingArguments:
    """HF TrainingArguments for `hp`. bf16 is never asked of HF: `AnswerOnlyTrainer` autocasts the forward itself
    (so a CPU run autocasts too, and fp32 stays free of any autocast); fp16 is, for its loss scaler.
    `val_every` sets HF's step-wise evaluation (it also evaluates after the last step), batched like training."""
    cuda = torch.cuda.is_available()
    if precision is None:
        precision = training_precision(None, hp, trainer_device())
    steps = hp.max_steps or math.ceil(hp.epochs * math.ceil(n_examples / (hp.batch_size * hp.grad_accum)))
    return TrainingArguments(
        output_dir=str(work_dir),
        max_steps=steps,
        per_device_train_batch_size=hp.batch_size,
        gradient_accumulation_steps=hp.grad_accum,
        learning_rate=hp.learning_rate,
        lr_scheduler_type=hp.scheduler,
        warmup_steps=hp.warmup_ratio,
        weight_decay=hp.weight_decay,
        logging_steps=max(1, steps // 20),
        save_strategy="steps" if hp.checkpoint_steps else "no",
        save_steps=hp.checkpoint_steps or 500,
        eval_strategy="steps" if hp.val_every is not None else "no",
        eval_steps=hp.val_every,
        per_device_eval_batch_size=hp.batch_size,
        save_total_limit=None,  # AnswerOnlyTrainer removes older checkpoints once a new one is complete
        report_to=integrations(hp.report_to) or "none",  # "all" resolved here as HF would, to what is recorded
        seed=hp.seed,
        data_seed=hp.seed,
        bf16=False,
        fp16=precision.name == "fp16",
        use_cpu=not cuda,
        disable_tqdm=True,
        remove_unused_columns=False,
        dataloader_num_workers=0,
    )


@dataclass
class TrainStats:
    steps: int
    train_loss: float
    seconds: float
    examples: int
    history: list[dict[str, float]] = field(default_factory=list)  # method statistics per logging step
    val_history: list[dict[str, float]] = field(default_factory=list)  # {"step", "loss"} per validation (val_every)
    # `tracking.tracking_record`: the integrations reported to and where the events are kept (None: reported nowhere)
    tracking: dict[str, Any] | None = None


def check_context(model: torch.nn.Module, features: Sequence[dict], hp: LoRAHparams) -> None:
    """Refuse, before training, features longer than the model's positions (an IndexError deep in the forward).

    Not capped silently: the recorded `max_length` would then not be what was trained with.
    """
    config = getattr(model, "config", None)
    limit = next((getattr(config, k) for k in ("max_position_embeddings", "n_positions", "max_sequence_length")
                  if isinstance(getattr(config, k, None), int)), None)
    longest = max((len(f["input_ids"]) for f in features), default=0)
    if limit is not None and longest > limit:
        raise ConfigError(f"max_length: {hp.max_length} lets a training example reach {longest} tokens, but the model "
                          f"has {limit} positions; set max_length <= {limit}")


def train_adapter(model: torch.nn.Module, tokenizer, features: list[dict], hp: LoRAHparams,
                  work_dir: str | os.PathLike[str], *, description: str = "training", progress: bool = True,
                  task_batches: bool = False, fingerprint: Mapping[str, Any] | None = None,
                  precision: Precision | None = None, val_features: Sequence[dict] | None = None,
                  resume: bool | None = None) -> TrainStats:
    """Train the (PEFT-wrapped) `model` in place; resumes from a checkpoint in `work_dir` if there is one.

    `task_batches`: one-task batches drawn by task size (`TaskBatchSampler`; features carry `task_ids`).
    A checkpoint is resumed only if it was trained with the same hyperparameters, features and trainable
    tensors (plus `fingerprint`, anything else the caller wants to match, e.g. the method config); the
    result then equals an uninterrupted run's (same seed, deterministic kernels).
    `precision`: the autocast of the forward (None: `hp.mixed_precision`, else fp32 where bf16 is not native);
    a checkpoint of another precision is not resumed.
    `val_features` (required when `hp.val_every` is set, else refused): what the validation loss is measured on
    (`validation_features`, with the same routing keys as `features`); the records are `TrainStats.val_history`.
    Validation changes no weight, so it is not part of what a resumed checkpoint must match.
    `resume` (`resumable_checkpoint`): None resumes a matching checkpoint and starts over otherwise; True also
    resumes a matching one but refuses (`ResumeError`, nothing removed) checkpoints of other settings; False
    removes every checkpoint and starts over.
    `hp.report_to` goes to HF's reporting integrations (`loralab.training.tracking`); the Trainer's logging_dir
    is `work_dir/runs`, for the caller to keep (`tracking.keep_events`) before it removes `work_dir`, and
    `TrainStats.tracking` records both.

    Raises:
        TrainingDivergedError: a NaN/inf loss or weight; nothing is saved from that step on, and the last
            complete checkpoint (if any) stays in `work_dir`.
    """
    if hp.val_every is not None and not val_features:
        raise ConfigError(f"val_every: {hp.val_every} is set, but this training path was given no validation examples")
    if hp.val_every is None and val_features:
        raise ValueError("val_features were given but hp.val_every is None: nothing would measure them")
    check_context(model, [*features, *(val_features or [])], hp)
    check_integrations(hp.report_to)  # one line naming a missing package, not HF's traceback from Trainer()
    device = trainer_device()
    if precision is None:
        precision = training_precision(None, hp, device)
    elif precision.device_type != device:  # autocast is per device type: the Trainer's, not the caller's
        precision = resolve_precision(precision.name, device)
    extra = {"task_batches": task_batches, **(fingerprint or {})}
    if precision.name != "fp32":  # fp32 runs keep the fingerprint they had before precisions were recorded
        extra["precision"] = precision.name
    run = run_fingerprint(model, features, hp, extra)
    resume_dir = resumable_checkpoint(work_dir, run, description, resume)
    atomic_write_json(Path(work_dir) / RUN_FILE, run)
    args = training_arguments(hp, work_dir, len(features), precision)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    sampler = None
    if task_batches:
        from loralab.training.sampling import TaskBatchSampler

        sampler = TaskBatchSampler([f["task_ids"] for f in features], hp.batch_size, seed=hp.seed)
    bar = RichProgressCallback(description, progress)
    validation = {"eval_dataset": list(val_features), "compute_metrics": token_mean_loss} if val_features else {}
    trainer = AnswerOnlyTrainer(model=model, args=args, train_dataset=features, data_collator=PadCollator(pad),
                                callbacks=[bar], batch_sampler=sampler, precision=precision, **validation)
    trainer.remove_callback(PrinterCallback)  # it prints raw log dicts to stdout; the rich bar shows the loss
    resume_from = None
    if resume_dir is not None:
        resume_from = str(resume_dir)
        logger.info("%s: resuming from %s", description, resume_from)
        state = read_json(resume_dir / CHECKPOINT_STATE, what="trainer checkpoint state")
        trainer.step_losses = [float(v) for v in state.get("step_losses", [])]
        trainer.method_history = list(state.get("method_history", []))
        trainer.val_history = list(state.get("val_history", []))
    try:
        result = trainer.train(resume_from_checkpoint=resume_from)
    finally:
        bar.close()
    model.eval()
    bad = non_finite_parameters(model)
    if bad:
        raise TrainingDivergedError(trainer.diverged_message(result.global_step, f"weight {bad} is NaN/inf"))
    # The mean loss over every step, resumed or not (HF's training_loss covers only this call's steps).
    losses = trainer.step_losses
    train_loss = math.fsum(losses) / len(losses) if len(losses) == result.global_step and losses \
        else float(result.training_loss)
    return TrainStats(steps=result.global_step, train_loss=train_loss,
                      seconds=float(result.metrics.get("train_runtime", 0.0)), examples=len(features),
                      history=trainer.method_history, val_history=trainer.val_history,
                      tracking=tracking_record(args.report_to, work_dir))
