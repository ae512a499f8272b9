"""LoRA libraries: `library build` (one LoRA per task, shared hyperparameters), `library ls`, `library add`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from loralab.cli.app import library_app, verb
from loralab.cli.errors import usage
from loralab.cli.options import (AllowBaseMismatch, AllowPickle, BaseModel, DataDir, Device, EvalLimit, Hparams,
                                 Model, Precision, PrintConfig, ReportTo, Resume, Split, Task, Tasks,
                                 checked_report_to, names, out_option, overrides_argument)
from loralab.cli.output import done, note_tracking, show

EVAL_ALIASES = {"--eval-limit": "--limit", "--eval-split": "--split"}  # the spellings before 0.1.1


@verb(library_app, "build", aliases={"--config": "--hparams", **EVAL_ALIASES},
      example=("loralab library build --model smollm2-135m --tasks navigate,winowhy --out runs/lib "
               "--hparams configs/library-cpu.yaml",
               "loralab library build --model tiny-llama --tasks navigate --out runs/lib rank=4 max_steps=20 "
               "--print-config"))
def library_build(
    model: Model,
    tasks: Tasks,
    out: Annotated[Path, out_option("Library folder (created if missing; finished adapters are skipped).")],
    overrides: Annotated[Optional[list[str]], overrides_argument(
        "Keys (or train.KEY) set the shared training hyperparameters: rank=4 max_steps=20.")] = None,
    hparams: Hparams = None,
    max_steps: Annotated[Optional[int], typer.Option(help="Override max_steps for every adapter.")] = None,
    report_to: ReportTo = None,
    limit: EvalLimit = 200,
    split: Split = "test",
    resume: Resume = None,
    device: Device = None,
    precision: Precision = "auto",
    data_dir: DataDir = None,
    print_config: PrintConfig = False,
) -> None:
    """Train one LoRA per task with one shared set of hyperparameters, into a PEFT-format library.

    Re-running continues a build: finished adapters are skipped, and an adapter interrupted mid-training
    continues from its last checkpoint (checkpoint_steps) when it was trained with the same settings."""
    from loralab.cli.configs import HPARAMS_SECTIONS, full_hparams, print_yaml
    from loralab.library import build_library, load_hparams
    from loralab.utils.config import parse_overrides, route_overrides

    task_names = names(tasks)
    if not task_names:
        raise usage("tasks must name at least one task", "tasks")
    if limit < 0:
        raise usage(f"limit must be >= 0, got {limit}", "limit")
    routed = route_overrides(parse_overrides(overrides), HPARAMS_SECTIONS, default="hparams")
    hp = load_hparams(hparams, overrides=routed["hparams"], max_steps=max_steps,
                      report_to=checked_report_to(report_to))
    if print_config:
        print_yaml(full_hparams(hp), "loralab library build: the shared training hyperparameters (a --hparams file)")
        return
    entries = build_library(model, task_names, out, hparams=hp, eval_split=split, eval_limit=limit,
                            data_dir=data_dir, device=device, precision=precision, resume=resume)
    print_library(entries, f"library {out}")
    for entry in entries:  # where each adapter's events are (an adapter skipped as built keeps its record)
        note_tracking(entry.metrics.get("tracking"), entry.path)


@verb(library_app, "ls", example="loralab library ls runs/lib --model smollm2-135m")
def library_ls(
    library: Annotated[Path, typer.Argument(help="Library folder.")],
    model: Annotated[Optional[str], typer.Option(help="Only adapters of this model.")] = None,
) -> None:
    """Show the library as a table: task, domain, model, precision, rank, steps, base vs adapter score, time."""
    from loralab.library import Library, model_slug

    if not library.is_dir():
        raise usage(f"library folder does not exist: {library}")
    entries = Library(library).entries(model_slug(model) if model else None)
    print_library(entries, f"library {library} ({len(entries)} adapters)")


@verb(library_app, "add", aliases=EVAL_ALIASES,
      example="loralab library add runs/lib --adapter my-lora/ --task navigate --limit 50")
def library_add(
    library: Annotated[Path, typer.Argument(help="Library folder.")],
    adapter: Annotated[Path, typer.Option(help="PEFT LoRA directory to import.")],
    task: Task,
    model: BaseModel = None,
    allow_pickle: AllowPickle = False,
    allow_base_mismatch: AllowBaseMismatch = False,
    limit: EvalLimit = 0,
    split: Split = "test",
    device: Device = None,
    precision: Precision = "auto",
    data_dir: DataDir = None,
) -> None:
    """Import an existing PEFT LoRA after checking that it fits the base model (modules, shapes, rank)."""
    from loralab.library import import_adapter

    if limit < 0:
        raise usage(f"limit must be >= 0, got {limit}", "limit")
    entry = import_adapter(library, adapter, task, model=model, allow_pickle=allow_pickle,
                           allow_base_mismatch=allow_base_mismatch, eval_split=split, eval_limit=limit,
                           data_dir=data_dir, device=device, precision=precision)
    evaluated = _precision(entry)  # an imported adapter's: the precision of its evaluation, if it had one
    done(f"added {entry.task} ({entry.model}) to {library}" + (f", evaluated in {evaluated}" if evaluated else ""))


def print_library(entries: Sequence, title: str) -> None:
    """The library table: one row per adapter, with the base and adapter scores of its evaluation, the precision
    it was trained (and evaluated) in, so a library's precision is visible where its scores are, and the time it
    took (training and evaluation)."""
    numeric = ("rank", "steps", "train loss", "base", "adapter", "delta", "time")
    table = Table(title=title)
    for col in ("task", "domain", "model", "origin", "precision", *numeric[:3], "metric", *numeric[3:]):
        table.add_column(col, justify="right" if col in numeric else "left")
    for e in entries:
        ev = e.metrics.get("eval", {})
        metric = ev.get("metric", "")
        base, ada = ev.get("base", {}).get(metric), ev.get("adapter", {}).get(metric)
        delta = f"{ada - base:+.3f}" if base is not None and ada is not None else ""
        table.add_row(e.task, e.domain, e.model, e.origin, _precision(e), str(e.hparams.get("rank", "")),
                      str(e.metrics.get("train_steps", "")), _fmt(e.metrics.get("train_loss")),
                      f"{metric} ({ev.get('split', '')}, n={ev.get('n', '')})" if metric else "", _fmt(base),
                      _fmt(ada), delta, f"{e.seconds:.0f} s" if e.seconds is not None else "")
    show(table)


def _precision(entry) -> str:
    """A trained entry's precision (older entries: fp32, see `precision_name`); an imported one's: its evaluation's."""
    if entry.origin == "trained":
        return entry.precision_name()
    evaluated = entry.metrics.get("eval", {}).get("precision")
    return evaluated["name"] if isinstance(evaluated, dict) and "name" in evaluated else ""


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"
