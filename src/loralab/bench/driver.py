"""The driver: check the grid, build what is missing, run the jobs whose cells are not yet in the database,
write the report. The one runner behind `loralab bench` (`run_bench`) and `loralab compare`
(`compare_methods` builds a grid and calls `run_grid` with its own kind of output folder).

    from loralab.bench import run_bench
    result = run_bench("quickstart", out="bench-quickstart")      # or a YAML path, or None (quickstart)
    print(result.report)                                           # OUT/report/report.md

Idempotent: the database keeps one row per finished cell, keyed by the hash of the cell's config, so a
re-run (after a kill, a crash, or with cells added to the grid) runs exactly the cells that have no
row and reuses the others (`BenchResult.skipped`). Everything a config can get wrong fails before the
output folder is created. `plan_bench` (`loralab bench --dry-run`) does every check a run does and
counts the cells done and to run, writing nothing.

The output folder must be absent, empty, or a benchmark folder loralab wrote (resuming is the point of
re-running), and a library path from the config must be absent, empty or a LoRA library: anything else
is refused before any work, so no file of the user's is overwritten or mixed with results.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loralab.bench.cell import RunContext
from loralab.bench.executors import make_executor
from loralab.bench.grid import Bench, load_bench
from loralab.bench.plan import Cell, Job, expand, jobs
from loralab.bench.store import Store, is_bench_database
from loralab.errors import ConfigError, UserInputError
from loralab.utils.io import check_output_dir, mark_output

logger = logging.getLogger(__name__)

DB_NAME = "bench.sqlite"
OUTPUT_KIND = "bench"
LOCK_NAME = ".bench.lock"
OUTPUT_NAMES = frozenset({DB_NAME, "report", "library", "checkpoints", "selections"})  # all a run writes


def is_bench_dir(folder: Path) -> bool:
    """A benchmark folder without a marker: it holds a loralab bench database, or a run's lock and its names only.

    (The lock alone is what a run that has just started shows; it is refused later by the lock, not here.)
    """
    if is_bench_database(folder / DB_NAME):
        return True
    visible = {p.name for p in folder.iterdir() if not p.name.startswith(".")}
    return (folder / LOCK_NAME).is_file() and visible <= OUTPUT_NAMES - {DB_NAME}


@dataclass(frozen=True)
class OutputFolder:
    """The kind of folder a run writes into: its marker kind, how messages name it and the command, and how a
    folder of this kind from before output markers is recognised."""

    kind: str
    what: str
    command: str
    recognise: Callable[[Path], bool]


BENCH_OUTPUT = OutputFolder(OUTPUT_KIND, "benchmark folder", "loralab bench", is_bench_dir)


@dataclass
class BenchResult:
    """What a run did: the database, the report files, and the cells it ran, skipped or lost."""

    db: Path
    report: Path | None
    cells: int
    ran: int
    skipped: int
    failed: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class BenchPlan:
    """What running the grid into `out` would do now (`plan_bench`, `loralab bench --dry-run`): its cells, those
    already done in OUT's database (`done`: reused, not run again) and those a run would run (`todo`)."""

    bench: Bench
    out: Path
    db: Path
    cells: list[Cell]
    done: list[Cell]
    todo: list[Cell]
    has_database: bool  # False: no database in OUT yet (every cell is to run)


def run_bench(config: str | os.PathLike[str] | Bench | None = None, out: str | os.PathLike[str] | None = None, *,
              executor: str = "local", address: str | None = None, report: bool = True) -> BenchResult:
    """Run every cell of the grid that is not done yet; return where the database and report are."""
    bench = config if isinstance(config, Bench) else load_bench(config)
    return run_grid(bench, default_out(bench, out), executor=executor, address=address, report=report)


def default_out(bench: Bench, out: str | os.PathLike[str] | None) -> Path:
    """The output folder, absolute: `out`, else ./bench-NAME."""
    return Path(out if out is not None else f"bench-{bench.config.name}").resolve()


def plan_bench(config: str | os.PathLike[str] | Bench | None = None, out: str | os.PathLike[str] | None = None, *,
               output: OutputFolder = BENCH_OUTPUT) -> BenchPlan:
    """Check the grid and the output folder as a run would, and count its cells done and to run; write nothing.

    OUT's database, if there is one, is opened read-only. Whatever a run would refuse before any work (an
    output folder of someone else's files, a library trained with other hyperparameters) is refused here too.
    """
    bench = config if isinstance(config, Bench) else load_bench(config)
    out_dir = default_out(bench, out)
    cells = expand(bench)
    _check_outputs(bench, out_dir, output, report=True)
    db = out_dir / DB_NAME
    has_database = is_bench_database(db)
    done_ids: set[str] = set()
    if has_database:
        with Store(db, create=False) as store:
            done_ids = store.done_ids()
    done = [c for c in cells if c.cell_id in done_ids]
    todo = [c for c in cells if c.cell_id not in done_ids]
    return BenchPlan(bench=bench, out=out_dir, db=db, cells=cells, done=done, todo=todo, has_database=has_database)


def _check_outputs(bench: Bench, out_dir: Path, output: OutputFolder, *, report: bool) -> Path:
    """Every folder a run writes may be written (see `check_bench_out`); return the library folder."""
    library = Path(bench.library.path).resolve() if bench.library.path else out_dir / "library"
    check_bench_out(out_dir, library, report=report, output=output, builds=bench.library.build)
    if bench.library.build:
        check_existing_library(bench, library)
    return library


