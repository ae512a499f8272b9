"""One name for a task everywhere (CLI): a task given by path where a name is expected -- `train --experts`,
`compare --experts`, `merge --task`, `select --task` -- is the library LoRA or checkpoint task it was built
from; a path that matches none is one `error:` line, exit 2, nothing written."""

from __future__ import annotations

import json
import shutil

import pytest
from helpers import run_cli

from loralab.library import LoRAHparams, build_library

HP = LoRAHparams(max_steps=1, batch_size=4, rank=4, max_length=64)
QUESTIONS = {"parity": "is {i} even", "greater": "is {i} more than 11", "colour": "is {i} a colour"}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Three JSONL tasks and a tiny-llama library built from them (one step per LoRA)."""
    root = tmp_path_factory.mktemp("task-names")
    paths = {}
    for name, question in QUESTIONS.items():
        path = root / f"{name}.jsonl"
        path.write_text("".join(json.dumps({"prompt": f"Q: {question.format(i=i)}?\nA:", "choices": [" yes", " no"],
                                            "answer_index": i % 2, "split": "test" if i % 3 == 0 else "train"}) + "\n"
                                for i in range(12)), encoding="utf-8")
        paths[name] = path
    build_library("tiny-llama", [str(p) for p in paths.values()], root / "lib", hparams=HP, eval_limit=0,
                  progress=False)
    return root, paths, root / "lib"


def one_error(code: int, stdout: str, stderr: str) -> str:
    assert code == 2 and stdout == "" and stderr.count("\n") == 1 and stderr.startswith("error:"), stderr
    return stderr


def test_train_experts_by_task_file_and_by_lora_folder(setup, tmp_path, monkeypatch, capsys):
    root, paths, lib = setup
    experts = f"{paths['greater']},{lib / 'tiny-llama' / 'colour'}"
    code, _, err = run_cli(monkeypatch, capsys, "train", "--method", "loramoe", "--model", "tiny-llama", "--library",
                           str(lib), "--experts", experts, "--tasks", str(paths["parity"]), "--max-steps", "1",
                           "--out", str(tmp_path / "ckpt"))
    assert code == 0, err
    method = json.loads((tmp_path / "ckpt" / "loralab_method.json").read_text())
    assert [e["task"] for e in method["experts"]] == ["greater", "colour"]


@pytest.mark.parametrize("expert, needle", [
    ("{root}/nowhere/greater.jsonl", "--experts '{root}/nowhere/greater.jsonl' does not exist (no such file or "
                                     "folder), and it is not a task of library"),
    ("{other}", "is task 'other', which matches no task of library"),
])
def test_train_experts_that_match_no_lora_are_one_line(setup, tmp_path, monkeypatch, capsys, expert, needle):
    root, paths, lib = setup
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"prompt": "Q: x?\nA:", "choices": [" a", " b"], "answer_index": 0,
                                 "split": "train"}) + "\n", encoding="utf-8")
    spec = expert.format(root=root, other=other)
    err = one_error(*run_cli(monkeypatch, capsys, "train", "--method", "loramoe", "--model", "tiny-llama",
                             "--library", str(lib), "--experts", spec, "--tasks", str(paths["parity"]),
                             "--max-steps", "1", "--out", str(tmp_path / "ckpt")))
    assert needle.format(root=root) in " ".join(err.split())
    assert not (tmp_path / "ckpt").exists()


def test_select_task_by_a_renamed_copy_leaves_its_own_lora_out(setup, tmp_path, monkeypatch, capsys):
    _, paths, lib = setup
    copy = tmp_path / "my-parity.jsonl"
    shutil.copy(paths["parity"], copy)
    code, out, err = run_cli(monkeypatch, capsys, "select", "--strategy", "random", "--model", "tiny-llama",
                             "--library", str(lib), "--task", str(copy), "--k", "2")
    assert code == 0, err
    assert "target's own LoRA (parity) excluded" in out and "random selection for parity" in out


def test_select_task_by_a_lora_folder_needs_a_loadable_task(setup, monkeypatch, capsys):
    """A LoRA folder names its task; one built from a file (not a suite name) cannot be loaded by that name."""
    _, _, lib = setup
    err = one_error(*run_cli(monkeypatch, capsys, "select", "--strategy", "random", "--model", "tiny-llama",
                             "--library", str(lib), "--task", str(lib / "tiny-llama" / "parity"), "--k", "2"))
    assert "is the library LoRA of task 'parity', which is not a suite task: give the task file" in err


def test_merge_task_by_task_file_and_by_lora_folder(setup, tmp_path, monkeypatch, capsys):
    _, paths, lib = setup
    ckpt = tmp_path / "more"
    code, _, err = run_cli(monkeypatch, capsys, "train", "--method", "more", "--model", "tiny-llama", "--tasks",
                           f"{paths['parity']},{paths['greater']}", "--max-steps", "1", "--out", str(ckpt))
    assert code == 0, err
    for spec, name in ((paths["parity"], "parity"), (lib / "tiny-llama" / "greater", "greater")):
        out = tmp_path / f"merged-{name}"
        code, _, err = run_cli(monkeypatch, capsys, "merge", "--adapter", str(ckpt), "--task", str(spec), "--out",
                               str(out))
        assert code == 0, err
        assert f"for task {name}" in err
        assert json.loads((out / "loralab_merge.json").read_text())["merged_task"] == name
    err = one_error(*run_cli(monkeypatch, capsys, "merge", "--adapter", str(ckpt), "--task", str(paths["colour"]),
                             "--out", str(tmp_path / "merged-colour")))
    assert "(task colour)': this more checkpoint was trained on ['parity', 'greater']" in err
    assert not (tmp_path / "merged-colour").exists()


def test_compare_experts_by_path_are_recorded_by_name(setup, tmp_path, monkeypatch, capsys):
    _, paths, lib = setup
    out = tmp_path / "compare"
    code, _, err = run_cli(monkeypatch, capsys, "compare", "--model", "tiny-llama", "--methods", "base", "--tasks",
                           str(paths["parity"]), "--library", str(lib), "--experts",
                           f"{paths['greater']},{lib / 'tiny-llama' / 'colour'}", "--limit", "2", "--out", str(out))
    assert code == 0, err
    import sqlite3

    with sqlite3.connect(out / "bench.sqlite") as conn:
        (meta,) = conn.execute("SELECT value FROM meta WHERE key = 'bench'").fetchone()
    assert json.loads(meta)["config"]["experts"] == ["greater", "colour"]


def test_compare_expert_lora_of_another_library_is_one_line(setup, tmp_path, monkeypatch, capsys):
    _, paths, lib = setup
    other = tmp_path / "other-lib"
    shutil.copytree(lib, other)
    err = one_error(*run_cli(monkeypatch, capsys, "compare", "--model", "tiny-llama", "--methods", "base", "--tasks",
                             str(paths["parity"]), "--library", str(lib), "--experts",
                             str(other / "tiny-llama" / "greater"), "--limit", "2", "--out", str(tmp_path / "c")))
    assert "--experts" in err and "is the LoRA of task 'greater' in another library" in err
    assert not (tmp_path / "c").exists()
