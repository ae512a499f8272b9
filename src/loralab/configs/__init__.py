"""The configs shipped with loralab (`src/loralab/configs/*.yaml`): benchmark grids and training presets.

    from loralab.configs import copy_config, list_configs

    for c in list_configs():
        print(c.name, c.kind, c.description)
    copy_config("quickstart", "my-grid.yaml")      # then edit it and run `loralab bench my-grid.yaml`

`loralab configs ls / show NAME / cp NAME DEST` is the command line of the same functions. A config's
kind says what takes it: a benchmark grid (`loralab bench NAME` or a copy of it), or training
hyperparameters (a `--hparams` file). Its description is the first comment line of the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

from loralab.errors import UnknownNameError, UserInputError
from loralab.utils.io import atomic_write_text, check_output_path

__all__ = ["KINDS", "ShippedConfig", "config_path", "config_text", "copy_config", "list_configs"]

Kind = Literal["bench", "hparams"]
# each kind in words, and what takes it (`configs ls` shows both)
KINDS: dict[str, tuple[str, str]] = {"bench": ("benchmark grid", "loralab bench NAME (or a copy of it)"),
                                     "hparams": ("training hyperparameters", "--hparams FILE (a copy of it)")}
# every shipped YAML file with its kind (the test of the package data checks that the two agree)
SHIPPED: dict[str, Kind] = {"quickstart": "bench", "loralib": "bench", "library-cpu": "hparams"}


@dataclass(frozen=True)
class ShippedConfig:
    """One shipped config: its name (the file name without `.yaml`), kind, one-line description and path."""

    name: str
    kind: Kind
    description: str
    path: Path


def config_path(name: str) -> Path:
    """The file of the shipped config `name`; an unknown name is one line with a did-you-mean."""
    if name not in SHIPPED:
        raise UnknownNameError("shipped config", name, SHIPPED)
    return Path(str(resources.files("loralab.configs").joinpath(f"{name}.yaml")))


def config_text(name: str) -> str:
    """The shipped config's YAML as it is written, comments included."""
    return config_path(name).read_text(encoding="utf-8")


def list_configs(kind: Kind | None = None) -> list[ShippedConfig]:
    """The shipped configs (of one `kind`, if given), by kind then name."""
    found = [ShippedConfig(name, k, _description(config_path(name)), config_path(name))
             for name, k in SHIPPED.items() if kind is None or k == kind]
    return sorted(found, key=lambda c: (c.kind, c.name))


def copy_config(name: str, dest: str | os.PathLike[str], *, force: bool = False) -> Path:
    """Copy the shipped config `name` to `dest` (a file, or an existing folder: `dest/NAME.yaml`), atomically.

    An existing file is replaced only with `force` (the copy is for editing: it may hold your changes).
    Returns the path written.
    """
    source = config_path(name)
    target = Path(dest)
    if target.is_dir():
        target = target / source.name
    check_output_path(target, kind="file", option="dest")
    if target.exists() and not force:
        raise UserInputError(f"dest {str(target)!r} exists; pass force to replace it", param=("dest", "force"))
    atomic_write_text(target, source.read_text(encoding="utf-8"))
    return target


def _description(path: Path) -> str:
    """The first comment line of a config file (without `#`), or '' when it starts with none."""
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        return stripped.lstrip("#").strip() if stripped.startswith("#") else ""
    return ""
