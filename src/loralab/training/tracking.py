"""Experiment tracking: `report_to` is handed to HF Trainer's reporting integrations as they are.

The names are transformers' own (`transformers.integrations.INTEGRATION_TO_CALLBACK`: tensorboard, wandb,
mlflow, comet_ml, clearml, dvclive, trackio, ...), plus "none" (the default) and "all" (every integration
installed here, as HF resolves it). loralab adds no logger of its own: it checks the names against what the
installed transformers knows (`parse_report_to`, when the hyperparameters are built), checks before any
work that each one can run here (`check_integrations`: a missing package is one line naming it), and keeps
what the Trainer writes into its work folder.

The Trainer's logging_dir is `<work folder>/runs/<time>_<host>/` (TensorBoard's events; HF's default, which
`TENSORBOARD_LOGGING_DIR` overrides). The work folder is removed once the output is published, so the
events are copied into the output as `EVENTS_DIR` (`OUT/tensorboard/`, `LIB/<model>/<task>/tensorboard/`) and
the result records where they are (`tracking_record`). The other integrations write where their own settings
say (wandb: `WANDB_DIR`/`WANDB_MODE`, mlflow: `MLFLOW_TRACKING_URI`, ...; by default under the current folder).
"""

from __future__ import annotations

import difflib
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loralab.errors import ConfigError

NONE = "none"
ALL = "all"
EVENTS_DIR = "tensorboard"  # in a checkpoint or library adapter folder: the Trainer's logging_dir, kept
TRAINER_LOGS = "runs"  # HF Trainer's logging_dir inside its output_dir (its default, TensorBoard's events)

ReportTo = str | tuple[str, ...]  # "none", "all", one integration, or several (in the order given)


def known_integrations() -> tuple[str, ...]:
    """The reporting integrations the installed transformers supports, sorted."""
    from transformers.integrations import INTEGRATION_TO_CALLBACK

    return tuple(sorted(INTEGRATION_TO_CALLBACK))


def parse_report_to(value: str | Sequence[str], *, param: str | None = None) -> ReportTo:
    """The canonical form of a `report_to` value: "none", "all", one name, or a tuple of several names.

    A string may list several names separated by commas (`--report-to tensorboard,wandb`); repeats are dropped.
    One name stays a string, so hyperparameter dicts written before lists were allowed read the same.

    Raises:
        ConfigError: an empty value, a name transformers does not know (with did-you-mean), or "none"/"all"
            mixed with other names. `param` is passed on, so the CLI can name its flag.
    """
    parts = value.split(",") if isinstance(value, str) else list(value)
    names = list(dict.fromkeys(str(part).strip() for part in parts if str(part).strip()))
    if names in ([NONE], [ALL]):  # the common cases need no transformers import
        return names[0]
    known = known_integrations()
    allowed = f"{NONE}, {ALL}, or a comma-separated list of: {', '.join(known)}"
    if not names:
        raise ConfigError(f"report_to: no integration named (got {value!r}; allowed: {allowed})", param=param)
    for name in names:
        if name not in (NONE, ALL, *known):
            close = difflib.get_close_matches(name, [NONE, ALL, *known], n=1)
            hint = f", did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"report_to: unknown reporting integration (got {name!r}{hint}; allowed: {allowed})",
                              param=param)
    if len(names) > 1 and ({NONE, ALL} & set(names)):
        raise ConfigError(f"report_to: {NONE!r} and {ALL!r} stand alone (got {','.join(names)!r}; allowed: {allowed})",
                          param=param)
    return names[0] if len(names) == 1 else tuple(names)


def integrations(report_to: ReportTo) -> list[str]:
    """The integration names a run reports to: [] for "none", the installed ones for "all" (HF's resolution)."""
    if report_to == NONE:
        return []
    if report_to == ALL:
        from transformers.integrations import get_available_reporting_integrations

        return list(get_available_reporting_integrations())
    return [report_to] if isinstance(report_to, str) else list(report_to)


def check_integrations(report_to: ReportTo) -> list[str]:
    """`integrations(report_to)`, each checked to work here before any work: a one-line error otherwise.

    The check is the one HF Trainer makes when it starts: build the integration's callback, which refuses
    when its package is missing (the message names the package and the pip command) or not configured.
    """
    from transformers.integrations import INTEGRATION_TO_CALLBACK

    names = integrations(report_to)
    for name in names:
        try:
            INTEGRATION_TO_CALLBACK[name]()
        except (RuntimeError, ImportError, ValueError) as exc:
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise ConfigError(f"report_to: {name!r} cannot report from this environment: {reason}") from None
    return names


def trainer_logs(work_dir: str | os.PathLike[str]) -> Path:
    """Where HF Trainer puts its logging_dir (TensorBoard events) inside its work folder."""
    return Path(work_dir) / TRAINER_LOGS


def keep_events(work_dir: str | os.PathLike[str], dest: str | os.PathLike[str]) -> bool:
    """Copy the Trainer's logging_dir from `work_dir` into `dest`/`EVENTS_DIR` (inside an output being published);
    False when the run wrote none (no TensorBoard, or `TENSORBOARD_LOGGING_DIR` sent the events elsewhere)."""
    source = trainer_logs(work_dir)
    if not source.is_dir():
        return False
    shutil.copytree(source, Path(dest) / EVENTS_DIR)
    return True


def tracking_record(names: Sequence[str], work_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """What a result records of its tracking: the integrations and where the Trainer's events were kept.

    `logging_dir` is `EVENTS_DIR`, relative to the output folder (it moves with it), when the work folder holds
    events to keep; `TENSORBOARD_LOGGING_DIR` when that sent TensorBoard's elsewhere; else None. None for a run
    that reports nowhere, so its record is what it was before tracking was recorded.
    """
    if not names:
        return None
    logging_dir: str | None = None
    if trainer_logs(work_dir).is_dir():
        logging_dir = EVENTS_DIR
    elif "tensorboard" in names and os.environ.get("TENSORBOARD_LOGGING_DIR"):
        logging_dir = os.path.abspath(os.path.expanduser(os.environ["TENSORBOARD_LOGGING_DIR"]))
    return {"report_to": list(names), "logging_dir": logging_dir}
