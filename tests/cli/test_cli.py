"""The command line: happy paths on a tiny model, and bad input -> one-line error, exit 2, nothing written."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import pytest

from helpers import run_cli


def write_mc_jsonl(path, n=6, split=None):
    lines = []
    for i in range(n):
        rec = {"id": f"q{i}", "prompt": f"Q: {i} plus one?\nA:", "choices": [f" {i + 1}", f" {i + 5}"], "answer_index": 0}
        if split:
            rec["split"] = split
        lines.append(json.dumps(rec))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_tasks_ls_lists_the_suite(monkeypatch, capsys):
    code, out, _ = run_cli(monkeypatch, capsys, "tasks", "ls")
    assert code == 0
    assert "social_iqa" in out and "gsm8k" in out and "40 tasks" in out


def test_tasks_show_renders_examples(monkeypatch, capsys, tmp_path):
    task = tmp_path / "t.jsonl"
    write_mc_jsonl(task, split="test")
    code, out, _ = run_cli(monkeypatch, capsys, "tasks", "show", str(task), "-n", "2")
    assert code == 0
    assert "Q: " in out and "multiple_choice" in out


def test_eval_writes_result_json(monkeypatch, capsys, tmp_path):
    task = tmp_path / "t.jsonl"
    write_mc_jsonl(task, split="test")
    out_file = tmp_path / "r.json"
    code, out, _ = run_cli(monkeypatch, capsys, "eval", "--model", "tiny-llama", "--task", str(task), "--out", str(out_file))
    assert code == 0, out
    record = json.loads(out_file.read_text())
    assert {"model", "task", "split", "n", "metrics", "versions", "git_hash"} <= set(record)
    assert record["n"] == 6 and set(record["metrics"]) >= {"acc", "acc_norm", "acc_ppl"}
    assert "acc" in out


def test_export_then_eval_round_trip(monkeypatch, capsys, tmp_path):
    task = tmp_path / "t.jsonl"
    write_mc_jsonl(task, n=12)
    export = tmp_path / "export.jsonl"
    code, _, _ = run_cli(monkeypatch, capsys, "data", "export", str(task), "--split", "all", "--out", str(export))
    assert code == 0
    rows = [json.loads(line) for line in export.read_text().splitlines()]
    assert len(rows) == 12 and all({"prompt", "choices", "answer_index", "split"} <= set(r) for r in rows)


@pytest.fixture
def bad_inputs(tmp_path):
    malformed = tmp_path / "malformed.jsonl"
    malformed.write_text('{"prompt": "x", "choices": ["a", "b"], "answer_index": 0}\n{not json\n', encoding="utf-8")
    no_answer = tmp_path / "task.json"
    no_answer.write_text(json.dumps({"name": "t", "preferred_score": "multiple_choice_grade", "examples": [
        {"input": "q", "target_scores": {"a": 0, "b": 0}}]}), encoding="utf-8")
    train_only = tmp_path / "train_only.jsonl"
    write_mc_jsonl(train_only, split="train")
    good = tmp_path / "good.jsonl"
    write_mc_jsonl(good, split="test")
    return {"malformed": malformed, "no_answer": no_answer, "train_only": train_only, "good": good}


@pytest.mark.parametrize(
    "case, model, task_key, extra, needle",
    [
        ("malformed task file", "tiny-llama", "malformed", [], "invalid JSON"),
        ("unknown task", "tiny-llama", "social_iq", [], "did you mean 'social_iqa'"),
        ("unknown model", "tiny-lama", "good", [], "did you mean 'tiny-llama'"),
        ("no correct answer", "tiny-llama", "no_answer", [], "no correct answer"),
        ("empty split", "tiny-llama", "train_only", [], "no examples in split 'test'"),
        ("bad split name", "tiny-llama", "good", ["--split", "tset"], "split must be one of"),
        ("zero limit", "tiny-llama", "good", ["--limit", "0"], "--limit must be >= 1"),
        ("missing adapter", "tiny-llama", "good", ["--adapter", "/nonexistent/adapter"], "adapter directory does not exist"),
        ("missing task path", "tiny-llama", "./nope/task.json", [], "does not exist"),
    ],
)
def test_bad_input_one_line_exit_2_nothing_written(monkeypatch, capsys, tmp_path, bad_inputs, case, model, task_key,
                                                   extra, needle):
    task = str(bad_inputs.get(task_key, task_key))
    out_file = tmp_path / "result.json"
    code, out, err = run_cli(monkeypatch, capsys, "eval", "--model", model, "--task", task, "--out", str(out_file), *extra)
    assert code == 2, (case, err)
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and needle.lower() in lines[0].lower(), err
    assert "Traceback" not in err
    assert not out_file.exists()
    assert not list(tmp_path.glob(".result.json*"))


def test_entry_point_exit_code_and_single_line(tmp_path):
    """The installed console script, not only the function: exit 2, one line, no traceback."""
    proc = subprocess.run([sys.executable, "-m", "loralab.cli", "eval", "--model", "tiny-llama", "--task", "nosuchtask"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    assert errors == [errors[0]] and errors[0].startswith("error: unknown task 'nosuchtask'")


def test_help_on_every_verb(monkeypatch, capsys):
    for verb in (["--help"], ["tasks", "--help"], ["tasks", "ls", "--help"], ["tasks", "show", "--help"],
                 ["eval", "--help"], ["data", "export", "--help"], ["models", "ls", "--help"],
                 ["library", "build", "--help"], ["library", "ls", "--help"], ["library", "add", "--help"]):
        code, out, _ = run_cli(monkeypatch, capsys, *verb)
        assert code == 0 and "Usage" in out, verb


def test_library_build_ls_add(monkeypatch, capsys, tmp_path):
    task = tmp_path / "toy.jsonl"
    write_mc_jsonl(task, n=24)
    cfg = tmp_path / "hp.yaml"
    cfg.write_text("rank: 4\nbatch_size: 4\n", encoding="utf-8")
    lib = tmp_path / "lib"
    code, out, err = run_cli(monkeypatch, capsys, "library", "build", "--model", "tiny-llama", "--tasks", str(task),
                             "--out", str(lib), "--config", str(cfg), "--max-steps", "2", "--eval-limit", "2",
                             "--eval-split", "all")
    assert code == 0, err
    assert (lib / "tiny-llama" / "toy" / "adapter_model.safetensors").is_file()
    code, out, _ = run_cli(monkeypatch, capsys, "library", "ls", str(lib))
    assert code == 0 and "toy" in out and "tiny-llama" in out and "acc" in out
    # import the adapter we just built under another task name
    code, _, err = run_cli(monkeypatch, capsys, "library", "add", str(lib), "--adapter", str(lib / "tiny-llama" / "toy"),
                           "--task", str(copy_task(task, tmp_path / "other.jsonl")))
    assert code == 0, err
    assert (lib / "tiny-llama" / "other" / "adapter_model.safetensors").is_file()


def copy_task(src, dst):
    dst.write_text(src.read_text(encoding="utf-8"), encoding="utf-8")
    return dst


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--config", "{tmp}/bad.yaml"], "unknown key 'rnak'"),
        (["--max-steps", "0"], "options: max_steps: out of range (got 0; allowed: an integer >= 1"),
        (["--eval-limit", "-1"], "--eval-limit must be >= 0"),
        (["--hparams", "{tmp}/bad.yaml"], "unknown key 'rnak'"),  # the current spellings of the two above
        (["--limit", "-1"], "--limit must be >= 0"),
    ],
)
def test_library_build_bad_input(monkeypatch, capsys, tmp_path, args, needle):
    task = tmp_path / "toy.jsonl"
    write_mc_jsonl(task, n=8)
    (tmp_path / "bad.yaml").write_text("rnak: 4\n", encoding="utf-8")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    code, _, err = run_cli(monkeypatch, capsys, "library", "build", "--model", "tiny-llama", "--tasks", str(task),
                           "--out", str(tmp_path / "lib"), *args)
    assert code == 2 and needle in err and "Traceback" not in err
    assert not (tmp_path / "lib").exists()


def test_compare_methods_table_and_resume(monkeypatch, capsys, tmp_path):
    lib = tmp_path / "lib"
    for name in ("ex_a", "ex_b", "target"):
        write_mc_jsonl(tmp_path / f"{name}.jsonl", n=24)
    args = ["--model", "tiny-llama", "--max-steps", "2", "--eval-limit", "3"]
    code, _, err = run_cli(monkeypatch, capsys, "library", "build", "--tasks",
                           ",".join(str(tmp_path / f"{n}.jsonl") for n in ("ex_a", "ex_b", "target")),
                           "--out", str(lib), *args[:4], "--eval-limit", "0")
    assert code == 0, err
    out_dir = tmp_path / "cmp"
    compare = ["compare", "--methods", "loramoe,rocket,lora,base", "--tasks", str(tmp_path / "target.jsonl"),
               "--library", str(lib), "--experts", "ex_a,ex_b,target", "--out", str(out_dir), *args]
    code, out, err = run_cli(monkeypatch, capsys, *compare)
    assert code == 0, err
    assert all(f"| {m} |" in out for m in ("loramoe", "rocket", "lora", "base"))
    records = json.loads((out_dir / "results.json").read_text())
    assert sorted((r["method"], r["task"]) for r in records) == [
        ("base", "target"), ("lora", "target"), ("loramoe", "target"), ("rocket", "target")]
    (record,) = [r for r in records if r["method"] == "rocket"]
    assert record["experts"] == ["ex_a", "ex_b"] and record["leave_one_out"] is True  # own LoRA left out
    from loralab.bench import executors

    monkeypatch.setattr(executors, "run_job", lambda job, ctx: pytest.fail(f"recomputed {job}"))
    code, _, _ = run_cli(monkeypatch, capsys, *compare)
    assert code == 0 and json.loads((out_dir / "results.json").read_text()) == records  # every cell reused
    with sqlite3.connect(out_dir / "bench.sqlite") as conn:
        assert conn.execute("SELECT count(*) FROM cells").fetchone() == (4,)
