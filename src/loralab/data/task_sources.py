"""Task sources: what a task YAML's `source:` can name, and which file suffixes `load_task(path)` reads how.

    from loralab.data.task_sources import TASK_SOURCES, TaskSource
    TASK_SOURCES.register("tsv", TaskSource("tsv", read_tsv, suffixes=(".tsv",)))

Each source is one registration: its reader, the suffixes (and whether folders) `load_task` reads with
it, and the YAML keys only it takes. The allowed `source:` values, their did-you-mean and the
unknown-file-type hint all come from this registry, in registration order (the built-ins first).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loralab.data.bigbench import load_bigbench_task
from loralab.data.files import load_csv_task, load_jsonl_task
from loralab.data.gsm8k import load_gsm8k_task
from loralab.data.hf import load_hf_task
from loralab.data.schema import Task
from loralab.errors import TaskFormatError
from loralab.utils.registry import Registry

ReadFn = Callable[[str, Mapping[str, Any], str], Task]


@dataclass(frozen=True)
class TaskSource:
    """One way to read a task.

    Attributes:
        name: The `source:` value of a task YAML (the registry key).
        read: `read(target, options, where) -> Task`. `target` is a path (an id for a non-`local` source);
            `options` holds the non-null values of `kind`, `name` and this source's own `options` keys
            (from the YAML, or `load_task`'s `kind` and the file's name); `where` is what errors name.
        suffixes: Lowercase file suffixes (".jsonl") that `load_task(path)` reads with this source.
        folders: `load_task(folder)` reads a folder with it (BIG-bench task directories).
        label: How the unknown-file-type hint names the suffixes ("BIG-bench"); empty: the suffixes alone.
        local: The target is a file or folder, relative to the YAML file when relative; False: an id (hub).
        options: YAML keys only this source reads (keys of `loralab.data.loader.TaskConfig`, the YAML schema);
            given with another source, they are an error.
    """

    name: str
    read: ReadFn
    suffixes: tuple[str, ...] = ()
    folders: bool = False
    label: str = ""
    local: bool = True
    options: tuple[str, ...] = ()


TASK_SOURCES: Registry[TaskSource] = Registry("task source")


def register_task_source(source: TaskSource) -> TaskSource:
    """Register `source` under `source.name`; a second source of the same name is an error."""
    return TASK_SOURCES.register(source.name, source)


def source_names() -> tuple[str, ...]:
    """The allowed `source:` values, in registration order."""
    return tuple(TASK_SOURCES.names(by_registration=True))


def source_for_path(path: Path) -> TaskSource | None:
    """The source `load_task(path)` reads an existing file or folder with (None: no source takes it)."""
    sources = [TASK_SOURCES.get(name) for name in source_names()]
    if path.is_dir():
        return next((s for s in sources if s.folders), None)
    return next((s for s in sources if path.suffix.lower() in s.suffixes), None)


def suffix_hint() -> str:
    """The file types sources read, for the unknown-file-type error: ".json (BIG-bench), .jsonl, .csv"."""
    parts = []
    for name in source_names():
        source = TASK_SOURCES.get(name)
        if source.suffixes:
            shown = "/".join(source.suffixes)
            parts.append(f"{shown} ({source.label})" if source.label else shown)
    return ", ".join(parts)


def _read_bigbench(target: str, options: Mapping[str, Any], where: str) -> Task:
    return load_bigbench_task(target, kind=options.get("kind"), name=options.get("name"))


def _read_gsm8k(target: str, options: Mapping[str, Any], where: str) -> Task:
    return load_gsm8k_task(target, name=options.get("name", "gsm8k"))


def _read_jsonl(target: str, options: Mapping[str, Any], where: str) -> Task:
    return load_jsonl_task(target, name=options.get("name"))


def _read_csv(target: str, options: Mapping[str, Any], where: str) -> Task:
    return load_csv_task(target, name=options.get("name"))


HF_OPTIONS = ("subset", "prompt", "choices", "answer", "answer_labels", "targets", "choice_format", "splits",
              "trust_remote_code")


def _read_hf(target: str, options: Mapping[str, Any], where: str) -> Task:
    if "prompt" not in options:
        raise TaskFormatError(f"{where}: missing required key(s) prompt (source 'hf' needs a prompt template "
                              "over the dataset's columns)")
    return load_hf_task(target, name=options.get("name"), where=where,
                        **{k: v for k, v in options.items() if k in HF_OPTIONS})


# Registration order is the order of the allowed values in messages.
register_task_source(TaskSource("bigbench", _read_bigbench, suffixes=(".json",), folders=True, label="BIG-bench"))
register_task_source(TaskSource("gsm8k", _read_gsm8k))  # GSM8K files are .jsonl too: by `source: gsm8k` only
register_task_source(TaskSource("jsonl", _read_jsonl, suffixes=(".jsonl",)))
register_task_source(TaskSource("csv", _read_csv, suffixes=(".csv",)))
register_task_source(TaskSource("hf", _read_hf, local=False, options=HF_OPTIONS))
