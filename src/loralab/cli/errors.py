"""The console entry point and its error contract: a user mistake is one `error: ...` line and exit code 2.

Library code names the Python parameter an error is about (`limit must be >= 1, got 0`, with
`param="limit"` on the `UserInputError`); the command that called it rewrites that word to the flag the
user typed (`--limit`, or the old spelling `--eval-limit` when that was used): `flag_message`.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping, Sequence

from loralab.errors import LoralabError, UserInputError


def usage(message: str, *params: str) -> UserInputError:
    """A bad-input error raised by a command; `params` are the Python names in `message` to spell as flags."""
    return UserInputError(message, param=params)


def flag_message(message: str, params: Sequence[str], flags: Mapping[str, str]) -> str:
    """`message` with the first mention of each parameter in `params` written as its flag in `flags`.

    Only whole words count (`out` in `out '/tmp/out'` is the first one, not the path's), and a word
    already written as a flag (`--out`) or a dotted config key (`library.path`) is left alone.
    """
    for name in params:
        flag = flags.get(name)
        if flag is None:
            continue
        match = re.search(rf"(?<![\w.-]){re.escape(name)}(?![\w-])", message)
        if match is not None:
            message = message[:match.start()] + flag + message[match.end():]
    return message


def main() -> None:
    """Console entry point: user mistakes become one line on stderr and a non-zero exit, never a traceback."""
    import typer

    from loralab.cli import app  # the package, so every command module has registered its commands

    try:
        code = app(standalone_mode=False)
    except LoralabError as exc:
        print_error(str(exc))
        sys.exit(exc.exit_code)
    except typer.Exit as exc:  # typer versions that raise it even without standalone mode
        sys.exit(exc.exit_code)
    except typer.Abort:
        from loralab.cli.output import stderr

        stderr.print("aborted")
        sys.exit(130)
    except KeyboardInterrupt:
        _interrupted()
    except Exception as exc:  # click usage errors (missing option, bad value, unknown command)
        if not is_click_error(exc):
            raise
        if type(exc).__name__ == "NoArgsIsHelpError":
            exc.show()  # `loralab` alone: the help text
            sys.exit(exc.exit_code)
        ctx = getattr(exc, "ctx", None)
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        print_error(exc.format_message() + hint)
        sys.exit(exc.exit_code)
    # Without standalone mode click returns an explicit exit (`typer.Exit(1)`, Ctrl-C as 130) instead of exiting.
    if isinstance(code, int) and not isinstance(code, bool) and code != 0:
        if code == 130:
            _interrupted()
        sys.exit(code)


def _interrupted() -> None:
    from loralab.cli.output import stderr

    stderr.print("interrupted")
    sys.exit(130)


def print_error(message: str) -> None:
    """One line on stderr: `error: ...` (newlines folded, rich markup in the message shown as typed)."""
    from rich.markup import escape

    from loralab.cli.output import stderr

    stderr.print(f"[red]error:[/red] {escape(' '.join(message.split()))}", highlight=False, soft_wrap=True)


def is_click_error(exc: BaseException) -> bool:
    """A click usage error, from click itself or from the copy of click that newer typer versions vendor."""
    classes: list[type] = []
    try:
        from typer.exceptions import TyperException

        classes.append(TyperException)
    except ImportError:
        pass
    try:
        import click

        classes.append(click.exceptions.ClickException)
    except ImportError:
        pass
    return isinstance(exc, tuple(classes)) and hasattr(exc, "format_message") and hasattr(exc, "exit_code")
