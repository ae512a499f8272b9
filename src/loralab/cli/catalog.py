"""What there is: `version`, `tasks ls/show`, `models ls`, `methods ls`."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.table import Table

from loralab.cli.app import app, methods_app, models_app, tasks_app, verb
from loralab.cli.errors import usage
from loralab.cli.options import DataDir, NumFewshot, Split
from loralab.cli.output import show, stdout


@verb(app, "version", example="loralab version")
def version() -> None:
    """Print the loralab version (as `loralab --version` does)."""
    from loralab import __version__

    show(__version__)


@verb(tasks_app, "ls", example="loralab tasks ls --domain math")
def tasks_ls(domain: Annotated[Optional[str], typer.Option(help="Only tasks of this domain tag.")] = None) -> None:
    """List the suite: name, domain tag, source and a one-line description."""
    from loralab.data.suite import DOMAINS, SUITE, suite_names

    if domain is not None and domain not in DOMAINS:
        raise usage(f"domain must be one of {', '.join(DOMAINS)}, got {domain!r}", "domain")
    table = Table(title=f"loralab suite ({len(suite_names(domain))} tasks)")
    for col in ("task", "domain", "source", "description"):
        table.add_column(col)
    for name in suite_names(domain):
        t = SUITE[name]
        table.add_row(name, t.domain, f"{t.source}:{t.path}", t.description)
    show(table)


@verb(tasks_app, "show", example="loralab tasks show social_iqa -n 2 --num-fewshot 1", renames={"limit": "n"})
def tasks_show(
    name: Annotated[str, typer.Argument(help="Suite name, BIG-bench task.json/dir, .jsonl, .csv or task .yaml.")],
    n: Annotated[int, typer.Option("-n", help="How many examples to print.")] = 3,
    split: Split = "test",
    num_fewshot: NumFewshot = 0,
    data_dir: DataDir = None,
) -> None:
    """Print a task's description, split sizes and a few rendered examples (the exact scored strings)."""
    from loralab.data import load_task

    task = load_task(name, data_dir=data_dir)
    examples = task.split(split, n)
    sizes = task.split_sizes()
    show(f"[bold]{task.name}[/bold] ({task.kind}, metric {task.metric}, domain {task.domain})")
    show(f"{task.description}\nsource: {task.source}\nsplit sizes: {sizes}\n")
    for ex in examples:
        stdout.rule(f"example {ex.id}")
        show(repr(task.prompt(ex, task.fewshot_examples(ex, num_fewshot))), markup=False)
        if ex.choices:
            for i, c in enumerate(ex.choices):
                show(f"  {'*' if i in ex.answers else ' '} [{i}] {c!r}", markup=False)
        else:
            show(f"  targets: {list(ex.targets)!r}", markup=False)


@verb(models_app, "ls", example="loralab models ls")
def models_ls() -> None:
    """List model aliases (a hub id or a local directory works too)."""
    from loralab.models import model_aliases

    table = Table(title="model aliases")
    table.add_column("alias")
    table.add_column("description")
    for alias, desc in model_aliases().items():
        table.add_row(alias, desc)
    show(table)


@verb(methods_app, "ls", example="loralab methods ls")
def methods_ls() -> None:
    """List the registered methods, one line each."""
    from loralab.moe.registry import all_methods

    table = Table(title="methods")
    for col in ("method", "library LoRAs", "mergeable", "faithful", "description"):
        table.add_column(col)
    for name, spec in all_methods().items():
        table.add_row(name, spec.library, "yes" if spec.mergeable else "no", "yes" if spec.faithful else "see docs",
                      spec.description)
    show(table)
