"""A rich progress bar over optimiser steps, with the latest loss (the trainer's own printing is off)."""

from __future__ import annotations

import logging

from transformers import TrainerCallback

logger = logging.getLogger(__name__)


class RichProgressCallback(TrainerCallback):
    """A rich progress bar over optimiser steps, with the latest loss."""

    def __init__(self, description: str, enabled: bool = True) -> None:
        self.description = description
        self.enabled = enabled
        self._progress = None
        self._task = None

    def on_train_begin(self, args, state, control, **kwargs):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        from loralab.utils.progress import progress_bars_enabled

        if self.enabled and progress_bars_enabled():
            from loralab.utils.progress import _console

            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TextColumn("{task.fields[loss]}"), TimeRemainingColumn(), console=_console)
            self._progress.start()
            self._task = self._progress.add_task(self.description, total=state.max_steps, loss="")

    def on_step_end(self, args, state, control, **kwargs):
        if self._progress is not None:
            self._progress.update(self._task, completed=state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            if self._progress is not None:
                self._progress.update(self._task, loss=f"loss {logs['loss']:.3f}")
            logger.debug("%s step %d loss %.4f", self.description, state.global_step, logs["loss"])
        if logs and "eval_loss" in logs:
            logger.info("%s step %d validation loss %.4f", self.description, state.global_step, logs["eval_loss"])

    def on_train_end(self, args, state, control, **kwargs):
        self.close()

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
