"""Compare methods under one protocol (`loralab compare`): a front-end that builds a benchmark grid from its
arguments and runs it with the benchmark runner (the same cells, database and tables as `loralab bench`).

    loralab compare --model smollm2-135m --library runs/lib --experts a,b,c,d \\
        --methods loramoe,xlora,rocket,lora --tasks social_iqa --out runs/compare

Every cell trains with the same hyperparameters (the same budget) and is scored on the same test
examples. The grid is: one model, the methods, the tasks as targets, `--experts` as a fixed expert pool
of the existing library `--library` (used as it is; nothing is trained into it), the seeds. So:

- Single-task mode (the default): one cell per (method, task, seed) trains on that task's train split.
  The target task's own LoRA is left out of the experts (leave-one-out) unless `include_own`. Methods
  that may start from library LoRAs do so, except those named in `from_scratch`; `lora` is the target
  task's own library LoRA (trained, per seed, when the library has none).
- Multi-task mode (`multitask=True`): one model per (method, seed) is trained on all the tasks jointly
  (task ids route task-conditioned methods) and evaluated on each task, so every number in a method's
  row comes from the same model. The target tasks' own LoRAs are left out of the experts unless
  `include_own` (leave-one-out cannot be per task when one model serves all tasks); `lora` is each
  task's own library LoRA, `base` the base model.
- Methods that train nothing, or copy the target's own library LoRA, are evaluated once and that
  result serves every seed.

`out` holds the database (`bench.sqlite`: one row per cell, `loralab report OUT/bench.sqlite` renders
it as a benchmark report), the checkpoints (kept: `checkpoints/<job id>`, each record's `adapter`), and
`results.md` / `results.json` (the method x task table and one record per (method, task, seed)).
Cells are idempotent: a re-run reuses every finished cell (its row), and a job's rows are written in
one transaction once all its evaluations are done, so an interrupted run never leaves half a cell.
`out` must be absent, empty, or a comparison folder loralab wrote: anything else is refused before any
work, so no file of the user's is overwritten.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from loralab.bench.driver import DB_NAME, OutputFolder, run_grid
from loralab.bench.grid import Bench, bench_from_mapping
from loralab.bench.plan import Cell, expand, job_id
from loralab.bench.store import Store, is_bench_database
from loralab.bench.tables import comparison_table
from loralab.data import Task
from loralab.errors import LoralabError
from loralab.training.hparams import LoRAHparams
from loralab.utils.io import atomic_write_json, atomic_write_text, check_output_dir, read_json

logger = logging.getLogger(__name__)

__all__ = ["CompareFailedError", "compare_methods", "write_table"]

OUTPUT_KIND = "compare"
# all a comparison writes (`cells` is the layout of comparisons before the benchmark runner; `report` is
# where `loralab report OUT/bench.sqlite` writes by default)
OUTPUT_NAMES = frozenset({DB_NAME, "checkpoints", "results.md", "results.json", "report", "cells"})
# how the grid's messages name what to change: this front-end's flags
FLAG_NAMES = {"library": "--library", "library_tasks": "--library", "experts": "--experts",
              "include_own": "--include-own"}


class CompareFailedError(LoralabError):
    """Some cells of a comparison failed; the others are in the database, and a re-run retries the failed ones."""


def compare_methods(
    model: str,
    methods: Sequence[str],
    tasks: Sequence[str | Task],
    out: str | os.PathLike[str],
    *,
    library: str | os.PathLike[str] | None = None,
    experts: Sequence[str] | None = None,
    include_own: bool = False,
    from_scratch: Sequence[str] = (),
    hparams: LoRAHparams | None = None,
    eval_limit: int | None = 200,
    split: str = "test",
    data_dir: str | os.PathLike[str] | None = None,
    device: str | None = None,
    seeds: Sequence[int] | None = None,
    multitask: bool = False,
    precision: str = "auto",
) -> list[dict[str, Any]]:
    """Run every cell not yet done; write `results.md` / `results.json`; return the records.

    There is one record per (method, task, seed); `seeds=None` runs once with `hparams.seed`. `precision`
    ("auto", "fp32", "bf16", "fp16") is the benchmark's: resolved once, every cell runs in it, and each
    record names it.
    """
    from loralab.data import load_task
    from loralab.library.store import check_name
    from loralab.moe.registry import get_method

    for method in methods:  # unknown names fail before any work
        get_method(method)
    out_dir = check_output_dir(out, kind=OUTPUT_KIND, what="comparison folder", recognise=is_compare_dir).resolve()
    task_objs = [t if isinstance(t, Task) else load_task(t, data_dir=data_dir) for t in tasks]
    for t in task_objs:  # task names become file names below `out` and in the library
        check_name("task", t.name)
    hp = hparams or LoRAHparams()
    grid = {"name": "compare", "models": [model], "methods": list(methods), "targets": [t.name for t in task_objs],
            "seeds": list(seeds) if seeds is not None else [hp.seed], "train": hp.to_dict(),
            "eval": {"split": split, "limit": eval_limit}, "experts": list(experts or []),
            "include_own": include_own, "from_scratch": list(from_scratch), "multitask": multitask,
            "library": ({"path": str(Path(library).resolve()), "build": False} if library is not None
                        else {"tasks": []}),
            "keep_checkpoints": True, "device": device, "data_dir": os.fspath(data_dir) if data_dir else None,
            "precision": precision}
    bench = bench_from_mapping(grid, where="compare", tasks={t.name: t for t in task_objs}, option_names=FLAG_NAMES)
    result = run_grid(bench, out_dir, output=COMPARE_OUTPUT, report=False)
    with Store(result.db, create=False) as store:
        rows = {r["cell_id"]: r for r in store.rows(volatile=False)}
    records = comparison_records(bench, expand(bench), rows, out_dir)
    write_table(records, out_dir)
    if result.failed:
        first = result.failed[0]
        raise CompareFailedError(f"{len(result.failed)} of {result.cells} cells failed (the others are in "
                                 f"{result.db}; a re-run retries the failed ones); first: {first['label']}: "
                                 f"{first['error']}")
    return records


def comparison_records(bench: Bench, cells: Sequence[Cell], rows: Mapping[str, dict[str, Any]],
                       out_dir: Path) -> list[dict[str, Any]]:
    """One record per (method, task, seed) from the database rows: a seed-free cell's row serves every seed.

    Ordered seed by seed, then task by method (multi-task: method by task), as the table is read.
    """
    from loralab.moe.registry import get_method

    cfg = bench.config
    target_at = {t: i for i, t in enumerate(bench.target_names)}
    method_at = {m: i for i, m in enumerate(cfg.methods)}
    records = []
    for seed in cfg.seeds:
        mine = [c for c in cells if c.seed in (seed, None) and c.cell_id in rows]
        order = (lambda c: (method_at[c.method], target_at[c.target])) if cfg.multitask else \
            (lambda c: (target_at[c.target], method_at[c.method]))
        for cell in sorted(mine, key=order):
            row = rows[cell.cell_id]
            ckpt = out_dir / "checkpoints" / job_id(row["config"])
            trained_on = list(cell.train_targets) if get_method(cell.method).trains else []
            records.append({
                "cell_id": row["cell_id"], "model": row["model"], "method": row["method"], "task": row["target"],
                "seed": seed, "split": row["split"], "n": row["n"], "metrics": row["metrics"],
                "primary_metric": row["primary_metric"], "experts": row["experts"],
                "leave_one_out": not cfg.include_own, "train": row["train"], "multitask": cfg.multitask,
                "train_tasks": trained_on, "adapter": str(ckpt) if ckpt.is_dir() else None,
                "versions": row["versions"], "git_hash": row["git_hash"],
                "precision": cell.protocol.get("precision", "fp32"),
            })
    return records


def write_table(records: Sequence[dict[str, Any]], out: str | os.PathLike[str]) -> str:
    """Write `results.md` (the table) and `results.json` (every record) into `out`; return the table."""
    from loralab.moe.registry import all_methods

    out = Path(out)
    text = comparison_table(records)
    if any(r.get("multitask") for r in records):
        specs = {m: all_methods().get(m) for m in sorted({r["method"] for r in records})}
        refs = [f"`{m}` is each task's own library LoRA" for m, s in specs.items() if s and s.uses_own_lora]
        refs += [f"`{m}` the base model" for m, s in specs.items() if s and not s.trains]
        text += ("Multi-task: one model per method (and seed) trained on all tasks jointly"
                 + (f"; {', '.join(refs)}" if refs else "") + ".\n")
    atomic_write_text(out / "results.md", text)
    atomic_write_json(out / "results.json", list(records))
    return text


def is_compare_dir(folder: Path) -> bool:
    """A comparison folder without a marker: only the names it writes, and a database, results or cells of its format."""
    names = {p.name for p in folder.iterdir() if not p.name.startswith(".")}
    if not names or not names <= OUTPUT_NAMES:
        return False
    if is_bench_database(folder / DB_NAME):
        return True
    candidates = [folder / "results.json", *sorted((folder / "cells").glob("*.json"))[:1]]
    for path in candidates:
        if path.is_file():
            data = read_json(path, what="comparison result")
            records = data if isinstance(data, list) else [data]
            return bool(records) and all(isinstance(r, dict) and "method" in r and "primary_metric" in r
                                         for r in records)
    return False


COMPARE_OUTPUT = OutputFolder(OUTPUT_KIND, "comparison folder", "loralab compare", is_compare_dir)
