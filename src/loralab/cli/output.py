"""Where the CLI writes: results to stdout, status lines and errors to stderr (status lines muted by -q)."""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console

# Wide when piped (rich would fold tables to 80 columns), the terminal's width otherwise.
stdout = Console(width=None if sys.stdout.isatty() else 200)
stderr = Console(stderr=True, width=None if sys.stderr.isatty() else 200)

_quiet = False


def set_quiet(quiet: bool) -> None:
    """-q/--quiet: drop the status lines (`wrote ...`); results and errors are still printed."""
    global _quiet
    _quiet = quiet


def show(*objects: Any, **kwargs: Any) -> None:
    """A result (table, report text) on stdout: what a script pipes on."""
    stdout.print(*objects, **kwargs)


def note(text: str) -> None:
    """A status line on stderr (`wrote FILE`), printed as typed (no rich markup); muted by -q."""
    if not _quiet:
        stderr.print(text, markup=False, highlight=False)
