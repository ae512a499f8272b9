"""`loralab bench --dry-run`: the cells of the grid, how many OUT's database already holds and how many remain, and
the resolved grid as YAML (which, saved and run, is the same grid); a re-run says how many cells it reused."""

from __future__ import annotations

import json
import re
import sqlite3

import pytest
import yaml
from helpers import run_cli

from loralab.bench import bench_from_mapping, expand, load_bench, plan_bench, resolved_config

RESOLVED = "# loralab bench --dry-run: the resolved grid"  # the comment line the YAML starts with


def _resolved_yaml(stdout: str) -> dict:
    return yaml.safe_load(RESOLVED + stdout.split(RESOLVED, 1)[1])


def _snapshot(folder):
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


def _base_grid(make_grid, toy_tasks, targets):
    """Only the base model: its cells evaluate 8 questions each, nothing trains."""
    return make_grid(methods=["base"], strategies=[], selection=None, library={"tasks": []}, seeds=[0],
                     targets=[toy_tasks[t] for t in targets])


def test_dry_run_counts_done_and_remaining_cells_and_a_rerun_says_what_it_reused(monkeypatch, capsys, tmp_path,
                                                                                  make_grid, write_grid, toy_tasks):
    out = tmp_path / "out"
    small = write_grid(_base_grid(make_grid, toy_tasks, ["parity"]), "small.yaml")
    code, stdout, err = run_cli(monkeypatch, capsys, "bench", str(small), "--dry-run", "--out", str(out))
    assert code == 0, err
    assert "tiny: 1 cells" in stdout and f"{out / 'bench.sqlite'}: no database yet; all 1 cells to run" in stdout
    assert not out.exists()

    code, stdout, err = run_cli(monkeypatch, capsys, "bench", str(small), "--out", str(out))
    assert code == 0, err
    assert "1 cells in precision fp32: 1 run now, 0 already done" in stdout

    larger = write_grid(_base_grid(make_grid, toy_tasks, ["parity", "colour"]), "larger.yaml")
    before = _snapshot(out)
    code, stdout, err = run_cli(monkeypatch, capsys, "bench", str(larger), "--dry-run", "--out", str(out))
    assert code == 0, err
    assert f"{out / 'bench.sqlite'}: 1 of 2 cells already done (reused), 1 to run" in stdout
    rows = [[c for c in re.split(r"[\s│┃|]+", line) if c] for line in stdout.splitlines()]
    assert ["base", "-", "2", "1", "1"] in rows  # method, strategy, cells, done, to run
    assert _snapshot(out) == before, "a dry run wrote into OUT"

    code, stdout, err = run_cli(monkeypatch, capsys, "bench", str(larger), "--out", str(out))
    assert code == 0, err
    assert f"2 cells in precision fp32: 1 run now, 1 already done (reused from {out / 'bench.sqlite'}, not run " \
           "again), 0 failed" in stdout
    code, stdout, _ = run_cli(monkeypatch, capsys, "bench", str(larger), "--dry-run", "--out", str(out))
    assert "2 of 2 cells already done (reused), 0 to run" in stdout

    # the run recorded each target's chance level (the report's figures draw it): 2 and 3 choices
    with sqlite3.connect(out / "bench.sqlite") as conn:
        (meta,) = conn.execute("SELECT value FROM meta WHERE key = 'bench'").fetchone()
    assert json.loads(meta)["chance"] == pytest.approx({"parity": 0.5, "colour": 1 / 3})


def test_the_printed_grid_is_the_resolved_config_and_runs_the_same_cells(monkeypatch, capsys, tmp_path, make_grid,
                                                                          write_grid):
    config = write_grid(make_grid())
    code, stdout, err = run_cli(monkeypatch, capsys, "bench", str(config), "--dry-run", "--out",
                                str(tmp_path / "out"))
    assert code == 0, err
    resolved = _resolved_yaml(stdout)
    assert f"{RESOLVED} 'tiny' (precision auto resolves to fp32 here)" in stdout  # as --print-config says it
    assert resolved["precision"] == "auto"
    assert {k: resolved["eval"][k] for k in ("split", "limit", "batch_size")} == {"split": "test", "limit": 8,
                                                                                  "batch_size": 8}
    assert resolved["train"]["max_steps"] == 1 and "learning_rate" in resolved["train"]  # defaults filled in
    assert resolved["library"]["hparams"]["rank"] == 4 and resolved["library"]["build"] is True
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "resolved.yaml").write_text(yaml.safe_dump(resolved), encoding="utf-8")
    assert [c.cell_id for c in expand(load_bench(elsewhere / "resolved.yaml"))] == \
        [c.cell_id for c in expand(load_bench(config))]


def test_dry_run_refuses_what_a_run_would_refuse_and_writes_nothing(monkeypatch, capsys, tmp_path, make_grid,
                                                                    write_grid):
    out = tmp_path / "thesis"
    out.mkdir()
    (out / "chapter1.tex").write_text("mine", encoding="utf-8")
    config = write_grid(make_grid())
    before = _snapshot(tmp_path)
    code, stdout, err = run_cli(monkeypatch, capsys, "bench", str(config), "--dry-run", "--out", str(out))
    assert code == 2 and stdout == "" and err.count("\n") == 1
    assert "is an existing folder that is not a loralab benchmark folder" in err
    assert _snapshot(tmp_path) == before


def test_experts_given_as_task_files_are_the_librarys_names(make_grid, toy_tasks, write_grid, monkeypatch, capsys,
                                                            tmp_path):
    """A fixed pool given by the task files the LoRAs are built from: the same cells as the names."""
    by_name = make_grid(methods=["base", "loramoe"], strategies=[], selection=None, experts=["greater", "oddsum"])
    by_path = make_grid(methods=["base", "loramoe"], strategies=[], selection=None,
                        experts=[toy_tasks["greater"], toy_tasks["oddsum"]])
    assert [c.cell_id for c in expand(bench_from_mapping(by_path))] == \
        [c.cell_id for c in expand(bench_from_mapping(by_name))]
    code, stdout, err = run_cli(monkeypatch, capsys, "bench", str(write_grid(by_path)), "--dry-run", "--out",
                                str(tmp_path / "out"))
    assert code == 0, err
    assert _resolved_yaml(stdout)["experts"] == ["greater", "oddsum"]


def test_an_expert_path_the_library_does_not_hold_is_one_line(make_grid, toy_tasks, write_grid, monkeypatch, capsys,
                                                              tmp_path):
    data = make_grid(methods=["loramoe"], strategies=[], selection=None, experts=[toy_tasks["greater"]],
                     library={"tasks": [toy_tasks["parity"], toy_tasks["colour"], toy_tasks["oddsum"]]})
    code, stdout, err = run_cli(monkeypatch, capsys, "bench", str(write_grid(data)), "--dry-run", "--out",
                                str(tmp_path / "out"))
    assert code == 2 and stdout == "" and err.count("\n") == 1, err
    assert "experts" in err and "is task 'greater', which matches no task of the grid's library tasks" in err


def test_plan_bench_is_the_python_api(make_grid, tmp_path):
    plan = plan_bench(bench_from_mapping(make_grid()), tmp_path / "out")
    assert len(plan.cells) == 22 and plan.done == [] and len(plan.todo) == 22 and not plan.has_database
    assert not (tmp_path / "out").exists()
    assert resolved_config(plan.bench)["targets"] == list(plan.bench.targets)
