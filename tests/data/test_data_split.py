"""The deterministic hash split and Task.split()."""

from __future__ import annotations

import collections
import json
from pathlib import Path

import pytest

from loralab.data import SPLITS, Example, Task, load_bigbench_task, load_jsonl_task
from loralab.data.split import SPLIT_FRACTIONS, assign_split, content_id
from loralab.errors import EmptySplitError, TaskFormatError


def write_bigbench(folder: Path, inputs: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    data = {"name": "syn", "examples": [{"input": text, "target": text.upper()} for text in inputs]}
    (folder / "task.json").write_text(json.dumps(data), encoding="utf-8")
    return folder / "task.json"


def id_split(path: Path) -> dict[str, tuple[str, str]]:
    """input -> (id, split)"""
    return {ex.metadata["input"]: (ex.id, ex.split) for ex in load_bigbench_task(path).examples}


@pytest.mark.parametrize(
    ("content", "expected_id"),
    [
        ({"a": 1}, "015abd7f5cc57a2d"),
        ({"task": "t", "input": "x", "target_scores": None, "target": ["y"]}, "0b6b706f2745fedc"),
        ("héllo", "a537896e9aa53fa9"),
    ],
)
def test_content_id_is_pinned(content: object, expected_id: str) -> None:
    # Pinned: changing the hash would silently move examples between splits and invalidate results.
    assert content_id(content) == expected_id
    assert len(expected_id) == 16 and int(expected_id, 16) >= 0


@pytest.mark.parametrize(
    ("example_id", "split"),
    [
        ("015abd7f5cc57a2d", "train"),
        ("4e6257cadfe2635a", "test"),
        ("0", "train"),
        ("a", "train"),
        ("x1", "validation"),
    ],
)
def test_assign_split_is_pinned(example_id: str, split: str) -> None:
    assert assign_split(example_id) == split
    assert assign_split(example_id) == assign_split(str(example_id))


def test_content_id_ignores_key_order() -> None:
    a = {"input": "x", "target_scores": {"p": 1, "q": 0}, "task": "t"}
    b = {"task": "t", "target_scores": {"q": 0, "p": 1}, "input": "x"}
    assert content_id(a) == content_id(b)
    assert content_id(a) != content_id({**a, "input": "y"})


def test_fractions_are_about_70_10_20() -> None:
    counts = collections.Counter(assign_split(content_id({"task": "syn", "i": i})) for i in range(2000))
    assert set(counts) == set(SPLITS)
    for split, fraction in SPLIT_FRACTIONS.items():
        assert abs(counts[split] / 2000 - fraction) < 0.03, counts
    assert SPLIT_FRACTIONS == {"train": 0.7, "validation": 0.1, "test": 0.2}


def test_fractions_on_a_loaded_task(tmp_path: Path) -> None:
    task = load_bigbench_task(write_bigbench(tmp_path, [f"example number {i}" for i in range(2000)]))
    counts = collections.Counter(ex.split for ex in task.examples)
    assert sum(counts.values()) == 2000
    for split, fraction in SPLIT_FRACTIONS.items():
        assert abs(counts[split] / 2000 - fraction) < 0.03, counts
        assert len(task.split(split)) == counts[split]


def test_split_is_deterministic_across_reads(tmp_path: Path) -> None:
    path = write_bigbench(tmp_path, [f"q{i}" for i in range(100)])
    assert id_split(path) == id_split(path)
    assert all(split == assign_split(ex_id) for ex_id, split in id_split(path).values())


@pytest.mark.parametrize(
    "change",
    ["reverse", "rotate", "add_examples", "remove_examples", "add_and_remove", "interleave_duplicates"],
)
def test_split_unchanged_by_other_examples(tmp_path: Path, change: str) -> None:
    inputs = [f"question {i}" for i in range(200)]
    base = id_split(write_bigbench(tmp_path / "base", inputs))
    changed_inputs = {
        "reverse": inputs[::-1],
        "rotate": inputs[77:] + inputs[:77],
        "add_examples": inputs[:100] + [f"new {i}" for i in range(50)] + inputs[100:],
        "remove_examples": inputs[::3],
        "add_and_remove": [f"new {i}" for i in range(30)] + inputs[50:150],
        "interleave_duplicates": [x for pair in zip(inputs, inputs, strict=True) for x in pair],
    }[change]
    changed = id_split(write_bigbench(tmp_path / "changed", changed_inputs))
    common = set(base) & set(changed)
    assert len(common) >= 66
    assert {k: base[k] for k in common} == {k: changed[k] for k in common}


def _task(splits: dict[str, str]) -> Task:
    examples = [Example(id=i, body=f"prompt {i}", targets=("t",), split=s) for i, s in splits.items()]
    return Task(name="mini", kind="generation", examples=examples)


def test_task_split_sorts_by_id_and_limits() -> None:
    task = _task({"d": "test", "b": "train", "a": "test", "c": "test", "e": "validation", "f": "train"})
    assert [ex.id for ex in task.split("test")] == ["a", "c", "d"]
    assert [ex.id for ex in task.split("test", limit=2)] == ["a", "c"]
    assert [ex.id for ex in task.split("test", limit=1)] == ["a"]
    assert [ex.id for ex in task.split("test", limit=100)] == ["a", "c", "d"]
    assert [ex.id for ex in task.split("train")] == ["b", "f"]
    assert [ex.id for ex in task.split("validation")] == ["e"]
    assert [ex.id for ex in task.split("all")] == ["a", "b", "c", "d", "e", "f"]
    assert [ex.id for ex in task.split("all", limit=4)] == ["a", "b", "c", "d"]


def test_task_split_order_independent_of_file_order(tmp_path: Path) -> None:
    inputs = [f"q{i}" for i in range(60)]
    a = load_bigbench_task(write_bigbench(tmp_path / "a", inputs))
    b = load_bigbench_task(write_bigbench(tmp_path / "b", inputs[::-1]))
    for split in (*SPLITS, "all"):
        assert [ex.id for ex in a.split(split)] == [ex.id for ex in b.split(split)]
        assert [ex.id for ex in a.split(split)] == sorted(ex.id for ex in a.split(split))


def test_explicit_split_in_jsonl_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    lines = [{"prompt": f"p{i}", "targets": "x", "split": s} for i, s in enumerate(["train", "validation", "test"])]
    lines.append({"prompt": "hashed", "targets": "x"})
    path.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    task = load_jsonl_task(path)
    by = {ex.body: ex for ex in task.examples}
    assert [by[f"p{i}"].split for i in range(3)] == ["train", "validation", "test"]
    assert by["hashed"].split == assign_split(by["hashed"].id)


@pytest.mark.parametrize(
    ("split", "limit", "error", "message"),
    [
        ("test", 0, EmptySplitError, "limit must be >= 1, got 0"),
        ("all", -3, EmptySplitError, "limit must be >= 1, got -3"),
        ("validation", None, EmptySplitError, "task 'mini' has no examples in split 'validation'"),
        ("dev", None, TaskFormatError, "split must be one of ('train', 'validation', 'test', 'all'), got 'dev'"),
    ],
)
def test_task_split_errors(split: str, limit: int | None, error: type[Exception], message: str) -> None:
    task = _task({"a": "train", "b": "test"})
    with pytest.raises(error) as info:
        task.split(split, limit=limit)
    assert type(info.value) is error
    assert str(info.value) == message
