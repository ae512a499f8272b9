"""`compare_methods` / `loralab compare`: seeds (mean ± std tables), multi-task cells, idempotent re-runs.

The single-task table and CLI resume test is `test_compare_methods_table_and_resume` in tests/cli/test_cli.py;
that compare and `loralab bench` give the same database is tests/bench/test_one_runner.py.
"""

from __future__ import annotations

import json
import sqlite3
import statistics
from pathlib import Path

import pytest

from loralab import api, train
from loralab.bench import Store
from loralab.bench.compare import compare_methods, write_table
from loralab.errors import UserInputError
from loralab.library import LoRAHparams, build_library
from loralab.models import build_tiny_model

from helpers import run_cli, toy_task

HP = LoRAHparams(max_steps=2, batch_size=4)
MODEL = "tiny-llama"


def _record(method, task, score, seed=None, n=10):
    rec = {"method": method, "task": task, "metrics": {"acc": score}, "primary_metric": "acc", "n": n,
           "split": "test"}
    if seed is not None:
        rec["seed"] = seed
    return rec


def _row(table: str, method: str) -> list[str]:
    (line,) = [ln for ln in table.splitlines() if ln.startswith(f"| {method} |")]
    return [c.strip() for c in line.strip("|").split("|")][1:]


@pytest.fixture
def train_calls(monkeypatch):
    """Every train_method call compare makes: (method, task names, seed); training still runs."""
    calls = []
    real = train.train_method

    def spy(method, model, tasks, out, **kwargs):
        calls.append((method, [t.name for t in tasks], kwargs["hparams"].seed))
        return real(method, model, tasks, out, **{"progress": False, **kwargs})

    monkeypatch.setattr(train, "train_method", spy)
    return calls


def _db_rows(out):
    with Store(out / "bench.sqlite", create=False) as store:
        return store.rows()


# ---------------------------------------------------------------- the table

def test_single_seed_table_keeps_its_format(tmp_path):
    records = [_record("a", "t1", 0.5, seed=0), _record("a", "t2", 0.25, seed=0), _record("b", "t1", 0.75, seed=0)]
    text = write_table(records, tmp_path)
    assert text == ("| method | t1 | t2 | average |\n|---|---|---|---|\n"
                    "| a | 0.500 | **0.250** | 0.375 |\n| b | **0.750** |  | **0.750** |\n\n"
                    "Primary metric per task on the test split (n=10); precision fp32; best per column in bold.\n")
    assert json.loads((tmp_path / "results.json").read_text()) == records


def test_records_of_two_precisions_get_a_row_each(tmp_path):
    """fp32 and bf16 scores of one method are distinct cells: shown apart, never averaged into one number."""
    records = [{**_record("a", "t1", 0.5, seed=0), "precision": "fp32"},
               {**_record("a", "t1", 0.7, seed=0), "precision": "bf16"}, _record("b", "t1", 0.6, seed=0)]
    text = write_table(records, tmp_path)
    assert _row(text, "a · fp32") == ["0.500", "0.500"] and _row(text, "a · bf16") == ["**0.700**", "**0.700**"]
    assert _row(text, "b · fp32") == ["0.600", "0.600"]  # a record without a precision ran fp32
    assert "precisions fp32, bf16: each row names its own, and rows of different precisions are never averaged" \
        in text


def test_seeds_table_shows_mean_and_sample_std(tmp_path):
    records = [_record("m", "t1", v, seed=s) for s, v in zip((0, 1, 2), (0.5, 0.6, 0.7))]
    records += [_record("m", "t2", v, seed=s) for s, v in zip((0, 1, 2), (0.1, 0.2, 0.3))]
    records += [_record("k", "t1", v, seed=s) for s, v in zip((0, 1, 2), (0.2, 0.2, 0.2))]
    records += [_record("k", "t2", 0.9, seed=0)]  # one seed only: no ±, and says so
    text = write_table(records, tmp_path)
    # sample std (ddof=1) of 0.5, 0.6, 0.7 is 0.1 (population std would be 0.082)
    assert _row(text, "m") == ["**0.600 ± 0.100**", "0.200 ± 0.100", "**0.400 ± 0.100**"]
    # k's average: per seed over the tasks it has (0.55, 0.2, 0.2), then over seeds
    k_avg = [(0.2 + 0.9) / 2, 0.2, 0.2]
    assert _row(text, "k") == ["0.200 ± 0.000", "**0.900 (1/3 seeds)**",
                               f"{statistics.fmean(k_avg):.3f} ± {statistics.stdev(k_avg):.3f}"]
    assert "3 seeds (0, 1, 2)" in text and "n=10 per task" in text
    assert len(json.loads((tmp_path / "results.json").read_text())) == len(records)


