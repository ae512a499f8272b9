"""`compare_methods` / `loralab compare`: seeds (mean ± std tables), multi-task cells, idempotent re-runs.

The single-task table and CLI resume test is `test_compare_methods_table_and_resume` in tests/cli/test_cli.py.
"""

from __future__ import annotations

import json
import statistics

import pytest

from loralab import api, train
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
        return real(method, model, tasks, out, progress=False, **kwargs)

    monkeypatch.setattr(train, "train_method", spy)
    return calls


# ---------------------------------------------------------------- the table

def test_single_seed_table_keeps_its_format(tmp_path):
    records = [_record("a", "t1", 0.5, seed=0), _record("a", "t2", 0.25, seed=0), _record("b", "t1", 0.75, seed=0)]
    text = write_table(records, tmp_path)
    assert text == ("| method | t1 | t2 | average |\n|---|---|---|---|\n"
                    "| a | 0.500 | **0.250** | 0.375 |\n| b | **0.750** |  | **0.750** |\n\n"
                    "Primary metric per task on the test split (n=10); best per column in bold.\n")
    assert json.loads((tmp_path / "results.json").read_text()) == records


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
    # one joint training per (trained method, seed), on both tasks; base trains nothing
    assert sorted(train_calls) == sorted((m, ["ta", "tb"], s) for m in methods[1:] for s in (0, 1))
    cells = tmp_path / "cells"
    assert sorted(p.name for p in cells.iterdir()) == sorted(
        f"{m}--multitask--seed{s}.json" for m in methods for s in (0, 1))
    for m in methods:
        for s in (0, 1):
            cell = json.loads((cells / f"{m}--multitask--seed{s}.json").read_text())
            assert [(r["method"], r["task"], r["seed"], r["multitask"]) for r in cell] == [
                (m, "ta", s, True), (m, "tb", s, True)]
            ckpt = tmp_path / "checkpoints" / f"{m}--multitask--seed{s}"
            assert [r["adapter"] for r in cell] == [None if m == "base" else str(ckpt)] * 2
    meta = json.loads((tmp_path / "checkpoints" / "moelora--multitask--seed1" / "loralab_method.json").read_text())
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

    before = {p.name: p.stat().st_mtime_ns for p in cells.iterdir()}
    train_calls.clear()
    assert run() == records and train_calls == []  # every cell reused
    assert before == {p.name: p.stat().st_mtime_ns for p in cells.iterdir()}
    (cells / "moelora--multitask--seed1.json").unlink()
    run()
    assert train_calls == [("moelora", ["ta", "tb"], 1)]  # only the missing cell runs again
    assert {k: v for k, v in before.items() if k != "moelora--multitask--seed1.json"} == {
        p.name: p.stat().st_mtime_ns for p in cells.iterdir() if p.name != "moelora--multitask--seed1.json"}


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
    assert train_calls == [] and not (tmp_path / "cells").exists()


def test_multitask_lora_is_each_tasks_own_library_lora_evaluated_once(tmp_path, train_calls, monkeypatch):
    tasks = [toy_task("ta", n=24), toy_task("tb", n=24)]
    entries = build_library(build_tiny_model("llama", seed=0), tasks, tmp_path / "lib", hparams=HP, eval_limit=0,
                            evaluate_base=False, progress=False)
    evals = []
    real = api.run_eval
    monkeypatch.setattr(api, "run_eval", lambda model, task, **kw: evals.append(task.name) or real(model, task, **kw))
    records = compare_methods(MODEL, ["lora"], tasks, tmp_path / "cmp", library=tmp_path / "lib", eval_limit=3,
                              seeds=[0, 1], multitask=True)
    assert train_calls == [] and evals == ["ta", "tb"]  # same weights for every seed: evaluated once
    assert [(r["task"], r["seed"], r["adapter"], r["train_tasks"]) for r in records] == [
        (e.task, s, str(e.path), [e.task]) for s in (0, 1) for e in entries]


def test_multitask_cell_is_not_reused_for_another_task_set(tmp_path):
    ta, tb = toy_task("ta", n=24), toy_task("tb", n=24)
    compare_methods(MODEL, ["base"], [ta, tb], tmp_path, eval_limit=3, multitask=True)
    with pytest.raises(UserInputError, match="was run on tasks ta,tb, not ta"):
        compare_methods(MODEL, ["base"], [ta], tmp_path, eval_limit=3, multitask=True)


# ---------------------------------------------------------------- seeds in single-task mode

def test_single_task_cells_get_a_seed_suffix_only_with_several_seeds(tmp_path, train_calls):
    task = toy_task("ta", n=24)
    two = compare_methods(MODEL, ["base"], [task], tmp_path / "two", hparams=HP, eval_limit=3, seeds=[3, 4])
    assert sorted(p.name for p in (tmp_path / "two" / "cells").iterdir()) == [
        "base--ta--seed3.json", "base--ta--seed4.json"]
    assert [r["seed"] for r in two] == [3, 4] and [c[2] for c in train_calls] == [3, 4]
    assert _row((tmp_path / "two" / "results.md").read_text(), "base")[0].replace("**", "").endswith("± 0.000")
    one = compare_methods(MODEL, ["base"], [task], tmp_path / "one", hparams=HP, eval_limit=3, seeds=[5])
    assert [p.name for p in (tmp_path / "one" / "cells").iterdir()] == ["base--ta.json"]
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
    assert sorted(p.name for p in (tmp_path / "cmp" / "cells").iterdir()) == [
        "base--multitask--seed0.json", "base--multitask--seed2.json"]
    assert "| base |" in out and "± 0.000" in out and "2 seeds (0, 2)" in out
