"""Training features longer than the model's positions fail before training, naming max_length."""

from __future__ import annotations

import pytest

from loralab.data import Example, Task
from loralab.errors import ConfigError
from loralab.library import LoRAHparams, build_library
from loralab.models import build_tiny_model


def long_task(n_words: int = 400) -> Task:
    prompt = "Q: " + " ".join(["word"] * n_words) + "\nA:"
    examples = [Example(id=f"e{i}", body=prompt + str(i), choices=(" yes", " no"), answers=(i % 2,), split="train")
                for i in range(8)]
    return Task(name="long", kind="multiple_choice", examples=examples, metric="acc")


def test_gpt2_positions_are_checked_before_training(tmp_path):
    lm = build_tiny_model("gpt2", seed=0)  # learned positions: 256, so a longer input would be an IndexError
    hp = LoRAHparams(max_steps=1, batch_size=2, rank=2, max_length=512)
    with pytest.raises(ConfigError, match=r"max_length: 512 lets a training example reach \d+ tokens, but the "
                                          r"model has 256 positions; set max_length <= 256"):
        build_library(lm, [long_task()], tmp_path / "lib", hparams=hp, eval_limit=0, progress=False)


def test_within_the_positions_it_trains(tmp_path):
    lm = build_tiny_model("gpt2", seed=0)
    hp = LoRAHparams(max_steps=1, batch_size=2, rank=2, max_length=256)
    entries = build_library(lm, [long_task()], tmp_path / "lib", hparams=hp, eval_limit=0, progress=False)
    assert [e.task for e in entries] == ["long"]
