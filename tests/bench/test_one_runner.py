"""One runner: `compare_methods` (`loralab compare`) is a front-end of the benchmark runner, so the same
comparison run through `compare_methods(...)` and through `run_bench(config)` gives the same database rows
(timing, timestamps and host excepted), in single-task mode with two seeds and in multi-task mode, and
`loralab report` renders a comparison's database.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import run_cli

from loralab.bench import Store, bench_from_mapping, expand, run_bench, write_report
from loralab.bench.compare import compare_methods
from loralab.errors import ConfigError
from loralab.library import LoRAHparams, build_library

MODEL = "tiny-llama"
TRAIN = {"max_steps": 1, "batch_size": 4, "rank": 4, "max_length": 64}
POOL = ["parity", "greater", "colour", "oddsum"]


@pytest.fixture(scope="module")
def library(toy_tasks, tmp_path_factory) -> Path:
    """A tiny existing library: one LoRA per toy task (2 steps each)."""
    path = tmp_path_factory.mktemp("one-runner") / "lib"
    build_library(MODEL, list(toy_tasks.values()), path, hparams=LoRAHparams(max_steps=2, batch_size=4, rank=4,
                                                                                 max_length=64),
                  eval_limit=0, evaluate_base=False, progress=False)
    return path


def _rows(db: Path) -> list[dict]:
    with Store(db, create=False) as store:
        return store.rows(volatile=False)


def _both(toy_tasks, library, tmp_path, methods, *, seeds, multitask):
    """The same comparison, once by `compare_methods` and once as a benchmark config: (records, compare rows, rows)."""
    targets = [toy_tasks["parity"], toy_tasks["colour"]]
    records = compare_methods(MODEL, methods, targets, tmp_path / "compare", library=library, experts=POOL,
                              hparams=LoRAHparams(**TRAIN), eval_limit=8, seeds=seeds, multitask=multitask)
    config = {"name": "compare", "models": [MODEL], "methods": methods, "targets": targets, "seeds": seeds,
              "train": TRAIN, "eval": {"limit": 8}, "experts": POOL, "library": {"path": str(library), "build": False},
              "multitask": multitask, "device": "cpu"}
    result = run_bench(bench_from_mapping(config), tmp_path / "bench", report=False)
    assert not result.failed and result.ran == result.cells
    return records, _rows(tmp_path / "compare" / "bench.sqlite"), _rows(result.db)


def test_single_task_two_seeds_compare_equals_bench(toy_tasks, library, tmp_path, monkeypatch, capsys):
    records, compared, benched = _both(toy_tasks, library, tmp_path, ["base", "lora", "loramoe"], seeds=[0, 1],
                                       multitask=False)
    assert compared == benched
    # base and the copied own LoRA are seed-free (one row per target), loramoe one row per target and seed
    assert sorted((r["method"], r["target"], r["seed"]) for r in benched) == sorted(
        [(m, t, None) for m in ("base", "lora") for t in ("parity", "colour")]
        + [("loramoe", t, s) for t in ("parity", "colour") for s in (0, 1)])
    for row in benched:
        if row["method"] == "loramoe":  # the fixed pool without the target's own LoRA
            assert row["experts"] == [e for e in POOL if e != row["target"]] and row["own_lora"] == "excluded"
            assert row["selection"] is None and row["strategy"] is None
    # the records: one per (method, task, seed), a seed-free row serving both seeds
    assert sorted((r["method"], r["task"], r["seed"]) for r in records) == sorted(
        (m, t, s) for m in ("base", "lora", "loramoe") for t in ("parity", "colour") for s in (0, 1))
    by_id = {r["cell_id"]: r for r in benched}
    assert all(r["metrics"] == by_id[r["cell_id"]]["metrics"] for r in records)
    table = (tmp_path / "compare" / "results.md").read_text()
    assert "| loramoe |" in table and "2 seeds (0, 1)" in table

    # the comparison's database is a benchmark database: `loralab report` renders it
    code, stdout, err = run_cli(monkeypatch, capsys, "report", str(tmp_path / "compare" / "bench.sqlite"))
    assert code == 0, err
    md = (tmp_path / "compare" / "report" / "report.md").read_text()
    assert "8 of 8 cells done" in md
    assert "Experts: the fixed pool parity, greater, colour, oddsum" in md and "### Method x task" in md
    assert "`base` the base model" in md and "| lora-vs-base | headline |" in md and "| loramoe-vs-base |" in md


def test_multitask_compare_equals_bench(toy_tasks, library, tmp_path):
    records, compared, benched = _both(toy_tasks, library, tmp_path, ["base", "lora", "moelora"], seeds=[0],
                                       multitask=True)
    assert compared == benched
    joint = [r for r in benched if r["method"] == "moelora"]
    assert sorted(r["target"] for r in joint) == ["colour", "parity"] and all(r["seed"] == 0 for r in joint)
    # one model on both targets, its experts the pool without any target's own LoRA
    assert all(r["config"]["protocol"]["train_tasks"] == ["parity", "colour"] for r in joint)
    assert all(r["experts"] == ["greater", "oddsum"] for r in joint)
    assert {(r["method"], r["seed"]) for r in benched if r["method"] != "moelora"} == {("base", None), ("lora", None)}
    (adapter,) = {r["adapter"] for r in records if r["method"] == "moelora"}
    meta = json.loads((Path(adapter) / "loralab_method.json").read_text())
    assert meta["tasks"] == ["parity", "colour"]
    md = write_report(tmp_path / "bench" / "bench.sqlite").read_text()
    assert "trains one model on all targets' train splits jointly" in md and "| moelora |" in md


@pytest.mark.parametrize("change, message", [
    ({"experts": ["greater"]}, "strategies and experts both say where experts come from"),
    ({"multitask": True, "methods": ["loramoe"]}, "multitask: methods loramoe would get experts chosen per target"),
    ({"include_own": True}, "include_own: true keeps the target's own LoRA in a fixed pool"),
    ({"strategies": [], "selection": None, "experts": ["greter"]}, "Did you mean 'greater'"),
    ({"strategies": [], "selection": None, "methods": ["xlora"], "experts": ["parity"]},
     "'xlora' uses library LoRAs as experts"),
    ({"library": {"build": False}}, "library.build: false uses an existing library: set library.path"),
])
def test_expert_pool_and_multitask_config_errors(make_grid, change, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        bench_from_mapping(make_grid(**change))


def test_multitask_grid_one_job_per_method_and_seed(make_grid):
    bench = bench_from_mapping(make_grid(methods=["base", "more", "loramoe"], strategies=[], selection=None,
                                         experts=["greater", "oddsum"], multitask=True))
    cells = expand(bench)
    jobs = {}
    for c in cells:
        jobs.setdefault(c.job_id, []).append((c.method, c.target, c.seed))
    trained = sorted(v for v in jobs.values() if v[0][0] != "base")
    assert trained == sorted([(m, t, s) for t in ("parity", "colour")] for m in ("loramoe", "more") for s in (0, 1))
    assert sorted(v for v in jobs.values() if v[0][0] == "base") == [[("base", "colour", None)],
                                                                      [("base", "parity", None)]]
    assert len({c.cell_id for c in cells}) == len(cells) == 10
