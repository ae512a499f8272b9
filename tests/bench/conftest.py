"""Fixtures of the benchmark tests: toy JSONL tasks on disk and a tiny grid over them (tiny-llama, 1-2 steps)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

FRUITS = [("banana", 1), ("cherry", 0), ("lime", 2), ("lemon", 1), ("tomato", 0), ("kiwi", 2)]
COLOURS = [" red", " yellow", " green"]


def _records(name: str) -> list[dict[str, Any]]:
    """Four small tasks that differ in content, so selection strategies have something to tell apart."""
    out = []
    for i in range(24):
        split = "test" if i % 3 == 0 else "train"
        if name == "parity":
            rec = {"prompt": f"Q: is {i} even?\nA:", "choices": [" yes", " no"], "answer_index": i % 2}
        elif name == "greater":
            rec = {"prompt": f"Q: is {i} more than 11?\nA:", "choices": [" yes", " no"], "answer_index": int(i <= 11)}
        elif name == "colour":
            fruit, colour = FRUITS[i % len(FRUITS)]
            rec = {"prompt": f"Q: the colour of a {fruit} number {i}?\nA:", "choices": COLOURS, "answer_index": colour}
        else:
            rec = {"prompt": f"Q: is {i} + {i + 1} odd?\nA:", "choices": [" yes", " no"], "answer_index": 0}
        out.append({**rec, "split": split})
    return out


@pytest.fixture(scope="session")
def toy_tasks(tmp_path_factory) -> dict[str, str]:
    """name -> JSONL path of four toy tasks."""
    folder = tmp_path_factory.mktemp("bench-tasks")
    paths = {}
    for name in ("parity", "greater", "colour", "oddsum"):
        path = folder / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in _records(name)), encoding="utf-8")
        paths[name] = str(path)
    return paths


@pytest.fixture(scope="session")
def make_grid(toy_tasks):
    """`make_grid(**overrides)`: the mapping of a small grid over the toy tasks (see `grid`)."""
    return lambda **overrides: grid(toy_tasks, **overrides)


def grid(toy_tasks: dict[str, str], **overrides: Any) -> dict[str, Any]:
    """A small grid: 2 targets, a 4-task library, 1 training step, 8 test questions per cell: 22 cells."""
    data: dict[str, Any] = {
        "name": "tiny",
        "models": ["tiny-llama"],
        "library": {"tasks": list(toy_tasks.values()), "hparams": {"max_steps": 2, "batch_size": 4, "rank": 4,
                                                                   "max_length": 64}},
        "targets": [toy_tasks["parity"], toy_tasks["colour"]],
        "methods": ["base", "more", "loramoe"],
        "strategies": ["random", "ppl", "manual", "embedding"],
        "k": [2],
        "seeds": [0, 1],
        "train": {"max_steps": 1, "batch_size": 4, "rank": 4, "max_length": 64},
        "selection": {"manual": {"relevance": {"parity": ["greater", "oddsum"], "colour": {"greater": 0.5}}},
                      "ppl": {"n_examples": 4}, "embedding": {"n_examples": 4}},
        "eval": {"limit": 8},
        "device": "cpu",
        "resources": {"cpus": 1},
    }
    data.update(overrides)
    return data


@pytest.fixture
def write_grid(tmp_path):
    """`write_grid(data, name="grid.yaml") -> Path`: the mapping as a YAML config file in tmp_path."""
    import yaml

    def write(data: dict[str, Any], name: str = "grid.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        return path

    return write