def run_grid(bench: Bench, out_dir: Path, *, output: OutputFolder = BENCH_OUTPUT, executor: str = "local",
             address: str | None = None, report: bool = True) -> BenchResult:
    """Run the checked grid's missing cells into `out_dir` (absolute), a folder of kind `output`."""
    cells = expand(bench)
    library = _check_outputs(bench, out_dir, output, report=report)
    runner = make_executor(executor, address=address, resources=bench.resources)  # before anything is written
    try:
        with _exclusive(out_dir, output), Store(out_dir / DB_NAME) as store:
            # `chance`: each target's chance level on the evaluated examples, for the report's figures
            store.set_meta("bench", {"name": bench.config.name, "config": bench.config.to_dict(),
                                     "plan": [c.cell_id for c in cells], "seeds": list(bench.config.seeds),
                                     "chance": dict(bench.chance)})
            done = store.done_ids()
            todo = [c for c in cells if c.cell_id not in done]
            logger.info("%s: %d cells, %d already done, %d to run (%s executor)", bench.config.name, len(cells),
                        len(cells) - len(todo), len(todo), runner.name)
            failed: list[dict[str, Any]] = []
            if todo:
                ctx = _context(bench, out_dir, library, runner.name)
                if bench.library.build:
                    runner.build_libraries(list(dict.fromkeys(c.model for c in todo)), ctx)
                runner.run(jobs(todo), ctx, on_result=lambda job, rows: _store(store, job, rows),
                           on_failure=lambda job, error: _fail(store, bench, job, error, failed))
            path = None
            if report:
                from loralab.bench.report import write_report

                path = write_report(store, out_dir / "report")
    finally:
        runner.close()
    return BenchResult(db=out_dir / DB_NAME, report=path, cells=len(cells), ran=len(todo) - len(failed),
                       skipped=len(cells) - len(todo), failed=failed)


def check_bench_out(out_dir: Path, library: Path, *, report: bool = True, output: OutputFolder = BENCH_OUTPUT,
                    builds: bool = True) -> None:
    """Every folder the run writes is new, empty or loralab's own of the same kind (checked before any work).

    An existing library used as it is (`builds=False`) is only read, so it is not checked as an output.
    """
    from loralab.bench.report import check_report_out
    from loralab.library.build import check_library_out

    check_output_dir(out_dir, kind=output.kind, what=output.what, recognise=output.recognise)
    if builds:
        check_library_out(library, option="library.path" if not library.is_relative_to(out_dir) else "--out library")
    if report:
        check_report_out(out_dir / "report", option="--out report")


@contextlib.contextmanager
def _exclusive(out_dir: Path, output: OutputFolder) -> Iterator[None]:
    """One driver per output folder: two would run the same cells twice. The OS drops the lock if we are killed."""
    mark_output(out_dir, output.kind)  # creates it; a second driver then passes the output check and meets the lock
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    with open(out_dir / LOCK_NAME, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserInputError(f"another `{output.command}` is running on {out_dir}; wait for it or use another "
                                 "--out") from None
        yield


def _context(bench: Bench, out_dir: Path, library: Path, executor: str) -> RunContext:
    """Absolute paths only: Ray workers do not share the driver's working directory."""
    data_dir = bench.data_dir or os.environ.get("LORALAB_DATA_DIR")
    specs = {name: str(Path(spec).resolve()) if isinstance(spec, str) and Path(spec).exists() else spec
             for name, spec in bench.task_specs.items()}
    return RunContext(out=str(out_dir), library=str(library), bench=bench.config.name, task_specs=specs,
                      library_names=bench.library_names, library_hparams=bench.library_hparams.to_dict(),
                      library_eval_limit=bench.library.eval_limit,
                      data_dir=str(Path(data_dir).resolve()) if data_dir else None, device=bench.config.device,
                      eval_batch_size=bench.evaluation.batch_size, keep_checkpoints=bench.config.keep_checkpoints,
                      executor=executor,
                      library_precision=bench.library_precision.name if bench.library_precision else "fp32")


def _store(store: Store, job: Job, rows: list[dict[str, Any]]) -> None:
    store.put_many(rows)  # the job's rows and their per-example outcomes, in one transaction
    for cell, row in zip(job, rows, strict=True):
        logger.info("cell %s done: %s = %.4f (%s)", cell.cell_id, row["primary_metric"], row["score"], cell.label)


def _fail(store: Store, bench: Bench, job: Job, error: str, failed: list[dict[str, Any]]) -> None:
    for cell in job:  # every cell of the job lacks its row
        store.put_failure(cell.cell_id, bench.config.name, cell.config, error)
        failed.append({"cell_id": cell.cell_id, "label": cell.label, "error": error})


def check_existing_library(bench: Bench, library: Path) -> None:
    """An existing library must hold the pool's LoRAs with the config's hyperparameters, or the protocol lies."""
    from loralab.library import Library, LoRAHparams, model_slug

    if not library.is_dir():
        return
    wanted = {k: v for k, v in bench.library_hparams.to_dict().items() if k not in LoRAHparams.LOGGING_FIELDS}
    wanted["precision"] = bench.library_precision.name if bench.library_precision else "fp32"
    lib = Library(library)
    for model in bench.config.models:
        for entry in lib.entries(model_slug(model)):
            if entry.task not in bench.library_names or entry.origin != "trained":
                continue
            have = {**entry.hparams, "precision": entry.precision_name()}
            diff = sorted(k for k in wanted if have.get(k) != wanted[k])
            if diff:
                shown = ", ".join(f"{k}={have.get(k)!r} (config: {wanted[k]!r})" for k in diff[:4])
                key = "precision" if diff == ["precision"] else "library.hparams"
                raise ConfigError(f"library {library} holds {entry.task!r} for {model} trained with other "
                                  f"hyperparameters: {shown}; set {key} to match, or use another path")
