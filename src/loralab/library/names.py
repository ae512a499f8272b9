"""One name for a task everywhere: a task given by path where a name is expected resolves to its name.

Library LoRAs and checkpoint tasks are known by name (`LIB/<model>/<task>`, a checkpoint's `tasks`), but a
user often has the path at hand. Wherever a command expects the name of a task something was built
from -- `train --experts` and `compare --experts` (library LoRAs), a grid's `experts:`, `merge --task` (a
checkpoint's training tasks), `select --task` (the target, whose own LoRA is left out) -- it also takes:

* a library LoRA folder (`LIB/<model>/<task>`, holding `loralab.json`): the task its entry records. Where
  the known tasks are a library's LoRAs, the folder must be one of them (a LoRA of another library is
  refused rather than silently swapped for this library's LoRA of the same name);
* a task file or folder (a BIG-bench task.json or directory, a .jsonl/.csv, a task .yaml): the task it
  loads as, matched by its name and, where the known task records it (a library entry's `data_hash`, the
  content-derived ids of the examples its LoRA was trained on), by its training examples: a file of that
  name with other training examples is refused, and a file under another name whose training examples are
  exactly one known task's resolves to that task.

A known name is returned at once (nothing is read), and so is a name that matches nothing: the caller
reports an unknown name with its own did-you-mean. A path that matches no known task, or several, is one
error line naming what the library or checkpoint holds. Every command goes through `resolve_task_name`
(or `match_task`, when a task a path loads as may be used although it is not known: MoRE's nearest-task
merge), so the rule is the same everywhere.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from loralab.data import Task, load_task
from loralab.data.suite import SUITE
from loralab.errors import UserInputError
from loralab.library.store import ENTRY_FILE, AdapterEntry, Library, model_slug, read_entry

BIGBENCH_PREFIX = "bigbench:"  # `bigbench:<task>[/<subtask>]` names a task to load (`load_task`), not a path


@dataclass(frozen=True)
class KnownTask:
    """A task a library or checkpoint holds under `name`.

    `data_hash` is `library.build.data_hash` of the first `max_examples` (None: all) training examples it
    was built from, when recorded; `folder` the library LoRA's folder, when it is one.
    """

    name: str
    data_hash: str | None = None
    max_examples: int | None = None
    folder: Path | None = None

    @classmethod
    def from_entry(cls, entry: AdapterEntry) -> KnownTask:
        limit = entry.hparams.get("max_train_examples")
        return cls(entry.task, entry.data_hash, limit if isinstance(limit, int) and not isinstance(limit, bool)
                   else None, entry.path.resolve() if entry.path is not None else None)


@dataclass(frozen=True)
class TaskMatch:
    """What a spec resolved to: a known task's `name` (None: none), and the `task` a task path loaded as."""

    name: str | None
    task: Task | None = None


def library_tasks(library: str | os.PathLike[str] | Library, model: str) -> list[KnownTask]:
    """The LoRAs `library` holds for `model` (an alias, hub id or folder; empty when the library does not exist)."""
    lib = library if isinstance(library, Library) else Library(library)
    return [KnownTask.from_entry(e) for e in lib.entries(model_slug(model))]


def resolve_library_tasks(library: str | os.PathLike[str] | Library, model: str, specs: Iterable[str], *,
                          option: str = "experts", data_dir: str | os.PathLike[str] | None = None) -> list[str]:
    """The names of library LoRAs given by name, LoRA folder or task path (`resolve_task_name` against the LoRAs
    `library` holds for `model`); unchanged when there is no library folder (its caller says so)."""
    lib = library if isinstance(library, Library) else Library(library)
    specs = list(specs)
    if not lib.root.is_dir():
        return specs
    where = f"library {lib.root} (model {model_slug(model)})"
    return resolve_task_names(specs, library_tasks(lib, model), where=where, option=option, data_dir=data_dir)


def resolve_task_name(spec: str | Task, known: Sequence[KnownTask], *, where: str, option: str = "task",
                      data_dir: str | os.PathLike[str] | None = None) -> str:
    """The name `spec` (a name, a library LoRA folder or a task path, see the module) has among `known`.

    `where` names the holder in messages ("library runs/lib (model tiny-llama)"), `option` the parameter the
    spec came in (a `UserInputError` param, so the CLI spells it as its flag). A name that is not known comes
    back unchanged (its caller says it is unknown); a path that matches no known task, or several, raises.
    """
    match = match_task(spec, known, where=where, option=option, data_dir=data_dir)
    if match.name is not None:
        return match.name
    if match.task is None:
        return str(spec)  # a plain name: unknown names are the caller's to report, with its did-you-mean
    raise _error(f"{option} {_shown(spec)} is task {match.task.name!r}, which matches no task of {where} "
                 f"(it has: {_names(known)})", option)


def resolve_task_names(specs: Iterable[str], known: Sequence[KnownTask], *, where: str, option: str,
                       data_dir: str | os.PathLike[str] | None = None) -> list[str]:
    """`resolve_task_name` for each spec of a list, in order."""
    return [resolve_task_name(s, known, where=where, option=option, data_dir=data_dir) for s in specs]


