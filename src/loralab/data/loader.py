"""`load_task`: one entry point from a task spec (suite name, file, directory, YAML) to a `Task`.

Files, folders and a task YAML's `source:` are read by the sources registered in
`loralab.data.task_sources` (BIG-bench, GSM8K, JSONL, CSV, Hugging Face datasets); this module only
resolves the spec and applies a YAML's overrides.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from loralab.data.bigbench import load_bigbench_task
from loralab.data.gsm8k import load_gsm8k_task
from loralab.data.schema import TASK_KINDS, GenerationSpec, Task
from loralab.data.suite import SUITE, SUITE_FORMAT, suite_task
from loralab.data.task_sources import TASK_SOURCES, TaskSource, source_for_path, source_names, suffix_hint
from loralab.errors import TaskFormatError, UnknownNameError
from loralab.utils.config import check, read_yaml_mapping


@dataclass(frozen=True)
class TaskConfig:
    """The keys of a task YAML; its schema checks a file (types, nulls, unknown keys) before anything is read.

    `source` + `path` say what to read (a relative path is relative to the YAML file, except a hub id);
    `source` is checked against the registered task sources (`loralab.data.task_sources`), not here.
    `name`, `description`, `domain` and `generation` override what the source says; `kind` picks a
    BIG-bench task's kind; the rest is the column mapping of a Hugging Face dataset (`load_hf_task`).
    """

    source: str = field(metadata={"schema": Any})
    path: str
    name: str | None = None
    kind: Literal["multiple_choice", "generation"] | None = None
    description: str | None = None
    domain: str | None = None
    generation: dict | None = field(default=None, metadata={"schema": GenerationSpec | None})
    subset: str | None = None
    prompt: str | None = None
    choices: str | tuple[str, ...] | None = None
    answer: str | None = None
    answer_labels: str | None = None
    targets: str | None = None
    choice_format: str = "{}"
    splits: dict[Literal["train", "validation", "test"], str] | None = None
    trust_remote_code: bool = False


def load_task(spec: str, *, data_dir: str | os.PathLike[str] | None = None, kind: str | None = None) -> Task:
    """Resolve `spec` and load the task.

    `spec` is a suite name (`loralab tasks ls`), `bigbench:<task>[/<subtask>]` for any BIG-bench task,
    or a path: a BIG-bench `task.json` or task directory, a unified `.jsonl`/`.csv`, or a task `.yaml`.
    """
    if kind is not None and kind not in TASK_KINDS:
        raise TaskFormatError(f"kind must be one of {TASK_KINDS}, got {kind!r}")
    if spec in SUITE:
        return _load_suite(spec, data_dir, kind)
    if spec.startswith("bigbench:"):
        from loralab.data.sources import bigbench_task_dir

        rel = spec.removeprefix("bigbench:")
        return load_bigbench_task(bigbench_task_dir(rel, data_dir), kind=kind, name=rel.replace("/", "_"))
    path = Path(spec)
    try:
        exists = path.exists()
    except (OSError, ValueError) as exc:  # a name too long for the file system, a NUL byte
        shown = spec if len(spec) <= 60 else spec[:57] + "..."
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise TaskFormatError(f"task {shown!r} is neither a suite name nor a usable path ({reason})") from None
    if exists:
        return _load_path(path, kind, data_dir)
    if any(sep in spec for sep in ("/", os.sep)) or path.suffix:
        raise TaskFormatError(f"task file does not exist: {spec}")
    raise UnknownNameError("task", spec, SUITE)


def _load_suite(name: str, data_dir: str | os.PathLike[str] | None, kind: str | None) -> Task:
    from loralab.data.sources import bigbench_task_dir, gsm8k_file

    entry = suite_task(name)
    if entry.source == "gsm8k":
        task = load_gsm8k_task(gsm8k_file(data_dir), name=name)
    else:
        task = load_bigbench_task(bigbench_task_dir(entry.path, data_dir), kind=kind, name=name,
                                  format_overrides=SUITE_FORMAT)
    task.description = entry.description
    task.domain = entry.domain
    task.source = f"{entry.source}:{entry.path}"
    return task


def _load_path(path: Path, kind: str | None, data_dir: str | os.PathLike[str] | None) -> Task:
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml") and not path.is_dir():
        return load_task_config(path)
    source = source_for_path(path)
    if source is None:
        raise TaskFormatError(f"{path}: unknown task file type {suffix!r}; use {suffix_hint()} or .yaml")
    # a file's own name names the task, except the generic task.json / task.jsonl (the source's default then)
    name = path.stem if path.is_file() and path.stem != "task" else None
    return source.read(str(path), {k: v for k, v in (("kind", kind), ("name", name)) if v is not None}, str(path))


def load_task_config(path: str | os.PathLike[str]) -> Task:
    """A declarative task YAML: `source` + `path` (+ column mapping for Hugging Face datasets)."""
    path = Path(path)
    raw = read_yaml_mapping(path, error=TaskFormatError, what="task config")
    cfg = check(TaskConfig, raw, str(path), error=TaskFormatError)
    # the allowed values (and the did-you-mean) are the registered sources, in registration order
    check(Literal[source_names()], cfg["source"], str(path), at=("source",), error=TaskFormatError)
    source, target = TASK_SOURCES.get(cfg["source"]), cfg["path"]
    if source.local and not os.path.isabs(target):
        target = str((path.parent / target).resolve())
    generation = None
    if cfg.get("generation") is not None:  # types and keys checked above; ranges and regexes by GenerationSpec
        try:
            generation = GenerationSpec.from_dict(cfg["generation"], where=f"{path}: generation")
        except TaskFormatError as exc:
            message = str(exc)
            raise TaskFormatError(message if message.startswith(str(path)) else f"{path}: {message}") from None
    _refuse_other_options(source, raw, str(path))
    options = {k: cfg[k] for k in ("kind", "name", *source.options) if cfg.get(k) is not None}
    task = source.read(target, options, str(path))
    if generation is not None:
        task.generation = generation
    for key in ("name", "description", "domain"):
        if cfg.get(key) is not None:
            setattr(task, key, cfg[key])
    return task


def _refuse_other_options(source: TaskSource, raw: dict[str, Any], where: str) -> None:
    """Keys that only other sources read are a mistake (a column mapping on a JSONL file), not silently ignored."""
    for other in source_names():
        extra = [k for k in TASK_SOURCES.get(other).options if k in raw and k not in source.options]
        if extra:
            raise TaskFormatError(f"{where}: {extra} only apply to source {other!r}, not {source.name!r}")


__all__ = ["load_task", "load_task_config"]
