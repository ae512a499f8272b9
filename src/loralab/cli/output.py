"""Where the CLI writes: results to stdout; status lines, a writing command's final line and errors to stderr.

-q mutes the status lines (`note`: `wrote FILE` after a table) but keeps the final line of a command whose
result is what it wrote (`done`: `trained ...; wrote DIR`), so `-q` leaves errors and the result.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.console import Console

# Wide when piped (rich would fold tables to 80 columns), the terminal's width otherwise.
stdout = Console(width=None if sys.stdout.isatty() else 200)
stderr = Console(stderr=True, width=None if sys.stderr.isatty() else 200)

_quiet = False


def set_quiet(quiet: bool) -> None:
    """-q/--quiet: drop the status lines (`wrote ...`); results, final lines and errors are still printed."""
    global _quiet
    _quiet = quiet


def show(*objects: Any, **kwargs: Any) -> None:
    """A result (table, report text) on stdout: what a script pipes on."""
    stdout.print(*objects, **kwargs)


def note(text: str) -> None:
    """A status line on stderr (`wrote FILE`), printed as typed (no rich markup); muted by -q."""
    if not _quiet:
        stderr.print(text, markup=False, highlight=False)


def done(text: str) -> None:
    """The final line of a command whose result is a file or folder it wrote (`trained ...; wrote DIR`), on stderr
    like the status lines but kept by -q: it is the command's result. At most one per command."""
    stderr.print(text, markup=False, highlight=False)


def note_tracking(tracking: Mapping[str, Any] | None, out: Path) -> None:
    """A status line saying where a training run reported (`tracking_record`) and where its TensorBoard events are."""
    if not tracking:
        return
    where = tracking.get("logging_dir")
    kept = f"; TensorBoard events in {Path(out) / where}" if where else ""  # an absolute `where` stays as it is
    note(f"reported to {', '.join(tracking.get('report_to') or [])}{kept}")
