"""Rich progress bars on stderr, so stdout stays clean for results."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

_console = Console(stderr=True)
_enabled = True  # process-wide: `loralab -q` turns every bar off


def enable_progress_bars(enabled: bool) -> None:
    """Turn loralab's progress bars on or off for the whole process (the CLI's -q turns them off)."""
    global _enabled
    _enabled = enabled


def progress_bars_enabled() -> bool:
    """Whether a bar may be shown at all: enabled for the process and stderr a terminal."""
    return _enabled and sys.stderr.isatty()


@contextlib.contextmanager
def progress_bar(total: int, description: str, enabled: bool = True) -> Iterator[Callable[[int], None]]:
    """Yield `advance(n)`; shows a bar when enabled (here and for the process) and stderr is a terminal."""
    if not enabled or not progress_bars_enabled():
        yield lambda n=1: None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn())
    with Progress(*columns, console=_console, transient=False) as progress:
        task_id = progress.add_task(description, total=total)
        yield lambda n=1: progress.advance(task_id, n)
