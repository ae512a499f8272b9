"""Real tiny grids (tiny-llama, toy JSONL tasks, 1 training step): run, report, kill and resume, Ray.

The reference is one uninterrupted local run. Every other way of running the same grid (the CLI, a
run killed with SIGKILL and resumed, a Ray cluster) must end with the same database rows, timing and
host columns excepted, and a resumed run must not recompute any cell that had finished.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import run_cli

from loralab.bench import Store, bench_from_mapping, executors, expand, run_bench


def _rows(db: Path) -> list[dict]:
    with Store(db, create=False) as store:
        return store.rows(volatile=False)


@pytest.fixture(scope="module")
def reference(make_grid, tmp_path_factory):
    """One uninterrupted local run of the 22-cell grid: (bench, result)."""
    bench = bench_from_mapping(make_grid())
    result = run_bench(bench, tmp_path_factory.mktemp("reference"))
    return bench, result


def test_run_writes_one_row_per_cell_and_a_report(reference):
    bench, result = reference
    rows = _rows(result.db)
    assert result.cells == result.ran == len(rows) == len(expand(bench)) == 22 and not result.failed
    for row in rows:
        assert row["score"] == row["metrics"]["acc"] and row["n"] == 8 and row["versions"]["torch"]
        if row["strategy"]:
            assert len(row["experts"]) == 2 and row["target"] not in row["experts"]  # own LoRA left out
            assert row["own_lora"] == "excluded" and row["selection"]["chosen"][0]["rank"] == 1
    manual = {r["target"]: r["experts"] for r in rows if r["strategy"] == "manual"}
    assert manual["parity"] == ["greater", "oddsum"] and manual["colour"][0] == "greater"  # the relevance map
    md = result.report.read_text()
    table = md.split("### Method x selection strategy")[1].split("###")[0]
    for method in ("base", "more", "loramoe"):
        assert re.search(rf"^\| {method} \|.*\d\.\d{{3}}", table, re.MULTILINE), method
    per_strategy = md.split("### Selection strategy x method")[1].split("###")[0]
    for strategy in ("random", "ppl", "manual", "embedding"):
        assert re.search(rf"^\| {strategy} \| .*\d\.\d{{3}}", per_strategy, re.MULTILINE), strategy
    claims = md.split("### Claims")[1].split("## Results")[0]  # the default family, tested on the outcomes
    for claim in ("more-vs-base", "loramoe-vs-base", "manual-vs-ppl", "manual-vs-random", "embedding-vs-ppl",
                  "embedding-vs-random", "ppl-vs-random"):
        assert re.search(rf"^\| {claim} \| (headline|secondary) \| .* \| (supported|contradicted|inconclusive) \|",
                         claims, re.MULTILINE), claim
    assert "6 headline claim(s) tested together; 1 secondary" in claims and "not testable" not in claims
    with Store(result.db, create=False) as store:
        outcomes = store.outcomes()
    assert all(len(outcomes[r["cell_id"]]) == r["n"] == 8 for r in rows)
    ppl = [r["selection"]["chosen"] for r in rows if r["strategy"] == "ppl"]
    assert all(c[0]["score"] <= c[1]["score"] for c in ppl)  # lowest perplexity first
    assert not any((result.db.parent / "checkpoints").iterdir())  # keep_checkpoints: false


def test_cli_rerun_skips_everything_and_fresh_cli_run_matches(reference, monkeypatch, capsys, tmp_path, make_grid,
                                                             write_grid):
    _, result = reference
    calls = []
    monkeypatch.setattr(executors, "run_job", lambda job, ctx: calls.append(job) or pytest.fail("recomputed"))
    config = str(write_grid(make_grid()))
    code, stdout, _ = run_cli(monkeypatch, capsys, "bench", config, "--out", str(result.db.parent))
    assert code == 0 and calls == [] and "0 run now, 22 already done" in stdout and "report:" in stdout
    monkeypatch.undo()
    code, stdout, _ = run_cli(monkeypatch, capsys, "bench", str(write_grid(make_grid())), "--out", str(tmp_path / "b"))
    assert code == 0 and "22 run now" in stdout
    assert _rows(tmp_path / "b" / "bench.sqlite") == _rows(result.db)


KILLED_RUN = """
import importlib, sys, time
from pathlib import Path
import torch
# the CPU the parent's conftest presents (no native bf16), so `auto` resolves as it does for the reference run
torch.cpu._is_avx512_bf16_supported = lambda: False
torch.cpu._is_amx_tile_supported = lambda: False
module, name, at = importlib.import_module(sys.argv[4]), sys.argv[5], int(sys.argv[6])
real, calls = getattr(module, name), []
def then_hang(*args, **kwargs):
    result = real(*args, **kwargs)
    calls.append(1)
    if len(calls) == at:             # that call has finished (its files are written): the run is killed here
        Path(sys.argv[3]).touch()
        time.sleep(600)
    return result
