"""The experiment runner: a grid of (model, method, selection strategy or expert pool, k, target task, seed) cells.

    loralab bench                       # the shipped quickstart (configs/quickstart.yaml)
    loralab bench my-grid.yaml --out runs/bench [--executor ray [--address auto]]
    loralab report runs/bench/bench.sqlite
    loralab compare ...                 # the same runner, its grid built from flags (compare_methods)

    from loralab.bench import run_bench, write_report
    result = run_bench("quickstart", out="bench-quickstart")

Modules: `grid` (config schema), `checks` (validation), `plan` (cells and jobs), `store` (SQLite, one
row per finished cell), `cell` (one job: select, train, evaluate its cells), `executors` (local, Ray),
`driver` (the run), `tables`/`findings`/`plots`/`report` (the report, rebuilt from the database alone),
`compare` (the `loralab compare` front-end and its method x task table).
"""

from loralab.bench.driver import BenchResult, run_bench, run_grid
from loralab.bench.grid import Bench, BenchConfig, bench_from_mapping, load_bench, shipped_config
from loralab.bench.plan import Cell, expand
from loralab.bench.report import write_report
from loralab.bench.store import VOLATILE_COLUMNS, Store

__all__ = ["VOLATILE_COLUMNS", "Bench", "BenchConfig", "BenchResult", "Cell", "Store", "bench_from_mapping", "expand",
           "load_bench", "run_bench", "run_grid", "shipped_config", "write_report"]
