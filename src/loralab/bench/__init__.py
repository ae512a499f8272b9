"""The experiment runner: a grid of (model, method, selection strategy or expert pool, k, target task, seed) cells.

    loralab bench                       # the shipped quickstart (configs/quickstart.yaml)
    loralab bench my-grid.yaml --out runs/bench [--executor ray [--address auto]]
    loralab report runs/bench/bench.sqlite
    loralab bench export runs/bench/bench.sqlite runs/bench.jsonl.gz   # compact, for committing; reportable
    loralab bench restore runs/bench.jsonl.gz --out runs/bench         # elsewhere: resume from the export
    loralab compare ...                 # the same runner, its grid built from flags (compare_methods)

    from loralab.bench import run_bench, write_report
    result = run_bench("quickstart", out="bench-quickstart")

Modules: `grid` (config schema), `checks` (validation), `plan` (cells and jobs), `store` (SQLite, one
row per finished cell), `cell` (one job: select, train, evaluate its cells), `executors` (local, Ray),
`driver` (the run), `claims` (pairing cells and testing claims on their per-example outcomes),
`tables`/`findings`/`plots`/`report` (the report, rebuilt from the database or its export alone), `export`
(the compact export and the reader of both), `restore` (a folder rebuilt from an export, to resume),
`compare` (the `loralab compare` front-end and its table).
"""

from loralab.bench.driver import BenchPlan, BenchResult, plan_bench, run_bench, run_grid
from loralab.bench.export import BenchData, export_bench, load_bench_data
from loralab.bench.grid import Bench, BenchConfig, bench_from_mapping, load_bench, resolved_config, shipped_config
from loralab.bench.plan import Cell, expand
from loralab.bench.report import write_report
from loralab.bench.restore import restore_bench
from loralab.bench.store import VOLATILE_COLUMNS, Store

__all__ = ["VOLATILE_COLUMNS", "Bench", "BenchConfig", "BenchData", "BenchPlan", "BenchResult", "Cell", "Store",
           "bench_from_mapping", "expand", "export_bench", "load_bench", "load_bench_data", "plan_bench",
           "resolved_config", "restore_bench", "run_bench", "run_grid", "shipped_config", "write_report"]