# ---------------------------------------------------------------- multi-task mode

def test_multitask_one_cell_per_method_and_seed_then_resume(tmp_path, train_calls):
    tasks = [toy_task("ta", n=24), toy_task("tb", n=24)]
    methods = ["base", "multitask_lora", "moelora"]
    run = lambda: compare_methods(MODEL, methods, tasks, tmp_path, hparams=HP, eval_limit=3,  # noqa: E731
                                  seeds=[0, 1], multitask=True)
    records = run()
    # one joint training per (trained method, seed), on both tasks; base trains nothing (one identity checkpoint)
    assert sorted(c for c in train_calls if c[0] != "base") == sorted(
        (m, ["ta", "tb"], s) for m in methods[1:] for s in (0, 1))
    rows = _db_rows(tmp_path)  # one row per (method, task, seed); base's rows serve every seed
    assert sorted((r["method"], r["target"], r["seed"]) for r in rows) == sorted(
        [("base", t, None) for t in ("ta", "tb")] + [(m, t, s) for m in methods[1:] for t in ("ta", "tb") for s in (0, 1)])
    for m in methods:
        for s in (0, 1):
            cell = [r for r in records if r["method"] == m and r["seed"] == s]
            assert [(r["method"], r["task"], r["seed"], r["multitask"]) for r in cell] == [
                (m, "ta", s, True), (m, "tb", s, True)]
            adapters = {r["adapter"] for r in cell}  # a trained method: one model for both tasks
            assert len(adapters) == (2 if m == "base" else 1)
            assert all(Path(a).parent == tmp_path / "checkpoints" for a in adapters)
    (moelora,) = {r["adapter"] for r in records if r["method"] == "moelora" and r["seed"] == 1}
    meta = json.loads((Path(moelora) / "loralab_method.json").read_text())
    assert meta["tasks"] == ["ta", "tb"]  # one model, routed by task id
    assert len(records) == 3 * 2 * 2

    table = (tmp_path / "results.md").read_text()
    for m in methods:
        scores = {t: [r["metrics"]["acc"] for r in records if r["method"] == m and r["task"] == t]
                  for t in ("ta", "tb")}
        cells_text = [c.replace("**", "") for c in _row(table, m)]
        assert cells_text[:2] == [f"{statistics.fmean(v):.3f} ± {statistics.stdev(v):.3f}" for v in scores.values()]
        assert "±" in cells_text[2]
    assert "2 seeds (0, 1)" in table and "n=3 per task" in table and "trained on all tasks jointly" in table

    before = {r["cell_id"]: r["finished_at"] for r in _db_rows(tmp_path)}
    train_calls.clear()
    assert run() == records and train_calls == []  # every cell reused
    assert before == {r["cell_id"]: r["finished_at"] for r in _db_rows(tmp_path)}
    lost = {r["cell_id"] for r in records if r["method"] == "moelora" and r["seed"] == 1}
    with sqlite3.connect(tmp_path / "bench.sqlite") as conn:  # lose one job's rows (both tasks of moelora, seed 1)
        conn.execute("DELETE FROM cells WHERE method = 'moelora' AND seed = 1")
    run()
    assert train_calls == [("moelora", ["ta", "tb"], 1)]  # only the missing job runs again
    after = {r["cell_id"]: r["finished_at"] for r in _db_rows(tmp_path)}
    assert len(lost) == 2 and set(after) == set(before)
    assert {k: v for k, v in after.items() if k not in lost} == {k: v for k, v in before.items() if k not in lost}


def test_multitask_library_method_without_experts_fails_before_any_work(tmp_path, train_calls):
    tasks = [toy_task("ta", n=24), toy_task("tb", n=24)]
    with pytest.raises(UserInputError, match="'xlora' uses library LoRAs as experts"):
        compare_methods(MODEL, ["base", "xlora"], tasks, tmp_path, hparams=HP, multitask=True)
    with pytest.raises(UserInputError, match="own library LoRA: pass --library"):
        compare_methods(MODEL, ["lora"], tasks, tmp_path, hparams=HP, multitask=True)
    # the targets' own LoRAs are left out, so naming only them leaves xlora without experts
    with pytest.raises(UserInputError, match="include-own"):
        compare_methods(MODEL, ["xlora"], tasks, tmp_path, hparams=HP, multitask=True, library=tmp_path / "lib",
                        experts=["ta", "tb"])
    assert train_calls == [] and not (tmp_path / "bench.sqlite").exists()