setattr(module, name, then_hang)
from loralab.bench import load_bench, run_bench
run_bench(load_bench(sys.argv[1]), sys.argv[2])
"""

# (module, function, n): SIGKILL right after the n-th call of the function returned
KILL_POINTS = {
    "library-built-2-of-4": ("loralab.library.build", "_build_one", 2),
    "cell-1-trained": ("loralab.recipes.train", "train_method", 1),
    "cell-4-trained": ("loralab.recipes.train", "train_method", 4),
    "cell-6-evaluated": ("loralab.recipes.evaluate", "run_eval", 6),
}


@pytest.mark.parametrize("point", sorted(KILL_POINTS))
def test_killed_run_resumes_without_recomputing(reference, monkeypatch, tmp_path, make_grid, write_grid, point):
    bench, result = reference
    out, marker = tmp_path / "killed", tmp_path / "hanging"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    module, name, at = KILL_POINTS[point]
    proc = subprocess.Popen([sys.executable, "-c", KILLED_RUN, str(write_grid(make_grid())), str(out), str(marker),
                             module, name, str(at)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        while not marker.exists():
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, f"the run never reached {point}"
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    db = out / "bench.sqlite"
    finished = {r["cell_id"] for r in _rows(db)} if db.exists() else set()
    if name == "train_method":  # the killed cell trained and saved its checkpoint, but wrote no row
        assert len(list((out / "checkpoints").iterdir())) == 1
    if name == "_build_one":
        assert not finished

    calls = []
    real = executors.run_job
    monkeypatch.setattr(executors, "run_job",
                        lambda job, ctx: calls.extend(c.cell_id for c in job) or real(job, ctx))
    resumed = run_bench(bench_from_mapping(make_grid()), out)
    total = len(expand(bench))
    assert resumed.skipped == len(finished) and resumed.ran == total - len(finished) and not resumed.failed
    assert not set(calls) & finished and set(calls) | finished == {c.cell_id for c in expand(bench)}
    assert _rows(db) == _rows(result.db)  # the same database as the uninterrupted run


def test_failed_cell_is_recorded_the_rest_runs_and_a_rerun_retries(monkeypatch, tmp_path, make_grid):
    real = executors.run_job

    def flaky(job, ctx):
        if job[0].target == "colour":
            raise RuntimeError("simulated out of memory")
        return real(job, ctx)

    monkeypatch.setattr(executors, "run_job", flaky)
    bench = bench_from_mapping(make_grid(methods=["base"], seeds=[0]))
    first = run_bench(bench, tmp_path)
    assert first.ran == 1 and [f["error"] for f in first.failed] == ["RuntimeError: simulated out of memory"]
    assert "## Failed cells" in first.report.read_text() and "simulated out of memory" in first.report.read_text()
    monkeypatch.setattr(executors, "run_job", real)
    second = run_bench(bench, tmp_path)
    assert second.ran == 1 and second.skipped == 1 and not second.failed
    with Store(second.db, create=False) as store:
        assert store.failures() == [] and len(store.rows()) == 2


def test_ray_executor_gives_the_same_database(reference, tmp_path):
    ray = pytest.importorskip("ray")
    bench, result = reference
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        ray_run = run_bench(bench, tmp_path / "ray", executor="ray")
    finally:
        ray.shutdown()
    assert ray_run.ran == 22 and not ray_run.failed
    with Store(ray_run.db, create=False) as store:
        assert {r["executor"] for r in store.rows()} == {"ray"}
    assert _rows(ray_run.db) == _rows(result.db)
