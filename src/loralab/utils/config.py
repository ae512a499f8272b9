"""Dataclass configs from YAML/dicts with one-line errors: unknown keys (with "did you mean"), wrong types."""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from loralab.errors import ConfigError

T = TypeVar("T")


def read_yaml_mapping(path: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file does not exist: {path}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not valid UTF-8 (byte {exc.start})") from None
    except OSError as exc:  # a directory, no permission, ...
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML ({str(exc).splitlines()[0]})") from None
    except RecursionError:
        raise ConfigError(f"{path}: YAML nested too deeply to be a config") from None
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: a config must be a mapping of keys to values, got {type(data).__name__}")
    return dict(data)


def from_mapping(cls: type[T], data: Mapping[str, Any], where: str) -> T:
    """Build dataclass `cls` from `data`, checking keys and simple types before `__post_init__` runs."""
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    hints = typing.get_type_hints(cls)
    for key, value in data.items():
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{where}: unknown key {key!r}{hint}; allowed: {', '.join(sorted(fields))}")
        if not _type_ok(value, hints[key]):
            raise ConfigError(f"{where}: {key} must be {_type_name(hints[key])}, got {value!r}")
    try:
        return cls(**{k: _coerce(v, hints[k]) for k, v in data.items()})
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _coerce(value: Any, hint: Any) -> Any:
    if isinstance(value, list) and tuple in {typing.get_origin(a) or a for a in _alternatives(hint)}:
        return tuple(value)
    if isinstance(value, int) and not isinstance(value, bool) and float in _alternatives(hint) and int not in _alternatives(hint):
        return float(value)
    return value


def _alternatives(hint: Any) -> tuple[Any, ...]:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return typing.get_args(hint)
    return (hint,)


def _type_ok(value: Any, hint: Any) -> bool:
    for alt in _alternatives(hint):
        origin = typing.get_origin(alt) or alt
        if alt is type(None) and value is None:
            return True
        if origin is typing.Literal and value in typing.get_args(alt):
            return True
        if origin in (tuple, list) and isinstance(value, (list, tuple)):
            return True
        if origin is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return True
        if origin is int and isinstance(value, int) and not isinstance(value, bool):
            return True
        if origin in (str, bool, dict) and isinstance(value, origin):
            return True
    return False


def _type_name(hint: Any) -> str:
    names = []
    for alt in _alternatives(hint):
        if typing.get_origin(alt) is typing.Literal:
            names.append(" or ".join(repr(a) for a in typing.get_args(alt)))
        elif alt is type(None):
            names.append("null")
        else:
            names.append(getattr(typing.get_origin(alt) or alt, "__name__", str(alt)))
    return " or ".join(names)
