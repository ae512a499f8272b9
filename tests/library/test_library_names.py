"""One name for a task: `loralab.library.names` resolves a task given by path to the library's or checkpoint's name.

The library here is written by hand (entries only, no weights): the resolver reads entries, never adapters.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from loralab.data import load_task
from loralab.errors import UserInputError
from loralab.library.build import data_hash
from loralab.library.names import (KnownTask, library_tasks, match_task, resolve_library_tasks, resolve_task_name)
from loralab.library.store import ENTRY_FILE


def _write_task(folder: Path, name: str, question: str, n: int = 12) -> Path:
    path = folder / f"{name}.jsonl"
    lines = [json.dumps({"prompt": f"Q: {question} {i}?\nA:", "choices": [" yes", " no"], "answer_index": i % 2,
                         "split": "test" if i % 3 == 0 else "train"}) for i in range(n)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _write_entry(library: Path, task_path: Path, name: str | None = None, max_examples: int | None = None) -> Path:
    """A library entry for the task in `task_path`, as `build_library` records it (name, data hash)."""
    task = load_task(str(task_path))
    name = name or task.name
    folder = library / "tiny-llama" / name
    folder.mkdir(parents=True)
    entry = {"task": name, "model": "tiny-llama", "model_slug": "tiny-llama", "files": {},
             "hparams": {"max_train_examples": max_examples},
             "data_hash": data_hash(task.split("train")[:max_examples])}
    (folder / ENTRY_FILE).write_text(json.dumps(entry), encoding="utf-8")
    return folder


@pytest.fixture
def setup(tmp_path):
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    paths = {name: _write_task(tasks, name, q) for name, q in
             (("parity", "is it even"), ("greater", "is it more than 5"), ("other", "is it prime"))}
    lib = tmp_path / "lib"
    for name in ("parity", "greater"):
        _write_entry(lib, paths[name])
    known = library_tasks(lib, "tiny-llama")
    return tmp_path, paths, lib, known


WHERE = "library lib (model tiny-llama)"


def test_names_come_back_unchanged_without_reading_anything(setup):
    _, _, _, known = setup
    assert [k.name for k in known] == ["greater", "parity"]
    assert resolve_task_name("parity", known, where=WHERE) == "parity"
    assert resolve_task_name("nonesuch", known, where=WHERE) == "nonesuch"  # unknown names: the caller's message


def test_a_task_file_resolves_to_the_lora_built_from_it(setup):
    _, paths, _, known = setup
    assert resolve_task_name(str(paths["parity"]), known, where=WHERE) == "parity"


def test_a_renamed_copy_resolves_by_its_training_examples(setup):
    tmp_path, paths, _, known = setup
    copy = tmp_path / "my-copy.jsonl"
    shutil.copy(paths["greater"], copy)
    assert load_task(str(copy)).name == "my-copy"
    assert resolve_task_name(str(copy), known, where=WHERE) == "greater"


def test_a_library_lora_folder_resolves_to_its_task(setup):
    _, _, lib, known = setup
    assert resolve_task_name(str(lib / "tiny-llama" / "greater"), known, where=WHERE) == "greater"
    assert resolve_library_tasks(lib, "tiny-llama", ["parity", str(lib / "tiny-llama" / "greater")]) == \
        ["parity", "greater"]


def test_checkpoint_tasks_resolve_lora_folders_and_files_by_name(setup):
    _, paths, lib, _ = setup
    known = [KnownTask("parity"), KnownTask("greater")]  # a checkpoint records names only
    assert resolve_task_name(str(lib / "tiny-llama" / "parity"), known, where="checkpoint") == "parity"
    assert resolve_task_name(str(paths["greater"]), known, where="checkpoint") == "greater"


@pytest.mark.parametrize("case, needle", [
    ("missing", "does not exist (no such file or folder), and it is not a task of library lib (model tiny-llama) "
                "(it has: greater, parity)"),
    ("unknown", "is task 'other', which matches no task of library lib (model tiny-llama) (it has: greater, parity)"),
    ("same-name-other-data", "is task 'parity', but its training examples are not those"),
    ("other-library", "is the LoRA of task 'parity' in another library"),
])
def test_paths_that_match_nothing_are_one_line(setup, case, needle):
    tmp_path, paths, _, known = setup
    if case == "missing":
        spec = str(tmp_path / "nowhere" / "parity.jsonl")
    elif case == "unknown":
        spec = str(paths["other"])
    elif case == "same-name-other-data":
        (tmp_path / "v2").mkdir()
        spec = str(_write_task(tmp_path / "v2", "parity", "is it odd"))
    else:
        spec = str(_write_entry(tmp_path / "lib2", paths["parity"]))
    with pytest.raises(UserInputError) as info:
        resolve_task_name(spec, known, where=WHERE, option="experts")
    message = str(info.value)
    assert needle in message and "\n" not in message and message.startswith("experts ")
    assert info.value.params == ("experts",)  # the CLI spells it as the flag the user typed


def test_training_examples_shared_by_two_loras_are_ambiguous(setup):
    tmp_path, paths, lib, _ = setup
    _write_entry(lib, paths["parity"], name="parity-again")
    copy = tmp_path / "third-name.jsonl"
    shutil.copy(paths["parity"], copy)
    with pytest.raises(UserInputError, match=r"training examples of several tasks .*\(parity, parity-again\)"):
        resolve_task_name(str(copy), library_tasks(lib, "tiny-llama"), where=WHERE)


def test_the_hash_covers_the_examples_the_lora_was_trained_on(tmp_path):
    """An entry trained on the first 4 training examples records their hash; the full file still matches it."""
    path = _write_task(tmp_path, "parity", "is it even", n=30)
    lib = tmp_path / "lib"
    _write_entry(lib, path, name="capped", max_examples=4)
    copy = tmp_path / "renamed.jsonl"
    shutil.copy(path, copy)
    assert resolve_task_name(str(copy), library_tasks(lib, "tiny-llama"), where=WHERE) == "capped"


def test_match_task_hands_back_a_task_that_matches_nothing(setup):
    """MoRE's nearest-task merge uses a task the checkpoint was not trained on: `match_task` returns it loaded."""
    _, paths, _, _ = setup
    match = match_task(str(paths["other"]), [KnownTask("parity")], where="checkpoint")
    assert match.name is None and match.task is not None and match.task.name == "other"
