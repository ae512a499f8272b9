"""`load_task`: one entry point from a task spec (suite name, file, directory, YAML) to a `Task`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from loralab.data.bigbench import load_bigbench_task
from loralab.data.files import load_csv_task, load_jsonl_task
from loralab.data.gsm8k import load_gsm8k_task
from loralab.data.hf import load_hf_task
from loralab.data.schema import TASK_KINDS, GenerationSpec, Task
from loralab.data.suite import SUITE, SUITE_FORMAT, suite_task
from loralab.errors import TaskFormatError, UnknownNameError

_YAML_KEYS = {
    "name", "source", "path", "kind", "description", "domain", "generation",
    "subset", "prompt", "choices", "answer", "answer_labels", "targets", "choice_format", "splits",
    "trust_remote_code",
}
_SOURCES = ("bigbench", "gsm8k", "jsonl", "csv", "hf")
_HF_KEYS = ("subset", "prompt", "choices", "answer", "answer_labels", "targets", "choice_format", "splits",
            "trust_remote_code")


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
    if path.exists():
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
    if path.is_dir() or suffix == ".json":
        return load_bigbench_task(path, kind=kind, name=path.stem if path.is_file() and path.stem != "task" else None)
    if suffix == ".jsonl":
        return load_jsonl_task(path)
    if suffix == ".csv":
        return load_csv_task(path)
    if suffix in (".yaml", ".yml"):
        return load_task_config(path)
    raise TaskFormatError(f"{path}: unknown task file type {suffix!r}; use .json (BIG-bench), .jsonl, .csv or .yaml")


def load_task_config(path: str | os.PathLike[str]) -> Task:
    """A declarative task YAML: `source` + `path` (+ column mapping for Hugging Face datasets)."""
    path = Path(path)
    try:
        cfg = yaml.safe_load(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise TaskFormatError(f"task config does not exist: {path}") from None
    except UnicodeDecodeError as exc:
        raise TaskFormatError(f"{path}: not valid UTF-8 (byte {exc.start})") from None
    except OSError as exc:  # a directory, no permission, ...
        raise TaskFormatError(f"{path}: cannot read the task config ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        raise TaskFormatError(f"{path}: invalid YAML ({str(exc).splitlines()[0]})") from None
    except RecursionError:
        raise TaskFormatError(f"{path}: YAML nested too deeply to be a task config") from None
    if not isinstance(cfg, Mapping):
        raise TaskFormatError(f"{path}: a task config must be a mapping")
    _check_keys(cfg, path)
    source = cfg.get("source")
    if source not in _SOURCES:
        raise TaskFormatError(f"{path}: source must be one of {_SOURCES}, got {source!r}")
    if not isinstance(cfg.get("path"), str):
        raise TaskFormatError(f"{path}: 'path' must be a string (file, directory or hub id)")
    target = cfg["path"]
    if source != "hf" and not os.path.isabs(target):
        target = str((path.parent / target).resolve())
    generation = _generation(cfg, path)
    if source == "hf":
        task = load_hf_task(target, name=cfg.get("name"), generation=generation,
                            **{k: cfg[k] for k in _HF_KEYS if k in cfg})
    else:
        extra = [k for k in _HF_KEYS if k in cfg]
        if extra:
            raise TaskFormatError(f"{path}: {extra} only apply to source 'hf', not {source!r}")
        loaders: dict[str, Any] = {"bigbench": lambda p: load_bigbench_task(p, kind=cfg.get("kind")),
                                   "gsm8k": load_gsm8k_task, "jsonl": load_jsonl_task, "csv": load_csv_task}
        task = loaders[source](target)
        if generation is not None:
            task.generation = generation
    task.name = str(cfg.get("name", task.name))
    task.description = str(cfg.get("description", task.description))
    task.domain = str(cfg.get("domain", task.domain))
    return task


def _check_keys(cfg: Mapping[str, Any], path: Path) -> None:
    import difflib

    for key in cfg:
        if key not in _YAML_KEYS:
            close = difflib.get_close_matches(str(key), _YAML_KEYS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise TaskFormatError(f"{path}: unknown key {key!r}{hint}; allowed: {', '.join(sorted(_YAML_KEYS))}")


def _generation(cfg: Mapping[str, Any], path: Path) -> GenerationSpec | None:
    gen = cfg.get("generation")
    if gen is None:
        return None
    if not isinstance(gen, Mapping):
        raise TaskFormatError(f"{path}: 'generation' must be a mapping")
    return GenerationSpec.from_dict(gen, where=f"{path}: generation")


__all__ = ["load_task", "load_task_config"]
