"""Base class of method configs: a dataclass with YAML/JSON round trips and one-line validation errors."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

from loralab.errors import ConfigError
from loralab.utils.config import from_mapping

C = TypeVar("C", bound="MethodConfig")


@dataclasses.dataclass
class MethodConfig:
    """Subclasses add their fields (with the paper's defaults) and validate in `__post_init__`."""

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls: type[C], data: Mapping[str, Any] | None, *, where: str | None = None,
                  at: tuple[str, ...] = ()) -> C:
        """Checked against the schema built from the subclass's type hints (unknown keys, types, nulls), then
        its `__post_init__`; `where` names the file (default: the class), `at` the section inside it."""
        return from_mapping(cls, {} if data is None else data, where=where or cls.__name__, at=at)

    def replace(self: C, **changes: Any) -> C:
        return dataclasses.replace(self, **changes)


def check_positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")


def check_fraction(name: str, value: float, *, closed: bool = False) -> None:
    ok = 0 <= value <= 1 if closed else 0 <= value < 1
    if not ok:
        raise ConfigError(f"{name} must be in [0, 1{']' if closed else ')'}, got {value!r}")