def test_multitask_lora_is_each_tasks_own_library_lora_evaluated_once(tmp_path, train_calls, monkeypatch):
    tasks = [toy_task("ta", n=24), toy_task("tb", n=24)]
    entries = build_library(build_tiny_model("llama", seed=0), tasks, tmp_path / "lib", hparams=HP, eval_limit=0,
                            evaluate_base=False, progress=False)
    evals = []
    real = api.run_eval
    monkeypatch.setattr(api, "run_eval", lambda model, task, **kw: evals.append(task.name) or real(model, task, **kw))
    records = compare_methods(MODEL, ["lora"], tasks, tmp_path / "cmp", library=tmp_path / "lib", eval_limit=3,
                              seeds=[0, 1], multitask=True)
    # same weights for every seed: copied and evaluated once per task, nothing trained
    assert [c[0] for c in train_calls] == ["lora", "lora"] and evals == ["ta", "tb"]
    assert [(r["task"], r["seed"], r["train_tasks"]) for r in records] == [
        (e.task, s, [e.task]) for s in (0, 1) for e in entries]
    for r in records:  # the evaluated adapter is a byte-identical copy of the task's library LoRA
        entry = next(e for e in entries if e.task == r["task"])
        assert all((Path(r["adapter"]) / name).read_bytes() == (entry.path / name).read_bytes() for name in entry.files)


def test_multitask_cell_is_not_reused_for_another_task_set(tmp_path, train_calls):
    ta, tb = toy_task("ta", n=24), toy_task("tb", n=24)
    compare_methods(MODEL, ["base", "multitask_lora"], [ta, tb], tmp_path, hparams=HP, eval_limit=3, multitask=True)
    train_calls.clear()
    records = compare_methods(MODEL, ["base", "multitask_lora"], [ta], tmp_path, hparams=HP, eval_limit=3,
                              multitask=True)
    # the model trained on ta and tb is not the one trained on ta alone: another cell, trained again; base's
    # score on ta does not depend on the task set, so its cell is reused
    assert train_calls == [("multitask_lora", ["ta"], 0)]
    assert [(r["method"], r["task"], r["train_tasks"]) for r in records] == [
        ("base", "ta", []), ("multitask_lora", "ta", ["ta"])]


# ---------------------------------------------------------------- seeds in single-task mode

def test_single_task_seed_free_cell_serves_every_seed(tmp_path, train_calls):
    task = toy_task("ta", n=24)
    two = compare_methods(MODEL, ["base"], [task], tmp_path / "two", hparams=HP, eval_limit=3, seeds=[3, 4])
    assert [(r["method"], r["seed"]) for r in _db_rows(tmp_path / "two")] == [("base", None)]  # trains nothing
    assert [r["seed"] for r in two] == [3, 4] and len(train_calls) == 1
    assert _row((tmp_path / "two" / "results.md").read_text(), "base")[0].replace("**", "").endswith("± 0.000")
    one = compare_methods(MODEL, ["base"], [task], tmp_path / "one", hparams=HP, eval_limit=3, seeds=[5])
    assert one[0]["seed"] == 5 and "±" not in (tmp_path / "one" / "results.md").read_text()
    with pytest.raises(UserInputError, match="distinct"):
        compare_methods(MODEL, ["base"], [task], tmp_path / "bad", seeds=[1, 1])


# ---------------------------------------------------------------- CLI

def _write_task(path, n=24):
    lines = [json.dumps({"id": f"q{i}", "prompt": f"Q: is {i} even?\nA:", "choices": [" yes", " no"],
                         "answer_index": i % 2, "split": "test" if i % 4 == 0 else "train"}) for i in range(n)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def test_cli_bad_seeds_is_a_one_line_error(monkeypatch, capsys, tmp_path):
    task = _write_task(tmp_path / "ta.jsonl")
    code, _, err = run_cli(monkeypatch, capsys, "compare", "--model", MODEL, "--methods", "base", "--tasks", task,
                           "--out", str(tmp_path / "cmp"), "--seeds", "0,x")
    assert code == 2 and "--seeds" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "cmp").exists()


def test_cli_multitask_with_seeds(monkeypatch, capsys, tmp_path):
    tasks = ",".join(_write_task(tmp_path / f"{n}.jsonl") for n in ("ta", "tb"))
    code, out, err = run_cli(monkeypatch, capsys, "compare", "--model", MODEL, "--methods", "base", "--tasks", tasks,
                             "--out", str(tmp_path / "cmp"), "--seeds", "0, 2", "--multitask", "--eval-limit", "3")
    assert code == 0, err
    records = json.loads((tmp_path / "cmp" / "results.json").read_text())
    assert [(r["task"], r["seed"]) for r in records] == [("ta", 0), ("tb", 0), ("ta", 2), ("tb", 2)]
    assert "| base |" in out and "± 0.000" in out and "2 seeds (0, 2)" in out
