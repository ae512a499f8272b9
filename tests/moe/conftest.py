"""Shared fixtures for the method contract suite: a tiny library of three distinct LoRAs per architecture.

The three LoRAs differ in everything an expert mix-up could hide behind, so a test that mixes experts
catches a permuted slot or a wrong scaling: each is trained on its own data (three toy tasks of
different form), from its own seed (so even A's initialisation differs) and with its own alpha, so its
scaling alpha / r is its own (`SCALINGS`; none is 1 or the default hyperparameters' 2, which a method
that ignored the library scaling would use). The rank is shared: methods that stack experts need one.

A library trains all of its adapters with one hyperparameter set, so the first LoRA is trained in the
library and the other two in scratch libraries of their own and imported, as a user imports a PEFT LoRA.
"""

from __future__ import annotations

import pytest
from helpers import toy_task

from loralab.data import Example, Task
from loralab.library import LoRAHparams, build_library, import_adapter
from loralab.models import build_tiny_model

LIB_HP = LoRAHparams(max_steps=2, batch_size=4, learning_rate=5e-2)
ALPHAS = (12.0, 24.0, 40.0)  # rank 8: scalings 1.5, 3 and 5
SCALINGS = tuple(a / LIB_HP.rank for a in ALPHAS)


def colour_task(name: str, n: int = 16) -> Task:
    """A three-way multiple-choice toy task, unlike `toy_task`'s two-way parity questions in prompt and answers."""
    examples = [Example(id=f"{name}{i:03d}", body=f"Item #{i} has the colour", choices=(" red", " green", " blue"),
                        answers=(i % 3,), split="test" if i % 4 == 0 else "train") for i in range(n)]
    return Task(name=name, kind="multiple_choice", examples=examples, metric="acc")


def expert_tasks() -> list[Task]:
    """t0: parity (multiple choice), t1: successor (generation), t2: colours (three choices)."""
    return [toy_task("t0", n=16), toy_task("t1", n=16, kind="generation"), colour_task("t2")]


@pytest.fixture(scope="session")
def tiny_libraries(tmp_path_factory):
    """arch -> (library dir, expert task names): three distinct LoRAs, each trained for 2 steps."""
    cache = {}

    def get(arch: str):
        if arch not in cache:
            root = tmp_path_factory.mktemp(f"lib-{arch}")
            lm = build_tiny_model(arch, seed=0)
            tasks = expert_tasks()
            for i, (task, alpha) in enumerate(zip(tasks, ALPHAS)):
                hp = LIB_HP.replace(seed=i, alpha=alpha)
                if i == 0:
                    build_library(lm, [task], root, hparams=hp, eval_limit=0, progress=False)
                    continue
                scratch = tmp_path_factory.mktemp(f"lib-{arch}-{task.name}")
                (entry,) = build_library(lm, [task], scratch, hparams=hp, eval_limit=0, progress=False)
                import_adapter(root, entry.path, task, model=lm)
            cache[arch] = (root, [t.name for t in tasks])
        return cache[arch]

    return get
