"""Shared fixtures for the method contract suite: a tiny library of LoRAs per architecture."""

from __future__ import annotations

import pytest

from loralab.library import LoRAHparams, build_library
from loralab.models import build_tiny_model
from helpers import toy_task

LIB_HP = LoRAHparams(max_steps=2, batch_size=4, learning_rate=5e-2)


@pytest.fixture(scope="session")
def tiny_libraries(tmp_path_factory):
    """arch -> (library dir, expert task names): three LoRAs trained for 2 steps on toy tasks."""
    cache = {}

    def get(arch: str):
        if arch not in cache:
            root = tmp_path_factory.mktemp(f"lib-{arch}")
            lm = build_tiny_model(arch, seed=0)
            tasks = [toy_task(f"t{i}", n=16) for i in range(3)]
            build_library(lm, tasks, root, hparams=LIB_HP, eval_limit=0, progress=False)
            cache[arch] = (root, [t.name for t in tasks])
        return cache[arch]

    return get
