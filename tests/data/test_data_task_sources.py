"""The task-source registry: the built-ins in order, and a new source added by one registration."""

from __future__ import annotations

from pathlib import Path

import pytest

from loralab.data import Example, Task, load_task, load_task_config
from loralab.data.task_sources import TASK_SOURCES, TaskSource, register_task_source, source_names, suffix_hint
from loralab.errors import TaskFormatError


def test_builtin_sources_in_registration_order():
    assert source_names()[:5] == ("bigbench", "gsm8k", "jsonl", "csv", "hf")
    assert suffix_hint() == ".json (BIG-bench), .jsonl, .csv"
    assert TASK_SOURCES.get("bigbench").folders and not TASK_SOURCES.get("hf").local


def _read_lines(target, options, where):
    """A toy format: one 'question|answer' per line, a generation task."""
    lines = Path(target).read_text(encoding="utf-8").splitlines()
    examples = [Example(id=f"l{i}", body=q, targets=(a,), split="test" if i % 2 else "train")
                for i, (q, a) in enumerate(line.split("|") for line in lines)]
    return Task(name=options.get("name", "lines"), kind="generation", examples=examples, metric="exact_match",
                source=str(target))


@pytest.fixture
def lines_source():
    source = register_task_source(TaskSource("lines", _read_lines, suffixes=(".lines",)))
    try:
        yield source
    finally:
        TASK_SOURCES.unregister("lines")


def test_a_registered_source_reads_files_and_yaml(tmp_path, lines_source):
    data = tmp_path / "capitals.lines"
    data.write_text("France?| Paris\nItaly?| Rome\n", encoding="utf-8")
    task = load_task(str(data))
    assert (task.name, task.kind, [e.targets for e in task.examples]) == ("capitals", "generation",
                                                                           [(" Paris",), (" Rome",)])
    config = tmp_path / "t.yaml"
    config.write_text("source: lines\npath: capitals.lines\nname: caps\ndomain: geo\n", encoding="utf-8")
    task = load_task_config(config)
    assert (task.name, task.domain, task.source) == ("caps", "geo", str(data.resolve()))
    assert ".lines" in suffix_hint()


def test_allowed_values_and_did_you_mean_come_from_the_registry(tmp_path, lines_source):
    config = tmp_path / "t.yaml"
    config.write_text("source: lnes\npath: x.lines\n", encoding="utf-8")
    with pytest.raises(TaskFormatError) as info:
        load_task_config(config)
    assert str(info.value) == (f"{config}: source: not an allowed value, did you mean 'lines'? (got 'lnes'; allowed: "
                               "'bigbench', 'gsm8k', 'jsonl', 'csv', 'hf', 'lines')")


def test_another_sources_options_are_refused(tmp_path, lines_source):
    config = tmp_path / "t.yaml"
    config.write_text("source: jsonl\npath: x.jsonl\nprompt: '{q}'\n", encoding="utf-8")
    with pytest.raises(TaskFormatError, match=r"\['prompt'\] only apply to source 'hf', not 'jsonl'"):
        load_task_config(config)


def test_a_second_source_of_the_same_name_is_an_error(lines_source):
    with pytest.raises(ValueError, match="already registered"):
        register_task_source(TaskSource("lines", _read_lines))


def test_unknown_file_type_names_every_suffix(tmp_path):
    path = tmp_path / "task.txt"
    path.write_text("hello", encoding="utf-8")
    with pytest.raises(TaskFormatError) as info:
        load_task(str(path))
    assert str(info.value).endswith("unknown task file type '.txt'; use .json (BIG-bench), .jsonl, .csv or .yaml")
