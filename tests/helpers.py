"""Small tasks and helpers that several test folders share (importable as `helpers`; see pyproject pythonpath)."""

from __future__ import annotations

import sys

from loralab.data import Example, Task


def toy_task(name: str = "toy", n: int = 48, kind: str = "multiple_choice") -> Task:
    examples = []
    for i in range(n):
        split = "test" if i % 4 == 0 else "train"
        if kind == "multiple_choice":
            examples.append(Example(id=f"{name}{i:03d}", body=f"Q: is {i} even?\nA:", choices=(" yes", " no"),
                                    answers=(i % 2,), split=split))
        else:
            examples.append(Example(id=f"{name}{i:03d}", body=f"{i} + 1 =", targets=(f" {i + 1}",), split=split))
    return Task(name=name, kind=kind, examples=examples, metric="acc" if kind == "multiple_choice" else "exact_match")


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """Run `loralab ARGS` in-process through the console entry point; returns (exit code, stdout, stderr)."""
    from loralab.cli import main

    monkeypatch.setattr(sys, "argv", ["loralab", *args])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err
