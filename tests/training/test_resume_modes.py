"""`resumable_checkpoint`'s three modes: automatic (None), resume or fail (True), start over (False)."""

from __future__ import annotations

import json
import logging

import pytest

from loralab.errors import ResumeError, UserInputError
from loralab.training.checkpoints import (CHECKPOINT_STATE, RUN_FILE, fingerprint_differences, resumable_checkpoint)

RUN = {"hparams": {"rank": 8, "learning_rate": 0.0005}, "features": "abc", "examples": 12, "trainable": "def"}


def work_dir(tmp_path, recorded=RUN, complete=(1, 2), incomplete=(3,)):
    work = tmp_path / "work"
    for step in (*complete, *incomplete):
        (work / f"checkpoint-{step}").mkdir(parents=True)
        if step in complete:
            (work / f"checkpoint-{step}" / CHECKPOINT_STATE).write_text("{}", encoding="utf-8")
    if recorded is not None:
        (work / RUN_FILE).write_text(json.dumps(recorded), encoding="utf-8")
    return work


def names(work):
    return sorted(p.name for p in work.glob("checkpoint-*"))


@pytest.mark.parametrize("resume", [None, True])
def test_a_matching_run_resumes_its_last_complete_checkpoint(tmp_path, resume):
    work = work_dir(tmp_path)
    assert resumable_checkpoint(work, RUN, resume=resume) == work / "checkpoint-2"
    assert names(work) == ["checkpoint-2"]  # older and incomplete ones removed


def test_automatic_mode_starts_over_on_other_settings(tmp_path, caplog):
    work = work_dir(tmp_path)
    other = {**RUN, "hparams": {**RUN["hparams"], "rank": 4}}
    with caplog.at_level(logging.WARNING):
        assert resumable_checkpoint(work, other) is None
    assert names(work) == [] and "were trained with other settings or data" in caplog.text


def test_resume_mode_refuses_other_settings_and_removes_nothing(tmp_path):
    work = work_dir(tmp_path)
    other = {**RUN, "hparams": {**RUN["hparams"], "rank": 4}, "features": "xyz"}
    with pytest.raises(ResumeError) as info:
        resumable_checkpoint(work, other, resume=True)
    assert isinstance(info.value, UserInputError) and info.value.params == ("resume",)
    assert str(info.value) == (f"resume: the checkpoint in {work} was trained with other settings or data (the "
                               "training data, hparams.rank 8 -> 4); nothing was removed: give the settings it was "
                               "trained with, or start over without it")
    assert names(work) == ["checkpoint-1", "checkpoint-2", "checkpoint-3"]


def test_resume_mode_with_nothing_to_resume_starts_fresh(tmp_path):
    assert resumable_checkpoint(tmp_path / "absent", RUN, resume=True) is None
    work = work_dir(tmp_path, complete=(), incomplete=(1,))  # only a half-written one: nothing of value
    assert resumable_checkpoint(work, {**RUN, "examples": 3}, resume=True) is None and names(work) == []


def test_start_over_mode_removes_even_a_matching_checkpoint(tmp_path):
    work = work_dir(tmp_path)
    assert resumable_checkpoint(work, RUN, resume=False) is None and names(work) == []


def test_fingerprint_differences_in_words():
    assert fingerprint_differences(None, RUN) == "the work folder records no settings"
    many = {**RUN, "hparams": {"rank": 1, "learning_rate": 1.0, "seed": 3}, "trainable": "x", "precision": "bf16"}
    assert fingerprint_differences(RUN, many) == ("hparams.learning_rate 0.0005 -> 1.0, hparams.rank 8 -> 1, "
                                                  "hparams.seed None -> 3, precision None -> 'bf16', ... "
                                                  "(5 differences)")
