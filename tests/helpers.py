"""Small tasks and helpers that several test folders share (importable as `helpers`; see pyproject pythonpath)."""

from __future__ import annotations

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
