"""The `loralab` command: a thin shell over the Python API (`loralab.recipes`, `.library`, `.selection`, `.bench`).

`app` is the typer app and `main` the console entry point (`loralab = "loralab.cli:main"`). Each module
registers one group of commands on import; `options` declares the flags they share, `command` the
conventions every command follows, `errors` the one-line error contract.
"""

from __future__ import annotations

# Registers the commands, in the order `loralab --help` lists them.
from loralab.cli import catalog, evaluate, library, train, bench, select, configs  # noqa: F401, I001
from loralab.cli.app import app
from loralab.cli.errors import main

__all__ = ["app", "main"]
