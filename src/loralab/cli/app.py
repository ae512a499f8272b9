"""The `loralab` app, its command groups, the app-wide options and `verb`, the decorator every command uses."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import typer

from loralab.cli.command import GlobalOptions, command_class, configure
from loralab.cli.options import Quiet, Threads, Verbose, Version

F = TypeVar("F", bound=Callable[..., Any])

GLOBAL_NOTE = "Global options --threads N, -v/--verbose and -q/--quiet go before or after the command."


def _group(help: str, example: str) -> typer.Typer:
    # Plain click help (no rich panels): rich labels every flag `<bool>` and re-wraps the example blocks.
    return typer.Typer(help=help, epilog=examples(example), no_args_is_help=True, rich_markup_mode=None)


def examples(*lines: str) -> str:
    r"""An epilog with the command lines as typed (`\b` stops click from re-wrapping them) and the global note."""
    block = "\n".join(f"  {line}" for line in lines)
    return f"Example:\n\n\b\n{block}\n\n{GLOBAL_NOTE}"


app = typer.Typer(help="loralab: multi-task LoRA libraries, LoRA-MoE methods and one evaluation protocol.",
                  epilog=examples("loralab bench quickstart --dry-run", "loralab --threads 1 eval --model tiny-llama "
                                  "--task social_iqa --limit 20"),
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False, rich_markup_mode=None)
tasks_app = _group("The standard task suite.", "loralab tasks ls --domain math")
data_app = _group("Export task data in the unified format.", "loralab data export social_iqa --out social_iqa.jsonl")
models_app = _group("Model aliases.", "loralab models ls")
library_app = _group("LoRA libraries: one adapter per (model, task).", "loralab library ls runs/lib")
methods_app = _group("LoRA-MoE methods and baselines.", "loralab methods ls")
app.add_typer(methods_app, name="methods")
app.add_typer(tasks_app, name="tasks")
app.add_typer(library_app, name="library")
app.add_typer(data_app, name="data")
app.add_typer(models_app, name="models")


@app.callback()
def _main(ctx: typer.Context, verbose: Verbose = False, quiet: Quiet = False, threads: Threads = None,
          version: Version = False) -> None:
    configure(ctx, GlobalOptions(threads=threads, verbose=verbose, quiet=quiet))


def verb(group: typer.Typer, name: str, *, example: str | tuple[str, ...], aliases: Mapping[str, str] | None = None,
         renames: Mapping[str, str] | None = None) -> Callable[[F], F]:
    """Register a command: its help ends with `example` (required, so no command goes without one);
    `aliases` are old flag spellings kept working, unlisted (old -> current); `renames` maps a library
    parameter named in errors to this command's parameter where the two differ (`limit` -> `n`)."""
    lines = (example,) if isinstance(example, str) else example
    return group.command(name, cls=command_class(aliases, renames), epilog=examples(*lines))
