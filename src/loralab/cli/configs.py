"""Configs: `configs ls / show / cp` (the shipped grids and presets), and what the commands that take a config
share: their `KEY=VALUE` overrides (`loralab.utils.config`) and `--print-config`.

Which keys an override addresses, per command (one grammar, `loralab.utils.config.parse_override`):

- `train`: bare keys (or `train.KEY`) the training hyperparameters, `method.KEY` the method's settings;
- `library build`, `compare`: bare keys (or `train.KEY`) the shared training hyperparameters;
- `bench`: the grid's own keys (`seeds=[0]`, `train.max_steps=5`, `eval.limit=8`).

`train.KEY` is the grid's name of the hyperparameters section, so a line copied from `loralab bench` works on
the commands that train.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from loralab.cli.app import app, examples, verb
from loralab.cli.output import note, show

# what the KEY=VALUE overrides of each command address (prefix -> destination; bare keys: the default)
TRAIN_SECTIONS = {"train": "hparams", "method": "method"}
HPARAMS_SECTIONS = {"train": "hparams"}

configs_app = typer.Typer(help="The configs shipped with loralab: benchmark grids and training presets.",
                          epilog=examples("loralab configs ls", "loralab configs cp quickstart my-grid.yaml"),
                          no_args_is_help=True, rich_markup_mode=None)
app.add_typer(configs_app, name="configs")


@verb(configs_app, "ls", example="loralab configs ls")
def configs_ls() -> None:
    """List the shipped configs: name, kind, what takes it, description."""
    from loralab.configs import KINDS, list_configs

    table = Table(title="shipped configs (loralab configs cp NAME DEST to edit one)")
    for col in ("name", "kind", "used by", "description"):
        table.add_column(col)
    for config in list_configs():
        table.add_row(config.name, *KINDS[config.kind], config.description)
    show(table)


@verb(configs_app, "show", example="loralab configs show quickstart")
def configs_show(name: Annotated[str, typer.Argument(help="Shipped config name (loralab configs ls).")]) -> None:
    """Print a shipped config's YAML as it is written, comments included."""
    from loralab.configs import config_text

    show(config_text(name), markup=False, highlight=False, soft_wrap=True, emoji=False, end="")


@verb(configs_app, "cp", example=("loralab configs cp quickstart my-grid.yaml",
                                  "loralab configs cp library-cpu configs/ --force"))
def configs_cp(
    name: Annotated[str, typer.Argument(help="Shipped config name (loralab configs ls).")],
    dest: Annotated[Path, typer.Argument(help="File to write, or an existing folder (then DEST/NAME.yaml).")],
    force: Annotated[bool, typer.Option("--force", help="Replace DEST if it exists.")] = False,
) -> None:
    """Copy a shipped config to edit (written atomically; an existing file only with --force)."""
    from loralab.configs import copy_config

    note(f"wrote {copy_config(name, dest, force=force)}")


# ------------------------------------------------------------------------------------------ shared by the commands


def method_settings(spec: Any, method_config: Optional[Path], overrides: list) -> dict[str, Any]:
    """A method's settings: its --method-config file (checked, so an error names the file), then the method.KEY
    overrides (checked with the file's values; errors name the overrides)."""
    from loralab.utils.config import OVERRIDES_WHERE, apply_overrides, read_yaml_mapping

    settings = read_yaml_mapping(method_config) if method_config is not None else {}
    if method_config is not None:  # train_method only sees a mapping: checked here so an error names the file
        spec.config_cls.from_dict(settings, where=str(method_config))
    if overrides:
        settings = apply_overrides(settings, overrides)
        spec.config_cls.from_dict(settings, where=OVERRIDES_WHERE, at=("method",))
    return settings


def full_hparams(hp: Any) -> dict[str, Any]:
    """Every hyperparameter with its value (`to_dict` leaves the validation settings out while validation is off)."""
    return dataclasses.asdict(hp)


def print_yaml(data: dict[str, Any], header: str) -> None:
    """`--print-config`: the resolved config on stdout as YAML, lines unwrapped (rich would fold long ones)."""
    from loralab.utils.config import to_yaml

    show(to_yaml(data, header=header), markup=False, highlight=False, soft_wrap=True, emoji=False, end="")
