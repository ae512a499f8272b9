"""An optional feature used without its package: one `error:` line naming the extra, exit code 2, nothing written."""

from __future__ import annotations

import json
import sys

import pytest

from helpers import run_cli


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.fixture
def task_file(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"Q: is {i} even?\nA:", "choices": [" yes", " no"],
                                        "answer_index": i % 2, "split": "test" if i % 3 == 0 else "train"}) + "\n"
                            for i in range(12)), encoding="utf-8")
    return path


def test_tensorboard_missing(monkeypatch, capsys, tmp_path, task_file):
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    code, out, err = run_cli(monkeypatch, capsys, "train", "--method", "multitask_lora", "--model", "tiny-llama",
                             "--tasks", str(task_file), "--out", str(tmp_path / "ck"), "--report-to", "tensorboard")
    line = one_error_line(err)
    assert code == 2 and out == "" and not (tmp_path / "ck").exists()
    assert line == ("error: options: report_to: 'tensorboard' needs tensorboard, which is not installed: "
                    "pip install 'loralab[tensorboard]'")
    hp = tmp_path / "hp.yaml"
    hp.write_text("max_steps: 1\nreport_to: tensorboard\n", encoding="utf-8")
    code, _, err = run_cli(monkeypatch, capsys, "library", "build", "--model", "tiny-llama", "--tasks", str(task_file),
                           "--out", str(tmp_path / "lib"), "--hparams", str(hp))
    assert code == 2 and f"{hp}: report_to: 'tensorboard' needs tensorboard" in one_error_line(err)
    assert not (tmp_path / "lib").exists()


def test_datasets_missing(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "datasets", None)
    (tmp_path / "data").mkdir()
    task = tmp_path / "t.yaml"
    task.write_text(f"name: t\nsource: hf\npath: {tmp_path / 'data'}\nprompt: '{{q}}'\nchoices: c\nanswer: a\n",
                    encoding="utf-8")
    code, out, err = run_cli(monkeypatch, capsys, "tasks", "show", str(task))
    assert code == 2 and out == ""
    assert one_error_line(err).endswith("a Hugging Face dataset task (source: hf) needs datasets, which is not "
                                        "installed: pip install 'loralab[hf]'")


def test_ray_missing(monkeypatch, capsys, tmp_path, task_file):
    monkeypatch.setitem(sys.modules, "ray", None)
    grid = tmp_path / "grid.yaml"
    grid.write_text(f"name: tiny\nmodels: [tiny-llama]\nlibrary: {{tasks: ['{task_file}']}}\n"
                    f"targets: ['{task_file}']\nmethods: [base]\neval: {{limit: 2}}\n", encoding="utf-8")
    code, out, err = run_cli(monkeypatch, capsys, "bench", str(grid), "--out", str(tmp_path / "out"), "--executor",
                             "ray")
    assert code == 2 and out == "" and not (tmp_path / "out").exists()
    assert one_error_line(err) == "error: --executor ray needs ray, which is not installed: pip install 'loralab[ray]'"


def test_lm_eval_missing(monkeypatch, capsys):
    from loralab.cli.lmeval import main

    monkeypatch.setitem(sys.modules, "lm_eval", None)
    monkeypatch.setattr(sys, "argv", ["loralab-lm-eval", "--model", "loralab", "--tasks", "arc_easy"])
    with pytest.raises(SystemExit) as info:
        main()
    err = capsys.readouterr().err
    assert info.value.code == 2
    assert one_error_line(err) == ("error: loralab-lm-eval needs lm-eval, which is not installed: "
                                   "pip install 'loralab[lmeval]'")
