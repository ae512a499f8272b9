"""A tiny library for selection tests: four toy tasks with distinct prompts, answers and domain tags."""

from __future__ import annotations

import pytest

from loralab.data import Example, Task
from loralab.library import LoRAHparams, build_library
from loralab.models import build_tiny_model
from loralab.recipes.evaluate import export_task

# Enough steps that each LoRA learns its own task's answer format, so ppl has something to find.
LIB_HP = LoRAHparams(max_steps=12, batch_size=4, learning_rate=5e-2)
WORDS = ("apple", "river", "stone", "cloud", "tiger", "lemon")


def styled_task(name: str, n: int = 48) -> Task:
    """One of four toy tasks whose prompts and answers differ in form (not only in wording)."""
    examples = []
    for i in range(n):
        split = "test" if i % 4 == 0 else "train"
        uid = f"{name}{i:03d}"
        if name == "parity":
            ex = Example(id=uid, body=f"Q: is {i} even?\nA:", choices=(" yes", " no"), answers=(i % 2,), split=split)
        elif name == "succ":
            ex = Example(id=uid, body=f"{i} + 1 =", targets=(f" {i + 1}",), split=split)
        elif name == "colour":
            ex = Example(id=uid, body=f"Item #{i} has the colour", choices=(" red", " green", " blue"),
                         answers=(i % 3,), split=split)
        elif name == "echo":
            word = WORDS[i % len(WORDS)]
            ex = Example(id=uid, body=f"Say {word} {word} again:", targets=(f" {word}",), split=split)
        else:
            raise ValueError(name)
        examples.append(ex)
    kind = "multiple_choice" if name in ("parity", "colour") else "generation"
    domain = {"parity": "math", "succ": "math", "colour": "knowledge", "echo": "language"}[name]
    return Task(name=name, kind=kind, examples=examples, metric="acc" if kind == "multiple_choice" else "exact_match",
                domain=domain)


TASKS = ("colour", "echo", "parity", "succ")


@pytest.fixture(scope="session")
def toy_tasks() -> dict[str, Task]:
    return {name: styled_task(name) for name in TASKS}


@pytest.fixture(scope="session")
def tiny_library(tmp_path_factory, toy_tasks):
    """(library dir, tasks): one tiny-llama LoRA per toy task."""
    root = tmp_path_factory.mktemp("select-lib")
    lm = build_tiny_model("llama", seed=0)
    build_library(lm, list(toy_tasks.values()), root, hparams=LIB_HP, eval_limit=0, progress=False)
    return root, toy_tasks


@pytest.fixture
def lm():
    return build_tiny_model("llama", seed=0)


@pytest.fixture
def parity_file(tiny_library, tmp_path):
    """The parity toy task as files: a unified JSONL and a task YAML that gives it its domain tag."""
    _, tasks = tiny_library
    export_task(tasks["parity"], tmp_path / "parity.jsonl", split="all")
    (tmp_path / "parity.yaml").write_text("name: parity\nsource: jsonl\npath: parity.jsonl\ndomain: math\n")
    return tmp_path / "parity.yaml"
