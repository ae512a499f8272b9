"""Every `loralab ...` command line in the README parses against the real CLI: the command exists and
every flag it uses is one the command takes (old spellings included, as aliases). Running them all would
need SmolLM2 libraries and hours; parsing is what goes stale when flags are renamed."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer

from loralab.cli import app

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_command_lines() -> list[str]:
    """`loralab ...` lines from the README's bash blocks, backslash continuations joined, comments dropped."""
    text = README.read_text(encoding="utf-8")
    lines: list[str] = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.split("  #", 1)[0].strip()
            # `[--flag x]` marks an optional part: check its flags too; a line ending in `...` abbreviates one above
            line = line.replace("[", "").replace("]", "")
            if line.startswith("loralab ") and not line.endswith("..."):
                lines.append(line)
    return lines


def resolve(args: list[str]):
    """Walk groups down to the leaf command and parse its arguments (no callback runs).

    typer ships its own click, so groups are recognised by `resolve_command`, not by click's classes."""
    command = typer.main.get_command(app)
    ctx = command.make_context("loralab", list(args), resilient_parsing=True)
    while hasattr(command, "resolve_command"):
        rest = [*getattr(ctx, "_protected_args", []), *ctx.args]
        name, sub, rest = command.resolve_command(ctx, rest)
        command = sub
        ctx = sub.make_context(name, rest, parent=ctx, resilient_parsing=False)
    return command, ctx


COMMANDS = readme_command_lines()


def test_the_readme_has_commands():
    assert len(COMMANDS) >= 15  # the CLI table is not in a bash block; the worked examples are


@pytest.mark.parametrize("line", COMMANDS)
def test_readme_command_parses(line):
    args = shlex.split(line)[1:]
    args = [re.sub(r"^(\w+)\|.*", r"\1", a) for a in args]  # `random|ppl|...` placeholders: the first choice
    command, ctx = resolve(args)
    assert command is not None and not ctx.args, f"{line}: unparsed {ctx.args}"
