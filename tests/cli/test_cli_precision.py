"""`--precision` on every command that runs a model: parsed as one of auto|fp32|bf16|fp16 (anything else is one
error line, exit 2, nothing written), passed to the library, and recorded in what the command writes and prints.

The CPU's bf16 features are patched away, so `auto` resolves to fp32 on any CPU, as on this project's (AVX2
only): a run without the flag must then be bit for bit the `--precision fp32` run. Explicit bf16 runs here are
emulated (slow per matmul, fine for the tiny random models used throughout).
"""

from __future__ import annotations

import json
import sqlite3

import pytest
import torch
import typer
from helpers import run_cli
from safetensors.torch import load_file

from loralab.cli import app

needs_cpu_only = pytest.mark.skipif(torch.cuda.is_available(), reason="auto resolves on the GPU there, not to fp32")


@pytest.fixture(autouse=True)
def _cpu_and_threads(cpu_without_bf16):
    """Every test here on a CPU without native bf16 (conftest), and the CLI's --threads undone afterwards."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tasks(tmp_path) -> dict[str, str]:
    """Three small multiple-choice task files (test: every fourth question, the rest train)."""
    paths = {}
    for name in ("a", "b", "c"):
        path = tmp_path / f"{name}.jsonl"
        rows = [{"id": f"{name}{i}", "prompt": f"Q: {name} {i}?\nA:", "choices": [" yes", " no"],
                 "answer_index": i % 2, "split": "test" if i % 4 == 0 else "train"} for i in range(16)]
        path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
        paths[name] = str(path)
    return paths


def cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    return run_cli(monkeypatch, capsys, "--threads", "1", *args)


def ok(monkeypatch, capsys, *args: str) -> tuple[str, str]:
    code, out, err = cli(monkeypatch, capsys, *args)
    assert code == 0, err
    return out, err


def tensors(path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def same_tensors(a, b) -> bool:
    return set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


def commands(tmp, t) -> dict[str, list[str]]:
    """A complete command line for every command that runs a model (its outputs under `tmp`)."""
    return {
        "eval": ["eval", "--model", "tiny-llama", "--task", t["a"], "--out", str(tmp / "r.json")],
        "library build": ["library", "build", "--model", "tiny-llama", "--tasks", t["a"], "--out", str(tmp / "lib")],
        "library add": ["library", "add", str(tmp / "lib"), "--adapter", str(tmp / "ad"), "--task", t["a"]],
        "train": ["train", "--method", "moelora", "--model", "tiny-llama", "--tasks", t["a"], "--out",
                  str(tmp / "ck")],
        "select": ["select", "--strategy", "ppl", "--library", str(tmp / "lib"), "--task", t["a"], "--k", "1",
                   "--model", "tiny-llama"],
        "compare": ["compare", "--model", "tiny-llama", "--methods", "base", "--tasks", t["a"], "--out",
                    str(tmp / "cmp")],
        "bench": ["bench", str(tmp / "grid.yaml"), "--out", str(tmp / "bench")],
        "merge": ["merge", "--adapter", str(tmp / "ck"), "--out", str(tmp / "merged")],
        "analyze-router": ["analyze-router", "--model", "tiny-llama", "--adapter", str(tmp / "ck"), "--tasks", t["a"],
                           "--out", str(tmp / "router")],
    }


MODEL_COMMANDS = ["eval", "library build", "library add", "train", "select", "compare", "bench", "merge",
                  "analyze-router"]  # `ranks` reads a checkpoint and runs no model


@pytest.mark.parametrize("name", MODEL_COMMANDS)
def test_every_model_command_takes_precision_and_refuses_other_values(monkeypatch, capsys, tmp_path, tasks, name):
    argv = commands(tmp_path, tasks)[name]
    command = typer.main.get_command(app)
    words = list(argv)
    while hasattr(command, "commands"):  # `loralab bench CONFIG` is `loralab bench run CONFIG`
        command = command.commands[words.pop(0) if words and words[0] in command.commands else "run"]
    for value in ("auto", "fp32", "bf16", "fp16"):
        assert command.make_context(command.name, [*words, "--precision", value]).params["precision"] == value
    default = command.make_context(command.name, list(words)).params["precision"]
    assert default == (None if name == "bench" else "auto")  # bench: the grid's `precision` key decides
    before = sorted(p.name for p in tmp_path.iterdir())
    code, out, err = cli(monkeypatch, capsys, *argv, "--precision", "half")
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert err.startswith("error: Invalid value for '--precision'") and "'half'" in err
    assert all(f"'{v}'" in err for v in ("auto", "fp32", "bf16", "fp16"))
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


def test_fp16_on_a_cpu_is_one_line_and_writes_nothing(monkeypatch, capsys, tmp_path, tasks):
    code, out, err = cli(monkeypatch, capsys, *commands(tmp_path, tasks)["eval"], "--device", "cpu",
                         "--precision", "fp16")
    assert code == 2 and out == "" and err.count("\n") == 1 and "error: precision: 'fp16' runs on CUDA only" in err
    assert not (tmp_path / "r.json").exists()


@needs_cpu_only
def test_eval_records_and_prints_the_precision_and_fp32_is_the_run_without_the_flag(monkeypatch, capsys, tmp_path,
                                                                                      tasks):
    records, printed = {}, {}
    for name, flag in (("none", []), ("fp32", ["--precision", "fp32"]), ("bf16", ["--precision", "bf16"])):
        out, _ = ok(monkeypatch, capsys, "eval", "--model", "tiny-llama", "--task", tasks["a"], "--log-samples",
                    "--out", str(tmp_path / f"{name}.json"), *flag)
        records[name] = json.loads((tmp_path / f"{name}.json").read_text())
        printed[name] = out
    assert records["none"]["precision"]["name"] == "fp32" and records["none"]["precision"]["requested"] == "auto"
    assert records["fp32"]["precision"]["requested"] == "fp32" and records["bf16"]["precision"]["name"] == "bf16"
    assert "neither AVX512-BF16 nor AMX" in records["none"]["precision"]["reason"]
    assert records["none"]["metrics"] == records["fp32"]["metrics"]
    assert records["none"]["samples"] == records["fp32"]["samples"]  # the same log-likelihoods, bit for bit
    logliks = [s["logliks"] for s in records["bf16"]["samples"]]
    assert logliks != [s["logliks"] for s in records["fp32"]["samples"]]  # the flag reached the forwards
    assert "precision fp32)" in printed["none"] and "precision bf16)" in printed["bf16"]


@needs_cpu_only
def test_library_build_add_ls_and_select_record_the_precision(monkeypatch, capsys, tmp_path, tasks):
    both = f"{tasks['a']},{tasks['b']}"
    build = ["library", "build", "--model", "tiny-llama", "--tasks", both, "--max-steps", "1", "--limit", "2",
             "--split", "all"]
    ok(monkeypatch, capsys, *build, "--out", str(tmp_path / "lib0"))
    out, _ = ok(monkeypatch, capsys, *build, "--out", str(tmp_path / "lib"), "--precision", "fp32")
    assert "precision" in out and "fp32" in out  # the library table has a precision column
    for task in ("a", "b"):
        entry = json.loads((tmp_path / "lib" / "tiny-llama" / task / "loralab.json").read_text())
        assert entry["precision"]["name"] == "fp32" and entry["precision"]["requested"] == "fp32"
        assert json.loads((tmp_path / "lib0" / "tiny-llama" / task / "loralab.json").read_text())["precision"][
            "requested"] == "auto"
        assert same_tensors(tensors(tmp_path / "lib0" / "tiny-llama" / task / "adapter_model.safetensors"),
                            tensors(tmp_path / "lib" / "tiny-llama" / task / "adapter_model.safetensors"))

    # extending an fp32 library in bf16 is refused, naming the flag
    code, _, err = cli(monkeypatch, capsys, "library", "build", "--model", "tiny-llama", "--tasks", tasks["c"],
                       "--out", str(tmp_path / "lib"), "--max-steps", "1", "--precision", "bf16")
    assert code == 2 and err.count("\n") == 1 and "precision='fp32' (asked 'bf16'); use the same --precision" in err
    assert not (tmp_path / "lib" / "tiny-llama" / "c").exists()

    # an import is evaluated in the precision asked; the entry says so in its evaluation
    _, err = ok(monkeypatch, capsys, "library", "add", str(tmp_path / "lib"), "--adapter",
                str(tmp_path / "lib" / "tiny-llama" / "a"), "--task", tasks["c"], "--limit", "2", "--split", "all",
                "--precision", "bf16")
    assert "evaluated in bf16" in err
    imported = json.loads((tmp_path / "lib" / "tiny-llama" / "c" / "loralab.json").read_text())
    assert imported["metrics"]["eval"]["precision"]["name"] == "bf16"
    out, _ = ok(monkeypatch, capsys, "library", "ls", str(tmp_path / "lib"))
    (row,) = [line for line in out.splitlines() if "imported" in line]
    assert "bf16" in row

    select = ["select", "--library", str(tmp_path / "lib"), "--task", tasks["c"], "--k", "1", "--model", "tiny-llama"]
    out, _ = ok(monkeypatch, capsys, *select, "--strategy", "ppl", "--precision", "fp32")
    assert "precision fp32" in out
    assert ok(monkeypatch, capsys, *select, "--strategy", "ppl")[0] == out  # auto (fp32 here): the same scores
    assert "precision bf16" in ok(monkeypatch, capsys, *select, "--strategy", "ppl", "--precision", "bf16")[0]
    assert "no model run" in ok(monkeypatch, capsys, *select, "--strategy", "random", "--precision", "bf16")[0]


@needs_cpu_only
def test_train_analyze_router_and_merge_record_the_precision(monkeypatch, capsys, tmp_path, tasks):
    train = ["train", "--model", "tiny-llama", "--tasks", f"{tasks['a']},{tasks['b']}", "--max-steps", "1"]
    ok(monkeypatch, capsys, *train, "--method", "moelora", "--out", str(tmp_path / "ck0"))
    _, err = ok(monkeypatch, capsys, *train, "--method", "moelora", "--out", str(tmp_path / "ck"),
                "--precision", "fp32")
    assert "precision fp32)" in err
    info = json.loads((tmp_path / "ck" / "loralab_method.json").read_text())
    assert info["precision"]["name"] == "fp32" and info["precision"]["requested"] == "fp32"
    assert json.loads((tmp_path / "ck0" / "loralab_method.json").read_text())["precision"]["name"] == "fp32"
    assert same_tensors(tensors(tmp_path / "ck0" / "method_model.safetensors"),
                        tensors(tmp_path / "ck" / "method_model.safetensors"))

    router = ["analyze-router", "--model", "tiny-llama", "--adapter", str(tmp_path / "ck"), "--tasks",
              f"{tasks['a']},{tasks['b']}", "--limit", "2"]
    out, _ = ok(monkeypatch, capsys, *router, "--out", str(tmp_path / "r32"), "--precision", "fp32")
    assert "precision fp32)" in out
    out, _ = ok(monkeypatch, capsys, *router, "--out", str(tmp_path / "r16"), "--precision", "bf16")
    assert "precision bf16)" in out
    r16 = json.loads((tmp_path / "r16" / "router.json").read_text())
    assert r16["meta"]["precision"]["name"] == "bf16"
    assert "precision bf16" in (tmp_path / "r16" / "router.md").read_text()
    r0 = json.loads((tmp_path / "r32" / "router.json").read_text())
    assert r0["meta"]["precision"]["name"] == "fp32"

    # a merge of a known task runs no forward: nothing to record; MoRE's nearest-task search does
    ok(monkeypatch, capsys, "merge", "--adapter", str(tmp_path / "ck"), "--task", "a", "--out", str(tmp_path / "m"),
       "--precision", "bf16")
    assert "precision" not in json.loads((tmp_path / "m" / "loralab_merge.json").read_text())
    ok(monkeypatch, capsys, *train, "--method", "more", "--out", str(tmp_path / "more"))
    _, err = ok(monkeypatch, capsys, "merge", "--adapter", str(tmp_path / "more"), "--task", tasks["c"], "--nearest",
                "4", "--out", str(tmp_path / "mn"), "--precision", "bf16")
    assert "found in bf16" in err
    record = json.loads((tmp_path / "mn" / "loralab_merge.json").read_text())
    assert record["precision"]["name"] == "bf16" and record["nearest_task"] in ("a", "b")


def test_compare_records_and_shows_the_precision(monkeypatch, capsys, tmp_path, tasks):
    for name in ("fp32", "bf16"):
        out, _ = ok(monkeypatch, capsys, "compare", "--model", "tiny-llama", "--methods", "base", "--tasks",
                    tasks["a"], "--limit", "2", "--device", "cpu", "--out", str(tmp_path / name), "--precision", name)
        assert f"precision {name};" in out
        assert [r["precision"] for r in json.loads((tmp_path / name / "results.json").read_text())] == [name]
        with sqlite3.connect(tmp_path / name / "bench.sqlite") as conn:
            (stored,) = conn.execute("SELECT precision FROM cells").fetchone()
        assert json.loads(stored)["name"] == name


def test_bench_precision_overrides_the_grid_key(monkeypatch, capsys, tmp_path, tasks):
    grid = tmp_path / "grid.yaml"
    grid.write_text(f"name: prec\nmodels: [tiny-llama]\nmethods: [base]\ntargets: [{tasks['a']}]\n"
                    "library: {tasks: []}\neval: {limit: 2}\ndevice: cpu\nprecision: fp32\n", encoding="utf-8")
    assert "1 cells, precision fp32 (requested fp32)" in ok(monkeypatch, capsys, "bench", str(grid), "--dry-run")[0]
    out, _ = ok(monkeypatch, capsys, "bench", str(grid), "--dry-run", "--precision", "bf16")
    assert "1 cells, precision bf16 (requested bf16)" in out
    for name, flag in (("fp32", []), ("bf16", ["--precision", "bf16"])):
        out, _ = ok(monkeypatch, capsys, "bench", str(grid), "--out", str(tmp_path / name), *flag)
        assert f"1 cells in precision {name}: 1 run now" in out
        with sqlite3.connect(tmp_path / name / "bench.sqlite") as conn:
            stored, config = conn.execute("SELECT precision, config FROM cells").fetchone()
        assert json.loads(stored)["name"] == name
        assert json.loads(config)["protocol"].get("precision", "fp32") == name
        report = (tmp_path / name / "report" / "report.md").read_text()
        assert f"## Results (precision {name})" in report and f"Precision: {name} (requested: {name})." in report
