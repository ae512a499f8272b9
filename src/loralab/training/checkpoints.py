"""Trainer checkpoints that are safe to resume: complete, and from a run with the same settings.

HF Trainer writes `checkpoint-N` folders into the work dir; a process killed mid-save leaves one half
written, and a work dir may hold checkpoints of a run with other hyperparameters or data. A checkpoint
counts only once `CHECKPOINT_STATE` is written into it (last), and the work dir's `RUN_FILE` records
the fingerprint of the run, so resuming never mixes runs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from loralab.errors import ResumeError
from loralab.training.hparams import LoRAHparams

logger = logging.getLogger(__name__)
CHECKPOINT_PREFIX = "checkpoint-"  # HF Trainer's checkpoint folders in the work dir
CHECKPOINT_STATE = "loralab_checkpoint.json"  # written last into a checkpoint: a folder without it is incomplete
RUN_FILE = "loralab_run.json"  # what the checkpoints of a work dir were trained with (resume only on a match)


def non_finite_parameters(model: torch.nn.Module) -> str | None:
    """The name of the first trainable parameter holding a NaN or inf, or None."""
    for name, param in model.named_parameters():
        if param.requires_grad and not bool(torch.isfinite(param.detach()).all()):
            return name
    return None


def checkpoint_dirs(work_dir: str | os.PathLike[str]) -> list[Path]:
    """The checkpoint folders in `work_dir` (complete or not), by step."""
    found = []
    for path in Path(work_dir).glob(f"{CHECKPOINT_PREFIX}*"):
        step = path.name[len(CHECKPOINT_PREFIX):]
        if path.is_dir() and step.isdigit():
            found.append((int(step), path))
    return [path for _, path in sorted(found)]


def latest_checkpoint(work_dir: str | os.PathLike[str]) -> Path | None:
    """The newest complete checkpoint in `work_dir` (one killed while being written does not count)."""
    complete = [p for p in checkpoint_dirs(work_dir) if (p / CHECKPOINT_STATE).is_file()]
    return complete[-1] if complete else None


def run_fingerprint(model: torch.nn.Module, features: Sequence[Mapping[str, Any]], hp: LoRAHparams,
                    extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What decides the trained weights: hyperparameters (not logging/checkpoint cadence), data, trainable tensors."""
    data = hashlib.sha256()
    for feature in features:
        data.update(json.dumps(feature, sort_keys=True).encode())
    trainable = sorted((n, list(p.shape)) for n, p in model.named_parameters() if p.requires_grad)
    fingerprint = {"hparams": {k: v for k, v in hp.to_dict().items() if k not in LoRAHparams.LOGGING_FIELDS},
                   "features": data.hexdigest(), "examples": len(features),
                   "trainable": hashlib.sha256(json.dumps(trainable).encode()).hexdigest(), **(extra or {})}
    return json.loads(json.dumps(fingerprint, default=str))


def resumable_checkpoint(work_dir: str | os.PathLike[str], fingerprint: Mapping[str, Any],
                         description: str = "training", resume: bool | None = None) -> Path | None:
    """The checkpoint to resume from, after removing incomplete or older ones and ones of other settings.

    A checkpoint is resumed only when `work_dir` records the same fingerprint (hyperparameters, data,
    trainable tensors). `resume` says what happens to checkpoints of another run:

    - None (automatic): they are removed, with a warning, and training starts over;
    - True (resume or fail): they are an error (`ResumeError`), and nothing is removed; with no checkpoint
      at all training starts from the beginning (a job that must find one checks that itself, e.g.
      `train_method`);
    - False (start over): every checkpoint is removed, matching or not.
    """
    work = Path(work_dir)
    checkpoints = checkpoint_dirs(work)
    if not checkpoints:
        return None
    try:
        recorded = json.loads((work / RUN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        recorded = None
    same = recorded == dict(fingerprint)
    if resume is True and not same and latest_checkpoint(work) is not None:
        differ = fingerprint_differences(recorded, fingerprint)
        raise ResumeError(f"resume: the checkpoint in {work} was trained with other settings or data "
                          f"({differ}); nothing was removed: give the settings it was trained with, or start over "
                          f"without it", param="resume")
    keep = latest_checkpoint(work) if same and resume is not False else None
    if keep is None and resume is not False:
        logger.warning("%s: checkpoints in %s %s; starting over", description, work,
                       "are incomplete" if same else "were trained with other settings or data")
    elif keep is None:
        logger.info("%s: starting over (resume off): removing the checkpoints in %s", description, work)
    for path in checkpoints:
        if path != keep:
            shutil.rmtree(path, ignore_errors=True)
    return keep


def fingerprint_differences(recorded: Any, wanted: Mapping[str, Any], shown: int = 4) -> str:
    """What differs between a work folder's recorded fingerprint and this run's, in words (`hparams.rank 8 -> 4`)."""
    if not isinstance(recorded, Mapping):
        return "the work folder records no settings"
    changes = []
    for key in sorted(set(recorded) | set(wanted)):
        have, want = recorded.get(key), wanted.get(key)
        if have == want:
            continue
        if isinstance(have, Mapping) and isinstance(want, Mapping):
            changes += [f"{key}.{k} {have.get(k)!r} -> {want.get(k)!r}" for k in sorted(set(have) | set(want))
                        if have.get(k) != want.get(k)]
        elif key in ("features", "trainable"):  # hashes: the words say more than the digests
            changes.append({"features": "the training data", "trainable": "the trained tensors"}[key])
        else:
            changes.append(f"{key} {have!r} -> {want!r}")
    return ", ".join(changes[:shown]) + (f", ... ({len(changes)} differences)" if len(changes) > shown else "")
