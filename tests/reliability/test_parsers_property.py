"""Property tests (hypothesis) on the task parsers.

* valid records of every file format load, export (`loralab data export`) and load again to the same examples;
* anything else (random bytes, invalid UTF-8, mutated valid files, arbitrary JSON/YAML values, fields around
  the size limit) either loads or raises a one-line `UserInputError` (exit code 2), never a raw
  KeyError/TypeError/UnicodeDecodeError/RecursionError/csv.Error traceback.

(`tests/data/test_data_properties.py` covers the BIG-bench rendering rules and the JSONL/CSV field round trip.)
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from loralab.recipes.evaluate import export_task  # noqa: E402
from loralab.data import (  # noqa: E402
    SPLITS,
    load_bigbench_task,
    load_csv_task,
    load_gsm8k_task,
    load_jsonl_task,
    load_task,
    load_task_config,
)
from loralab.data.files import RECORD_KEYS  # noqa: E402
from loralab.data.schema import MAX_TEXT_CHARS  # noqa: E402
from loralab.errors import UserInputError  # noqa: E402

SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])

LOADERS: dict[str, Callable[[Path], Any]] = {
    "t.jsonl": load_jsonl_task,
    "t.csv": load_csv_task,
    "task.json": load_bigbench_task,
    "t.yaml": load_task_config,
    "gsm8k.jsonl": load_gsm8k_task,
}

TRICKY = '\n\r\t\u2028\u2029\x85\x0b\x0c\x00"\\,[]{}:#&*!|>%@` -'
valid_char = st.one_of(st.characters(codec="utf-8"), st.sampled_from(TRICKY))
text = st.text(valid_char, max_size=15)
nonblank = st.text(valid_char, min_size=1, max_size=30).filter(lambda s: s.strip() != "")
json_value = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=8)),
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(st.text(max_size=6), children,
                                                                              max_size=3)),
    max_leaves=8,
)


def only_user_errors(load: Callable[[], Any]) -> Any:
    """Run `load`: it returns a task or raises a one-line UserInputError; anything else fails the test."""
    try:
        return load()
    except UserInputError as exc:
        assert exc.exit_code == 2
        assert str(exc) and "\n" not in str(exc) and "\r" not in str(exc), repr(str(exc))
        return None


def in_tmp(name: str, content: bytes, load: Callable[[Path], Any]) -> Any:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(content)
        (Path(tmp) / "x.jsonl").write_text('{"prompt": "p", "targets": "x"}\n', encoding="utf-8")  # a YAML's target
        return only_user_errors(lambda: load(path))


# ------------------------------------------------------------------------------------------------ valid inputs


@st.composite
def valid_task(draw: st.DrawFn) -> tuple[str, bytes]:
    """A valid task file of a random format: (file name, bytes)."""
    fmt = draw(st.sampled_from(["jsonl", "csv", "bigbench", "yaml"]))
    mc = draw(st.booleans())
    n = draw(st.integers(1, 5))
    prompts = draw(st.lists(nonblank, min_size=n, max_size=n, unique=True))
    records = []
    for i, prompt in enumerate(prompts):
        rec: dict[str, Any] = {"id": f"r{i}", "prompt": prompt}
        if mc:
            choices = draw(st.lists(text.filter(bool), min_size=2, max_size=4, unique=True))
            rec["choices"] = choices
            rec["answer_index"] = draw(st.integers(0, len(choices) - 1))
        else:
            rec["targets"] = draw(st.lists(text, min_size=1, max_size=2))
        rec["split"] = draw(st.sampled_from(SPLITS))
        records.append(rec)
    if fmt == "jsonl":
        return "t.jsonl", "".join(json.dumps(r) + "\n" for r in records).encode()
    if fmt == "yaml":
        return "t.yaml", b"source: jsonl\npath: inner.jsonl\n" + b"\0" + \
            "".join(json.dumps(r) + "\n" for r in records).encode()
    if fmt == "csv":
        buf = io.StringIO(newline="")
        writer = csv.writer(buf)
        writer.writerow(["id", "prompt", "choices", "answer_index", "targets", "split"])
        for r in records:
            writer.writerow([r["id"], r["prompt"], json.dumps(r["choices"]) if mc else "",
                             r.get("answer_index", ""), json.dumps(r["targets"]) if not mc else "", r["split"]])
        return "t.csv", buf.getvalue().encode()
    examples = []  # BIG-bench: the prompt is the input, choices are target_scores keys
    for r in records:
        if mc:
            examples.append({"input": r["prompt"], "target_scores": {c: int(j == r["answer_index"])
                                                                     for j, c in enumerate(r["choices"])}})
        else:
            examples.append({"input": r["prompt"], "target": r["targets"]})
    return "task.json", json.dumps({"name": "t", "examples": examples}).encode()


@SETTINGS
@given(task_file=valid_task())
def test_valid_files_round_trip_through_export(task_file):
    name, content = task_file
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if name == "t.yaml":  # the YAML points at a JSONL written beside it
            config, inner = content.split(b"\0", 1)
            (tmp / "inner.jsonl").write_bytes(inner)
            content = config
        path = tmp / name
        path.write_bytes(content)
        task = load_task(str(path))
        exported = tmp / "export.jsonl"
        assert export_task(str(path), exported, split="all") == len(task.examples)
        back = load_task(str(exported))
        assert not list(tmp.glob(".*"))  # no temporary left by the atomic write
    key = lambda ex: (ex.id, ex.prompt, ex.choices, ex.answers, ex.targets, ex.split)  # noqa: E731
    assert sorted(map(key, back.examples)) == sorted(map(key, task.examples))
    assert back.kind == task.kind


# ------------------------------------------------------------------------------------------------ garbage


@SETTINGS
@given(name=st.sampled_from(sorted(LOADERS)), content=st.binary(max_size=300))
def test_random_bytes_fail_cleanly(name, content):
    in_tmp(name, content, LOADERS[name])


STRAY = [b"\xff", b"\xc3", b'"', b"{", b"]", b",", b"\n", b"\\u", b"\xed\xa0\x80"]  # bad UTF-8, JSON/CSV syntax


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, bytes]:
    """A valid file with a few random byte edits: truncations, invalid UTF-8, stray quotes and brackets."""
    name, content = draw(valid_task())
    if name == "t.yaml":
        name, content = "t.jsonl", content.split(b"\0", 1)[1]
    data = bytearray(content)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["insert", "delete", "replace", "truncate"]))
        pos = draw(st.integers(0, len(data)))
        if op == "insert":
            data[pos:pos] = draw(st.sampled_from(STRAY))
        elif op == "delete" and data:
            del data[min(pos, len(data) - 1)]
        elif op == "replace" and data:
            data[min(pos, len(data) - 1)] = draw(st.integers(0, 255))
        else:
            del data[pos:]
    return name, bytes(data)


@SETTINGS
@given(task_file=mutated())
def test_mutated_valid_files_fail_cleanly(task_file):
    name, content = task_file
    in_tmp(name, content, LOADERS[name])


@SETTINGS
@given(records=st.lists(st.one_of(json_value, st.dictionaries(
    st.sampled_from(RECORD_KEYS),
    json_value, max_size=6)), min_size=1, max_size=4))
def test_arbitrary_json_records_fail_cleanly(records):
    content = "".join(json.dumps(r) + "\n" for r in records).encode()
    in_tmp("t.jsonl", content, load_jsonl_task)
    in_tmp("gsm8k.jsonl", content, load_gsm8k_task)


BIGBENCH_KEYS = ["name", "examples", "task_prefix", "example_input_prefix", "example_output_prefix", "choice_prefix",
                 "append_choices_to_input", "few_shot_example_separator", "output_regex", "stop_string",
                 "preferred_score", "metrics"]
EXAMPLE_KEYS = ["input", "target", "target_scores", "comment"]


@SETTINGS
@given(task=st.dictionaries(st.sampled_from(BIGBENCH_KEYS), json_value, max_size=6),
       examples=st.lists(st.one_of(json_value, st.dictionaries(st.sampled_from(EXAMPLE_KEYS), json_value, max_size=4)),
                         max_size=4))
def test_arbitrary_bigbench_json_fails_cleanly(task, examples):
    if examples:
        task["examples"] = examples
    in_tmp("task.json", json.dumps(task).encode(), load_bigbench_task)


YAML_KEYS = ["name", "kind", "description", "domain", "generation", "prompt", "splits", "sorce"]
yaml_scalar = st.one_of(st.none(), st.booleans(), st.integers(), text)


@SETTINGS
@given(source=st.one_of(st.sampled_from(["jsonl", "csv", "bigbench", "gsm8k"]), yaml_scalar),
       path=st.one_of(st.sampled_from([".", "x.jsonl", "t.yaml", "missing.csv", "task.json", "/"]), yaml_scalar,
                      st.lists(yaml_scalar, max_size=2)),
       others=st.dictionaries(st.sampled_from(YAML_KEYS), st.one_of(yaml_scalar, st.lists(yaml_scalar, max_size=2),
                                                                    st.dictionaries(text, yaml_scalar, max_size=2)),
                              max_size=3))
def test_arbitrary_task_yaml_fails_cleanly(source, path, others):
    """Any source/path/other keys (a folder, the YAML itself, a missing file, the root directory...)."""
    import yaml

    if path == "/" and source == "bigbench":  # would scan the whole filesystem for subtask folders
        path = "."
    config = {"source": source, "path": path, **others}
    in_tmp("t.yaml", yaml.safe_dump(config, allow_unicode=True).encode(), load_task_config)


@SETTINGS
@given(name=st.sampled_from(sorted(LOADERS)), depth=st.integers(1, 60_000), bracket=st.sampled_from("[{"),
       tail=st.binary(max_size=20))
def test_deep_nesting_fails_cleanly(name, depth, bracket, tail):
    """Deeply nested JSON/YAML must not escape as a RecursionError."""
    opener = b'{"examples": ' if name == "task.json" else b'{"prompt": "p", "targets": "x", "metadata": '
    if name == "t.yaml":
        opener = b"source: "
    body = (b"[" if bracket == "[" else b'{"a":') * depth
    in_tmp(name, opener + body + tail + b"\n", LOADERS[name])


@settings(max_examples=12, deadline=None)
@given(field=st.sampled_from(["prompt", "choice", "target"]), over=st.integers(-2, 2),
       fmt=st.sampled_from(["t.jsonl", "t.csv"]))
def test_fields_around_the_size_limit(field, over, fmt):
    """A field of MAX_TEXT_CHARS characters loads; one more is a clean error (CSV cells over 131072: also clean)."""
    big = "x" * (MAX_TEXT_CHARS + over)
    rec = {"prompt": big if field == "prompt" else "p", "choices": ["a", big if field == "choice" else "b"],
           "answer_index": 0}
    if field == "target":
        rec = {"prompt": "p", "targets": [big]}
    if fmt == "t.jsonl":
        content = (json.dumps(rec) + "\n").encode()
    else:
        buf = io.StringIO(newline="")
        writer = csv.writer(buf)
        writer.writerow(list(rec))
        writer.writerow([v if isinstance(v, str) else json.dumps(v) for v in rec.values()])
        content = buf.getvalue().encode()
    task = in_tmp(fmt, content, LOADERS[fmt])
    if fmt == "t.jsonl":
        assert (task is not None) == (over <= 0)
