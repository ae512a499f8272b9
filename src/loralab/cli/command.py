"""The class of every `loralab` command: global options after the verb, hidden old spellings, flag names in errors.

* `--threads N`, `-v/--verbose` and `-q/--quiet` are the app's options (`loralab --threads 1 eval ...`);
  a command also takes them after its name (`loralab eval ... --threads 1`), so where they go is not
  something to remember.
* `aliases` maps an old spelling to the current flag (`--eval-limit` -> `--limit`): it still works for
  one release but is not listed in `--help`, so each concept has one spelling there.
* A `UserInputError` from library code names Python parameters (`limit must be >= 1`); the command
  spells them as the flags the user typed (`--limit`, or `--eval-limit` when the old spelling was used).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from typer.core import TyperCommand

from loralab.cli.errors import flag_message
from loralab.errors import UserInputError

GLOBAL_FLAGS = {"-v": "verbose", "--verbose": "verbose", "-q": "quiet", "--quiet": "quiet"}
THREADS = "--threads"
_GLOBALS_KEY = "loralab.globals"  # in click's ctx.meta, which every context of one invocation shares
_SPELLED_KEY = "loralab.spelled"


@dataclass(frozen=True)
class GlobalOptions:
    """The app-wide options, from before the verb (the app's callback) merged with those after it."""

    threads: int | None = None
    verbose: bool = False
    quiet: bool = False


def configure(ctx: Any, options: GlobalOptions) -> None:
    """Apply `options` (torch threads, log level, what the libraries print, muted status lines) and remember them
    for this invocation."""
    from loralab.cli import noise
    from loralab.cli.output import set_quiet

    if options.threads is not None:
        if options.threads < 1:
            raise UserInputError(f"{THREADS} must be >= 1, got {options.threads}")
        import torch

        torch.set_num_threads(options.threads)
    if options.verbose and options.quiet:
        raise UserInputError("-v/--verbose and -q/--quiet exclude each other; give one")
    # -q: errors only (a warning is not the result); the command's final line is not a log record
    level = logging.DEBUG if options.verbose else logging.ERROR if options.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger().setLevel(level)  # basicConfig leaves an already configured root logger's level alone
    for noisy in ("httpx", "urllib3", "filelock", "datasets"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
    noise.apply("verbose" if options.verbose else "quiet" if options.quiet else "normal")
    set_quiet(options.quiet)
    ctx.meta[_GLOBALS_KEY] = options


class LoralabCommand(TyperCommand):
    """A typer command with the conventions above; `command_class(aliases)` gives one with old spellings."""

    aliases: ClassVar[Mapping[str, str]] = {}  # old spelling -> current flag
    renames: ClassVar[Mapping[str, str]] = {}  # library parameter -> this command's parameter, where they differ

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        spellings = {opt for p in self.params for opt in (*p.opts, *p.secondary_opts)}
        # Programming errors in a command's declaration, caught by the tests that build every command.
        clash = spellings & ({*GLOBAL_FLAGS, THREADS} | set(self.aliases))
        if clash:
            raise RuntimeError(f"command {self.name!r} declares {sorted(clash)}, a global option or hidden alias")
        unknown = set(self.aliases.values()) - spellings
        if unknown:
            raise RuntimeError(f"command {self.name!r}: aliases point at undeclared flags {sorted(unknown)}")
        self._takes_value = {opt for p in self.params if p.param_type_name == "option"
                             and not getattr(p, "is_flag", False) and not getattr(p, "count", False)
                             for opt in p.opts}
        self._param_of = {opt: p.name for p in self.params for opt in p.opts}  # primary spellings only

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        args, found, spelled = self._normalise(list(args))
        ctx.meta[_SPELLED_KEY] = spelled
        if found:
            before = ctx.meta.get(_GLOBALS_KEY, GlobalOptions())
            configure(ctx, replace(before, threads=found.get("threads", before.threads),
                                   verbose=before.verbose or found.get("verbose", False),
                                   quiet=before.quiet or found.get("quiet", False)))
        return super().parse_args(ctx, args)

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except UserInputError as exc:
            if exc.params:
                exc.args = (flag_message(str(exc), exc.params, self.flag_names(ctx)),)
            raise

    def flag_names(self, ctx: Any) -> dict[str, str]:
        """Python parameter name -> the flag as the user spelled it (the current spelling if not given)."""
        spelled = ctx.meta.get(_SPELLED_KEY, {})
        names = {}
        for p in self.params:
            if p.param_type_name == "option" and p.name:
                long = [opt for opt in p.opts if opt.startswith("--")] or list(p.opts)
                names[p.name] = spelled.get(p.name, long[0])
        names.update({lib: names[mine] for lib, mine in self.renames.items() if mine in names})
        return names

    def _normalise(self, args: list[str]) -> tuple[list[str], dict[str, Any], dict[str, str]]:
        """Old spellings rewritten, global options taken out; an option's value is never mistaken for one."""
        kept: list[str] = []
        found: dict[str, Any] = {}
        spelled: dict[str, str] = {}
        i = 0
        while i < len(args):
            token = args[i]
            if token == "--":  # everything after it is an argument
                kept.extend(args[i:])
                break
            name, eq, value = token.partition("=") if token.startswith("--") else (token, "", "")
            if name in self.aliases:
                current = self.aliases[name]
                if current in self._param_of:
                    spelled[self._param_of[current]] = name
                name, token = current, current + eq + value
            if name in GLOBAL_FLAGS and not eq:
                found[GLOBAL_FLAGS[name]] = True
                i += 1
                continue
            if name == THREADS:
                if not eq:
                    if i + 1 >= len(args):
                        raise UserInputError(f"{THREADS} needs a value (a number of CPU threads >= 1)")
                    value = args[i + 1]
                    i += 1
                found["threads"] = _threads(value)
                i += 1
                continue
            kept.append(token)
            if name in self._takes_value and not eq and i + 1 < len(args):
                kept.append(args[i + 1])  # the option's value, whatever it looks like
                i += 1
            i += 1
        return kept, found, spelled


def _threads(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise UserInputError(f"{THREADS} must be an integer >= 1, got {value!r}") from None


def command_class(aliases: Mapping[str, str] | None = None,
                  renames: Mapping[str, str] | None = None) -> type[LoralabCommand]:
    """The command class for one command, with its hidden old spellings and library parameter names."""
    if not aliases and not renames:
        return LoralabCommand
    return type("LoralabCommand", (LoralabCommand,), {"aliases": dict(aliases or {}), "renames": dict(renames or {})})
