"""Error types. Everything a user can get wrong raises a `UserInputError` subclass.

The CLI turns a `LoralabError` into a one-line message on stderr and exits with `exit_code`
(2 for bad input, as argparse and typer do for usage errors); anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence


class LoralabError(Exception):
    """Base class for errors that loralab reports to the user without a traceback."""

    exit_code: int = 1


class UserInputError(LoralabError, ValueError):
    """Bad input from the user: a file, a name, an option value.

    `param` names the Python parameter(s) the message is about, spelled in the message as in Python
    (`UserInputError("limit must be >= 1, got 0", param="limit")`); the CLI rewrites those words to
    the flags the user typed (`--limit`), so one message serves both the API and the command line.
    """

    exit_code = 2

    def __init__(self, *args: object, param: str | Sequence[str] | None = None) -> None:
        super().__init__(*args)
        self.params: tuple[str, ...] = (param,) if isinstance(param, str) else tuple(param or ())


class TaskFormatError(UserInputError):
    """A task file (BIG-bench JSON, JSONL, CSV) or dataset that does not fit the unified format."""


class UnknownNameError(UserInputError):
    """A name (task, model alias, metric, ...) that is not registered."""

    def __init__(self, kind: str, name: str, available: Iterable[str]) -> None:
        available = sorted(available)
        close = difflib.get_close_matches(name, available, n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        shown = ", ".join(available[:12]) + (", ..." if len(available) > 12 else "")
        super().__init__(f"unknown {kind} {name!r}.{hint} Available: {shown}")
        self.name = name
        self.suggestions = close


class ConfigError(UserInputError):
    """A configuration value that is missing, of the wrong type, or impossible."""


class ModelLoadError(UserInputError):
    """A model that cannot be found or loaded as asked."""


class DataUnavailableError(LoralabError):
    """Task data that is not on disk and cannot be downloaded (for example offline)."""

    exit_code = 1


class EmptySplitError(UserInputError):
    """A split with no examples (or a --limit of zero)."""


class AdapterError(UserInputError):
    """An adapter directory that is missing files, unsafe to load, or does not fit the base model."""


class ResumeError(UserInputError):
    """Resuming was asked for (`--resume`) but there is nothing to resume: no checkpoint, or checkpoints trained
    with other settings (kept as they are)."""


class TaskRoutingError(UserInputError):
    """A task-conditioned method got a batch without task ids and has no default task (an unseen task)."""


class NonFiniteScoreError(UserInputError):
    """The model scored a continuation as NaN or infinite: broken weights (or a dtype that overflows), not a result."""


class TrainingDivergedError(LoralabError):
    """Training produced a NaN or infinite loss (or weights); nothing from the diverged run was saved.

    Not bad input in itself (the same settings can train on other data), so the exit code is 1.
    """

    exit_code = 1


class MissingExtraError(UserInputError):
    """An optional feature whose package is not installed; the message names the extra that installs it
    (`pip install 'loralab[ray]'`). Exit code 2: the command cannot run as asked, and nothing was done."""


class HubError(LoralabError):
    """The Hugging Face hub refused an upload or could not be reached (login, permissions, network).

    Not bad input in the sense of a malformed file or flag (the same command works once logged in or online),
    so the exit code is 1.
    """

    exit_code = 1
