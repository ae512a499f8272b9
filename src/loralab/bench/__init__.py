"""The benchmark runner: a grid of (model, method, selection strategy, k, target task, seed) cells.

    loralab bench                       # the shipped quickstart (configs/quickstart.yaml)
    loralab bench my-grid.yaml --out runs/bench [--executor ray [--address auto]]
    loralab report runs/bench/bench.sqlite

    from loralab.bench import run_bench, write_report
    result = run_bench("quickstart", out="bench-quickstart")

Modules: `grid` (config and expansion), `checks` (validation), `store` (SQLite, one row per finished
cell), `run` (one cell), `executors` (local, Ray), `runner` (the driver), `tables`/`findings`/`plots`/
`report` (the report, rebuilt from the database alone).
"""

from loralab.bench.grid import Bench, BenchConfig, Cell, bench_from_mapping, expand, load_bench, shipped_config
from loralab.bench.report import write_report
from loralab.bench.runner import BenchResult, run_bench
from loralab.bench.store import VOLATILE_COLUMNS, Store

__all__ = ["VOLATILE_COLUMNS", "Bench", "BenchConfig", "BenchResult", "Cell", "Store", "bench_from_mapping", "expand",
           "load_bench", "run_bench", "shipped_config", "write_report"]
