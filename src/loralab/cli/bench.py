"""Comparisons and benchmarks: `compare` (method x task table), `bench` (a grid from YAML; `bench export`, its
compact export; `bench restore`, a folder rebuilt from one), `report` (from its database or export)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table
from typer.core import TyperGroup

from loralab.cli.app import app, examples, verb
from loralab.cli.errors import usage
from loralab.cli.options import (BenchPrecision, DataDir, Device, Experts, Hparams, IncludeOwn, Library, MaxSteps,
                                 Model, Precision, PrintConfig, Seeds, Split, names, out_option, overrides_argument)
from loralab.cli.output import done, note, show, stderr


@verb(app, "compare", aliases={"--eval-limit": "--limit", "--no-include-own": "--exclude-own"},
      renames={"eval_limit": "limit"},
      example="loralab compare --model smollm2-135m --methods base,lora,loramoe --tasks navigate --library runs/lib "
              "--experts winowhy,social_iqa --limit 100 --out runs/compare")
def compare_cmd(
    model: Model,
    methods: Annotated[str, typer.Option(help="Comma-separated methods (loralab methods ls).")],
    tasks: Annotated[str, typer.Option("--tasks", help="Comma-separated target tasks.")],
    out: Annotated[Path, out_option("Output folder (cells, checkpoints, results.md).")],
    overrides: Annotated[Optional[list[str]], overrides_argument(
        "Keys (or train.KEY) set the training hyperparameters of every cell: rank=4 max_steps=20.")] = None,
    library: Library = None,
    experts: Experts = None,
    include_own: IncludeOwn = False,
    from_scratch: Annotated[Optional[str], typer.Option(help="Methods that could start from library LoRAs but "
                                                        "should train from scratch (comma-separated).")] = None,
    hparams: Hparams = None,
    max_steps: MaxSteps = None,
    limit: Annotated[int, typer.Option("--limit", help="Evaluate on the first N examples of the split.")] = 200,
    split: Split = "test",
    device: Device = None,
    precision: Precision = "auto",
    data_dir: DataDir = None,
    seeds: Seeds = None,
    multitask: Annotated[bool, typer.Option("--multitask/--no-multitask", help="Train one model per method on all "
                                            "--tasks jointly and evaluate it on each task (base: the base model; "
                                            "lora: each task's own library LoRA).")] = False,
    print_config: PrintConfig = False,
) -> None:
    """Train and evaluate every (method, task) cell under one protocol; print the method x task table."""
    from loralab.bench.compare import compare_methods
    from loralab.cli.configs import HPARAMS_SECTIONS, full_hparams, print_yaml
    from loralab.library import load_hparams
    from loralab.utils.config import parse_overrides, route_overrides

    if limit < 1:
        raise usage(f"limit must be >= 1, got {limit}", "limit")
    seed_list = None
    if seeds is not None:
        try:
            seed_list = [int(s) for s in names(seeds)]
        except ValueError:
            raise usage(f"seeds must be comma-separated integers like 0,1,2, got {seeds!r}", "seeds") from None
        if not seed_list:
            raise usage("seeds must name at least one seed", "seeds")
    routed = route_overrides(parse_overrides(overrides), HPARAMS_SECTIONS, default="hparams")
    hp = load_hparams(hparams, overrides=routed["hparams"], max_steps=max_steps)
    if print_config:
        print_yaml(full_hparams(hp), "loralab compare: the training hyperparameters of every cell (a --hparams file)")
        return
    compare_methods(model, names(methods), names(tasks), out, library=library, experts=names(experts) or None,
                    include_own=include_own, from_scratch=names(from_scratch), hparams=hp, eval_limit=limit,
                    split=split, data_dir=data_dir, device=device, seeds=seed_list, multitask=multitask,
                    precision=precision)
    show((out / "results.md").read_text(encoding="utf-8"), markup=False)
    note(f"wrote {out / 'results.md'}")


class _BenchGroup(TyperGroup):
    """`loralab bench [CONFIG] [options]` is `loralab bench run ...` (the run is the verb's usual meaning);
    a first word naming a subcommand (`export`) goes to it."""

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        if not args or args[0] not in self.commands:
            args = ["run", *args]
        return super().parse_args(ctx, args)


bench_app = typer.Typer(
    cls=_BenchGroup, rich_markup_mode=None,
    help="Run a benchmark grid (`loralab bench [CONFIG]`), export its database (`loralab bench export`), or "
         "rebuild a folder from an export to resume there (`loralab bench restore`).",
    epilog=examples("loralab bench quickstart --dry-run",
                    "loralab bench export bench-quickstart/bench.sqlite quickstart.jsonl.gz"))
app.add_typer(bench_app, name="bench")


@verb(bench_app, "run", example=("loralab bench", "loralab bench quickstart --dry-run",
                                 "loralab bench quickstart train.max_steps=5 eval.limit=8 seeds=[0] --print-config",
                                 "loralab bench my-grid.yaml --out runs/bench --executor ray --address auto",
                                 "loralab bench export bench-quickstart/bench.sqlite quickstart.jsonl.gz"))
def bench_cmd(
    config: Annotated[Optional[str], typer.Argument(help="Benchmark YAML, or a shipped config: quickstart "
                                                    "(the default), loralib (loralab configs ls).")] = None,
    overrides: Annotated[Optional[list[str]], overrides_argument(
        "Keys are the grid's: seeds=[0] train.max_steps=5 eval.limit=8 library.hparams.rank=4 (without CONFIG, "
        "they apply to the quickstart).")] = None,
    out: Annotated[Optional[Path], out_option("Output folder: database, report, library, selections (default: "
                                              "./bench-NAME).")] = None,
    executor: Annotated[str, typer.Option(help="local (one cell at a time in this process) or ray.")] = "local",
    address: Annotated[Optional[str], typer.Option(help="ray: cluster to join (auto, ray://host:10001); "
                                                   "default: start a local one.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Check the config and OUT as a run would; print the "
                                                            "cells (done in OUT's database, to run) and the "
                                                            "resolved grid as YAML; run and write nothing.")] = False,
    precision: BenchPrecision = None,
    print_config: PrintConfig = False,
) -> None:
    """Run a benchmark grid (models x methods x strategies x k x targets x seeds); cells already done are reused.

    `loralab bench export DB OUT.jsonl.gz` writes a database's compact export instead (see its --help)."""
    from loralab.bench import load_bench, run_bench
    from loralab.bench.grid import resolved_config
    from loralab.cli.configs import print_yaml
    from loralab.utils.config import looks_like_override

    extra = list(overrides or [])
    if config is not None and looks_like_override(config) and not _is_file(config):
        config, extra = None, [config, *extra]  # `loralab bench seeds=[0]`: the quickstart with an override
    bench = load_bench(config, precision=precision, overrides=extra)
    if print_config:
        print_yaml(resolved_config(bench), f"loralab bench: the resolved grid {bench.config.name!r} (precision "
                                           f"{bench.config.precision} resolves to {bench.precision_name} here)")
        return
    if dry_run:
        _dry_run(bench, out)
        return
    result = run_bench(bench, out, executor=executor, address=address)
    show(f"{result.cells} cells in precision {bench.precision_name}: {result.ran} run now, {result.skipped} already "
         f"done (reused from {result.db}, not run again), {len(result.failed)} failed")
    for failure in result.failed:  # not a status line: -q keeps it
        stderr.print(f"failed: {failure['label']}: {failure['error']}", markup=False)
    show(f"report: {result.report} (and report.html, PNG figures beside it)\ndatabase: {result.db}")
    if result.failed:
        raise typer.Exit(1)


def _is_file(text: str) -> bool:
    try:
        return Path(text).is_file()
    except (OSError, ValueError):  # a name too long for the file system, a NUL byte: not a file
        return False


DRY_RUN_GRID = "loralab bench --dry-run: the resolved grid"  # the comment line before the dry run's YAML


def _dry_run(bench, out: Optional[Path]) -> None:
    """What `loralab bench` would do: the cells per method and strategy, done and to run, and the resolved grid."""
    from loralab.bench import plan_bench, resolved_config
    from loralab.cli.configs import print_yaml

    plan = plan_bench(bench, out)
    total = Counter((c.method, c.strategy or "-") for c in plan.cells)
    reused = Counter((c.method, c.strategy or "-") for c in plan.done)
    # a line of its own, not the table's title: rich would wrap a title to the narrow table's width
    show(f"{bench.config.name}: {len(plan.cells)} cells, precision {bench.precision_name} (requested "
         f"{bench.config.precision})", markup=False)
    table = Table()
    for col in ("method", "strategy", "cells", "done", "to run"):
        table.add_column(col, justify="left" if col in ("method", "strategy") else "right")
    for key, n in total.items():
        table.add_row(*key, str(n), str(reused[key]), str(n - reused[key]))
    show(table)
    if plan.has_database:
        show(f"{plan.db}: {len(plan.done)} of {len(plan.cells)} cells already done (reused), {len(plan.todo)} to "
             "run", markup=False, soft_wrap=True)
    else:
        show(f"{plan.db}: no database yet; all {len(plan.cells)} cells to run", markup=False, soft_wrap=True)
    print_yaml(resolved_config(bench), f"{DRY_RUN_GRID} {bench.config.name!r} (precision {bench.config.precision} "
                                       f"resolves to {bench.precision_name} here); saved as a file, `loralab bench "
                                       "FILE` runs these same cells")


@verb(bench_app, "export", example="loralab bench export bench-quickstart/bench.sqlite quickstart.jsonl.gz")
def export_cmd(
    db: Annotated[Path, typer.Argument(help="Benchmark database (OUT/bench.sqlite of `loralab bench`).")],
    out: Annotated[Path, typer.Argument(help="Export file: NAME.jsonl.gz (or NAME.jsonl, uncompressed).")],
) -> None:
    """Write a database's compact export: config, plan, every cell's row and per-example outcomes, no adapters.

    The same database always gives the same bytes, and `loralab report OUT` rebuilds the same report."""
    from loralab.bench import export_bench

    done(f"wrote {export_bench(db, out)}")


@verb(bench_app, "restore", example="loralab bench restore results/more.jsonl.gz --out runs/more")
def restore_cmd(
    export: Annotated[Path, typer.Argument(help="Export file of `loralab bench export` (NAME.jsonl.gz or .jsonl).")],
    out: Annotated[Path, out_option("Benchmark folder to create (absent or empty); `loralab bench GRID --out OUT` "
                                    "then runs only the cells the export does not have.")],
) -> None:
    """Rebuild a benchmark folder's database from its export, to resume the run on another machine.

    Rows, per-example outcomes, failures and the config are restored; adapters and checkpoints are not in an
    export. The new database is read back and compared with the export before it is put in place."""
    from loralab.bench.restore import restore_bench

    done(f"wrote {restore_bench(export, out)}")


@verb(app, "report", example=("loralab report bench-quickstart/bench.sqlite --out bench-quickstart/report",
                              "loralab report quickstart.jsonl.gz --out report"))
def report_cmd(
    db: Annotated[Path, typer.Argument(help="Benchmark database (OUT/bench.sqlite of `loralab bench`) or its "
                                            "export (`loralab bench export`).")],
    out: Annotated[Optional[Path], out_option("Report folder (default: report/ beside DB).")] = None,
) -> None:
    """Rebuild a benchmark's report (Markdown, HTML, PNG) from its database, or its export, alone."""
    from loralab.bench import write_report

    path = write_report(db, out)
    show(f"report: {path} (and report.html, PNG figures beside it)")