def match_task(spec: str | Task, known: Sequence[KnownTask], *, where: str, option: str = "task",
               data_dir: str | os.PathLike[str] | None = None) -> TaskMatch:
    """Like `resolve_task_name`, but a task path that matches no known task is returned loaded (`TaskMatch.task`)
    instead of refused. Ambiguous matches, a mismatching file and a LoRA of another library still raise."""
    names = {k.name for k in known}
    if isinstance(spec, Task):
        return TaskMatch(_match_loaded(spec, spec.name, known, where, option), spec)
    if spec in names:
        return TaskMatch(spec)
    if spec in SUITE:  # a suite name is a name, as `load_task` reads it, even beside a folder of that name
        return TaskMatch(None)
    path = Path(spec)  # as `load_task` reads it (no ~ expansion: the shell does that)
    try:
        exists = path.exists()
    except (OSError, ValueError):  # a name too long for the file system, a NUL byte: not a path
        exists = False
    if exists and path.is_dir() and (path / ENTRY_FILE).is_file():
        return TaskMatch(_match_library_folder(spec, path, known, where, option))
    if exists or spec.startswith(BIGBENCH_PREFIX):  # a task file or folder, or any BIG-bench task: load and match it
        task = load_task(str(path) if exists else spec, data_dir=data_dir)
        return TaskMatch(_match_loaded(task, spec, known, where, option), task)
    if any(sep in spec for sep in ("/", os.sep)) or path.suffix:
        raise _error(f"{option} {_shown(spec)} does not exist (no such file or folder), and it is not a task of "
                     f"{where} (it has: {_names(known)})", option)
    return TaskMatch(None)


def _match_library_folder(spec: str, path: Path, known: Sequence[KnownTask], where: str, option: str) -> str:
    """A library LoRA folder: one of the known LoRAs (by folder), or, where the known tasks have no folders (a
    checkpoint's tasks), the task its entry records."""
    entry = read_entry(path / ENTRY_FILE)
    folder = path.resolve()
    for k in known:
        if k.folder is not None and k.folder == folder:
            return k.name
    same_name = [k for k in known if k.name == entry.task]
    if any(k.folder is not None for k in known):
        if same_name:
            raise _error(f"{option} {_shown(spec)} is the LoRA of task {entry.task!r} in another library than "
                         f"{where}, which has its own {entry.task!r}: give the name {entry.task!r} to use that one, "
                         "or the other library", option)
        raise _error(f"{option} {_shown(spec)} is the LoRA of task {entry.task!r} in another library; {where} has "
                     f"no such task (it has: {_names(known)})", option)
    if not same_name:
        raise _error(f"{option} {_shown(spec)} is the LoRA of task {entry.task!r}, which matches no task of {where} "
                     f"(it has: {_names(known)})", option)
    recorded = [k.data_hash for k in same_name if k.data_hash is not None]
    if recorded and entry.data_hash is not None and entry.data_hash not in recorded:
        raise _error(f"{option} {_shown(spec)} is a LoRA of task {entry.task!r} trained on other examples than "
                     f"{where}'s {entry.task!r}", option)
    return entry.task


def _match_loaded(task: Task, spec: str, known: Sequence[KnownTask], where: str, option: str) -> str | None:
    """The known task `task` (loaded from `spec`) is: by name, checked by training examples where recorded; else
    the one known task with exactly its training examples; None when there is none."""
    from loralab.library.build import data_hash

    hashes: dict[int | None, str | None] = {}

    def hash_of(k: KnownTask) -> str | None:
        if k.max_examples not in hashes:
            try:
                hashes[k.max_examples] = data_hash(task.split("train")[: k.max_examples])
            except UserInputError:  # no train split: nothing to compare (a test-only export, say)
                hashes[k.max_examples] = None
        return hashes[k.max_examples]

    same_name = [k for k in known if k.name == task.name]
    if same_name:
        if any(k.data_hash is None or k.data_hash == hash_of(k) for k in same_name):
            return task.name
        raise _error(f"{option} {_shown(spec)} is task {task.name!r}, but its training examples are not those "
                     f"{where}'s {task.name!r} was built from (another version of the data, or another task of "
                     f"that name): give the name {task.name!r} to use that one", option)
    by_data = sorted({k.name for k in known if k.data_hash is not None and k.data_hash == hash_of(k)})
    if len(by_data) > 1:
        raise _error(f"{option} {_shown(spec)} (task {task.name!r}) has the training examples of several tasks of "
                     f"{where} ({', '.join(by_data)}): give one of their names", option)
    return by_data[0] if by_data else None


def _names(known: Sequence[KnownTask]) -> str:
    names = sorted({k.name for k in known})
    return ", ".join(names[:12]) + (", ..." if len(names) > 12 else "") if names else "none"


def _shown(spec: str | Task) -> str:
    text = spec.name if isinstance(spec, Task) else str(spec)
    return repr(text if len(text) <= 80 else text[:77] + "...")


def _error(message: str, option: str) -> UserInputError:
    return UserInputError(message, param=option)


__all__ = ["KnownTask", "TaskMatch", "library_tasks", "match_task", "resolve_library_tasks", "resolve_task_name",
           "resolve_task_names"]
