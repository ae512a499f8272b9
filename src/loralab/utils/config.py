"""Config validation at the edges: pydantic (v2) schemas built from the config dataclasses, one error format.

Every config loralab reads (hyperparameter YAML, method configs, benchmark grids with their nested
sections, task YAML, relevance maps) is checked against a schema before anything runs, and a mistake
at any depth is one line in one format:

    <file>: <dotted.field>: <what is wrong> (got <value>; allowed: <what is allowed>)
    <file>: <dotted.mapping>: unknown key 'rnak' (did you mean 'rank'?); allowed: alpha, batch_size, ...

The schema of a dataclass is built from its type hints, so the dataclass stays the runtime object and
the one place a field is declared:

- `int`, `float`, `str`, `bool` are strict: YAML `"4"` is not 4 and `true` is not 1 (an int is a float);
  floats must be finite; strings must be valid Unicode without NUL (they end up in paths and names).
- `tuple[X, ...]` takes a list, `X | None` takes null (and nothing else does), `Literal[...]` lists its
  values (with "did you mean"), a nested dataclass or `dict` takes a mapping.
- Constraints ride along in the hint: `Annotated[int, Ge(1)]`, `Annotated[str, StringConstraints(...)]`,
  with `Describe("...")` to word what is allowed when the constraint alone does not say it.
- A field's `metadata["schema"]` replaces its hint for validation: a section kept as a plain mapping at
  run time (a benchmark's `library:`) is still checked as the dataclass it becomes.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import annotated_types
import yaml
from pydantic import Discriminator, Strict, Tag, TypeAdapter, ValidationError, WrapValidator
from pydantic import Field as _Field
from pydantic_core import PydanticCustomError
from typing_extensions import NotRequired, Required, TypedDict

from loralab.errors import ConfigError, UserInputError

T = TypeVar("T")

_ERROR = "loralab_config"  # the type of every error this module words itself
_TAG = "\u2063"  # marks union-branch tags in an error's location (dropped from the dotted path); never typed by hand
_SHOWN_KEYS = 8  # a mapping's description names at most this many of its keys


@dataclasses.dataclass(frozen=True)
class Describe:
    """`Annotated[..., Describe("...")]`: how an error states what is allowed, instead of the generated wording."""

    text: str


def read_yaml_mapping(path: str | os.PathLike[str], *, error: type[UserInputError] = ConfigError,
                      what: str = "config file") -> dict[str, Any]:
    """A YAML file whose top level is a mapping (empty file: `{}`); every failure is one `error` line."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise error(f"{what} does not exist: {path}") from None
    except OSError as exc:  # a directory, no permission, a name too long, ...
        raise error(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None
    except ValueError as exc:  # a NUL byte in the path
        raise error(f"{what} path {str(path)!r} is not a usable path ({exc})") from None
    try:
        data = yaml.safe_load(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not valid UTF-8 (byte {exc.start})") from None
    except yaml.YAMLError as exc:
        raise error(f"{path}: invalid YAML ({str(exc).splitlines()[0]})") from None
    except RecursionError:
        raise error(f"{path}: YAML nested too deeply to be a {what.removesuffix(' file')}") from None
    except (ValueError, TypeError, OverflowError) as exc:  # a value YAML parses but cannot build, e.g. 2024-13-01
        raise error(f"{path}: invalid YAML value ({exc})") from None
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise error(f"{path}: a {what.removesuffix(' file')} must be a mapping of keys to values, "
                    f"got {type(data).__name__}")
    return dict(data)


def check(spec: Any, data: Any, where: str, *, at: Sequence[str | int] = (),
          error: type[UserInputError] = ConfigError) -> Any:
    """Validate `data` against `spec` (a config dataclass or any supported type hint); return the clean value.

    A dataclass gives a dict of the keys that were given (lists as tuples, ints of float fields as
    floats): defaults stay the dataclass's business. `at` is where `data` sits in the file, so a
    section checked on its own still reports `file: method_config.loramoe.rank: ...`.
    """
    try:
        return _adapter(spec).validate_python(data)
    except ValidationError as exc:
        raise error(_message(exc, where, tuple(at))) from None


def from_mapping(cls: type[T], data: Any, where: str, *, at: Sequence[str | int] = (),
                 error: type[UserInputError] = ConfigError) -> T:
    """Build dataclass `cls` from a mapping checked by its schema; its own cross-field checks name `where` too."""
    values = check(cls, data, where, at=at, error=error)
    try:
        return cls(**values)
    except UserInputError as exc:
        prefix = f"{where}: {_dotted(tuple(at))}" if at else where
        try:  # keep the class (TaskFormatError, ...) unless its constructor takes more than a message
            again = type(exc)(f"{prefix}: {exc}")
        except TypeError:
            again = error(f"{prefix}: {exc}")
        raise again from None


def check_fields(obj: Any, *, error: type[UserInputError] = ConfigError) -> None:
    """For `__post_init__`: the instance's values pass its class's schema (so direct construction and a
    config file give the same errors, from one declaration)."""
    values = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj) if f.init}
    try:
        _adapter(type(obj)).validate_python(values)
    except ValidationError as exc:
        raise error(_message(exc, "", ())) from None


def _unknown_key(key: Any, allowed: Sequence[str]) -> str:
    close = difflib.get_close_matches(str(key), list(allowed), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown key {key!r}{hint}; allowed: {', '.join(sorted(allowed))}"


# ------------------------------------------------------------------------------------------------ schema


_ADAPTERS: dict[Any, TypeAdapter] = {}


def _adapter(spec: Any) -> TypeAdapter:
    """The (cached) validator of a spec; building one takes milliseconds, validating microseconds."""
    try:
        return _ADAPTERS[spec]
    except KeyError:
        adapter = _ADAPTERS[spec] = TypeAdapter(_guarded(spec))
        return adapter
    except TypeError:  # an unhashable hint: build it each time
        return TypeAdapter(_guarded(spec))


def _guarded(hint: Any) -> Any:
    """`hint` as a pydantic type whose own failures become one worded error (nested ones are already worded)."""
    raw, desc, extra = _build(hint)
    return Annotated[raw, WrapValidator(_guard(desc, **extra))]


def _build(hint: Any) -> tuple[Any, str, dict[str, Any]]:
    """(pydantic type without the outer guard, description, options of the guard)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Annotated:
        raw, desc, extra = _build(args[0])
        constraints = [m for m in args[1:] if not isinstance(m, Describe)]
        texts = [m.text for m in args[1:] if isinstance(m, Describe)]
        words = [w for m in constraints for w in _constraint_words(m)]
        if texts:
            desc = texts[-1]
        elif desc.startswith("a list") and words:
            if "non-empty" in words:
                desc, words = "a non-empty" + desc[1:], [w for w in words if w != "non-empty"]
            desc += f" ({', '.join(words)})" if words else ""
        elif words:
            desc = f"{desc} {' and '.join(words)}"
        return (Annotated[(raw, *constraints)] if constraints else raw), desc, extra
    if hint is Any or hint is object:
        return Any, "any value", {}
    if hint is None or hint is type(None):
        return None, "null", {}
    if hint is bool:
        return Annotated[bool, Strict()], "true or false", {}
    if hint is int:
        return Annotated[int, Strict()], "an integer", {}
    if hint is float:
        return Annotated[float, Strict(), _Field(allow_inf_nan=False)], "a number", {}
    if hint is str:
        return Annotated[str, Strict(), WrapValidator(_clean_text)], "a string", {}
    if origin is Literal:
        return hint, ", ".join(_show(a) for a in args), {"choices": tuple(args)}
    if origin in (typing.Union, types.UnionType):
        return _union(args)
    if origin in (tuple, list, Sequence):
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):  # fixed length: tuple[int, str]
            return tuple[tuple(_guarded(a) for a in args)], f"a list of {len(args)} values", {}  # type: ignore[misc]
        item = args[0] if args else Any
        container = list[_guarded(item)] if origin is list else tuple[_guarded(item), ...]  # type: ignore[misc]
        return container, f"a list of {_plural(_build(item)[1])}", {}
    if hint in (tuple, list):
        return hint[Any, ...] if hint is tuple else list[Any], "a list", {}
    if hint in (dict, Mapping) or origin in (dict, Mapping):
        key, value = (args or (str, Any))
        desc = "a mapping" if value is Any else f"a mapping of names to {_plural(_build(value)[1])}"
        return dict[_guarded(key), _guarded(value)], desc, {}  # type: ignore[valid-type]
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return _mapping_of(hint)
    if isinstance(hint, type):  # anything else a config may hold from Python (a Path, ...): only that type
        from pydantic import InstanceOf

        return InstanceOf[hint], "a path" if issubclass(hint, os.PathLike) else f"a {hint.__name__}", {}
    if origin is not None and isinstance(origin, type):  # os.PathLike[str] and other generic aliases
        return _build(origin)
    return Any, "any value", {}


def _mapping_of(cls: type) -> tuple[Any, str, dict[str, Any]]:
    """A dataclass as a TypedDict: only the keys given come back, so the dataclass keeps its defaults."""
    hints = typing.get_type_hints(cls, include_extras=True)
    fields, required = {}, []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        hint = f.metadata.get("schema", hints[f.name])
        needed = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        fields[f.name] = Required[_guarded(hint)] if needed else NotRequired[_guarded(hint)]
        if needed:
            required.append(f.name)
    typed = TypedDict(f"{cls.__name__}Schema", fields)  # type: ignore[operator]
    names = list(fields)
    shown = ", ".join(names[:_SHOWN_KEYS]) + (", ..." if len(names) > _SHOWN_KEYS else "")
    return typed, f"a mapping (keys: {shown})", {"keys": tuple(names), "required": tuple(required)}


def _union(members: tuple[Any, ...]) -> tuple[Any, str, dict[str, Any]]:
    """`X | None` is nullable X; other unions pick their branch by the kind of value (a list, a mapping, ...),
    so an error inside the branch names the field, not pydantic's guess at which branch was meant."""
    nullable = any(m is None or m is type(None) for m in members)
    rest = tuple(m for m in members if m is not None and m is not type(None))
    if any(_build(m)[0] is Any for m in rest):
        return Any, "any value", {}
    built = [_build(m) for m in rest]
    if len(rest) == 1:
        inner, desc, extra = built[0]
    else:
        # Each branch is guarded with the whole union's description: a value of the right kind that fails
        # there (a string that is not 'all-linear') is told everything the field allows.
        desc, extra = " or ".join(b[1] for b in built), {}
        branches, owner = [], {}
        for member, (raw, _, member_extra) in zip(rest, built, strict=True):
            tag = _TAG + "|".join(sorted(_kinds(member)))
            for kind in _kinds(member):
                owner.setdefault(kind, tag)
            branches.append(Annotated[raw, WrapValidator(_guard(desc, **member_extra)), Tag(tag)])
        inner = Annotated[typing.Union[tuple(branches)], Discriminator(_picker(owner))]
    if nullable:
        return typing.Optional[inner], f"{desc} or null", extra
    return inner, desc, extra


def _kinds(hint: Any) -> set[str]:
    """The kinds of YAML/JSON value a hint can take: how a union decides which branch a value is for."""
    origin = typing.get_origin(hint)
    if origin is Annotated:
        return _kinds(typing.get_args(hint)[0])
    if origin in (typing.Union, types.UnionType):
        return set().union(*(_kinds(a) for a in typing.get_args(hint)))
    if origin is Literal:
        return {_kind(a) for a in typing.get_args(hint)}
    if hint is float:
        return {"int", "float"}
    simple = {bool: "bool", int: "int", str: "str", type(None): "null"}
    if hint in simple:
        return {simple[hint]}
    if hint in (tuple, list) or origin in (tuple, list, Sequence):
        return {"list"}
    if hint in (dict, Mapping) or origin in (dict, Mapping) or dataclasses.is_dataclass(hint):
        return {"mapping"}
    return {"other"}


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    for kind, types_ in (("bool", bool), ("int", int), ("float", float), ("str", str), ("list", (list, tuple)),
                         ("mapping", Mapping)):
        if isinstance(value, types_):
            return kind
    return "other"


def _picker(owner: Mapping[str, str]) -> Any:
    """The union's discriminator: the branch (tag) that takes values of this kind, None if no branch does."""

    def pick(value: Any) -> str | None:
        return owner.get(_kind(value))

    return pick


def _clean_text(value: Any, handler: Any) -> str:
    """Config strings become paths, names and folder names: no NUL, no lone surrogate (neither can be a path)."""
    text = handler(value)
    if "\x00" in text:
        raise PydanticCustomError(_ERROR, "{msg}", {"msg": f"contains a NUL character (got {_show(text)}; "
                                                            "allowed: text without control character NUL)"})
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise PydanticCustomError(_ERROR, "{msg}", {"msg": f"not valid Unicode (got {_show(text)}; allowed: "
                                                            "text without lone surrogates)"}) from None
    return text


def _guard(desc: str, *, choices: tuple[Any, ...] = (), keys: tuple[str, ...] | None = None,
           required: tuple[str, ...] = ()) -> Any:
    """The wrap validator of one level: unknown or missing keys first (with did-you-mean), then this level's own
    failure worded with `desc`; a failure further down was worded by its own guard and passes through."""

    def validate(value: Any, handler: Any) -> Any:
        if keys is not None and isinstance(value, Mapping):
            unknown = [k for k in value if k not in keys]
            if unknown:
                raise PydanticCustomError(_ERROR, "{msg}", {"msg": _unknown_key(unknown[0], keys)})
            missing = [k for k in required if k not in value]
            if missing:
                raise PydanticCustomError(_ERROR, "{msg}", {"msg": f"missing required key(s) {', '.join(missing)}"})
        try:
            return handler(value)
        except ValidationError as exc:
            errors = exc.errors()
            if any(e["type"] == _ERROR for e in errors):  # a part was wrong and says so (pydantic may add
                raise  # a consequence here, e.g. "too short after validation" when a list's items failed)
            own = [e for e in errors if all(_is_tag(x) for x in e["loc"])]
            if not own:
                raise
            raise PydanticCustomError(_ERROR, "{msg}", {"msg": _problem(own[0], value, desc, choices)}) from None

    return validate


def _problem(error: Mapping[str, Any], value: Any, desc: str, choices: tuple[Any, ...]) -> str:
    kind = error["type"]
    if value is None and kind != "missing":
        problem = "null is not allowed"
    elif kind.endswith(("_type", "_parsing")) or kind.startswith(("union_tag", "is_instance")):
        problem = "wrong type"
    elif kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal", "multiple_of"):
        problem = "out of range"
    elif kind == "finite_number":
        problem = "not a finite number"
    elif kind == "literal_error" and _kind(value) not in {_kind(c) for c in choices}:
        problem = "wrong type"  # a number or a list where one of some names is expected: not a misspelt name
    elif kind == "predicate_failed":  # an `annotated_types.Predicate`: `desc` (its Describe) says what is allowed
        problem = "not an allowed value"
    elif kind in ("literal_error", "string_pattern_mismatch"):
        problem = "not an allowed value"
        names = [c for c in choices if isinstance(c, str)]
        close = difflib.get_close_matches(value, names, n=1) if isinstance(value, str) and names else []
        if close:
            problem += f", did you mean {close[0]!r}?"
    elif kind == "too_short":
        problem = "must not be empty" if not value else "too short"
    elif kind == "too_long":
        problem = "too long"
    else:
        problem = str(error.get("msg", kind)).rstrip(".").lower()
    return f"{problem} (got {_show(value)}; allowed: {desc})"


def _message(exc: ValidationError, where: str, at: tuple[str | int, ...]) -> str:
    errors = exc.errors()
    first = next((e for e in errors if e["type"] == _ERROR), errors[0])
    loc = at + tuple(x for x in first["loc"] if not _is_tag(x))
    if first["type"] == _ERROR:
        text = first["msg"]
    else:  # a pydantic error no guard words (a type this module does not build): pydantic's own words
        text = f"{str(first['msg']).rstrip('.').lower()} (got {_show(first.get('input'))})"
    parts = [p for p in (where, _dotted(loc), text) if p]
    return ": ".join(parts)


def _is_tag(part: Any) -> bool:
    return isinstance(part, str) and part.startswith(_TAG)


def _dotted(loc: tuple[Any, ...]) -> str:
    """("library", "tasks", 0) -> "library.tasks[0]"; a bad mapping key 5 (pydantic: (5, "[key]")) -> "[key 5]"."""
    out = ""
    for i, part in enumerate(loc):
        if part == "[key]":
            continue
        if i + 1 < len(loc) and loc[i + 1] == "[key]":
            out += f"[key {part!r}]"
        elif isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _constraint_words(meta: Any) -> list[str]:
    """`Ge(1)` -> [">= 1"]; a pydantic `Field(...)`/`StringConstraints` -> the words of each of its parts."""
    ops = ((annotated_types.Ge, "ge", ">="), (annotated_types.Gt, "gt", ">"), (annotated_types.Le, "le", "<="),
           (annotated_types.Lt, "lt", "<"))
    for cls, attr, op in ops:
        if isinstance(meta, cls):
            return [f"{op} {getattr(meta, attr)}"]
    if isinstance(meta, annotated_types.MinLen):
        return ["non-empty"] if meta.min_length == 1 else [f"at least {meta.min_length} items"]
    if isinstance(meta, annotated_types.MaxLen):
        return [f"at most {meta.max_length} items"]
    if isinstance(meta, annotated_types.Interval):
        return [w for part in (annotated_types.Ge(meta.ge) if meta.ge is not None else None,
                               annotated_types.Gt(meta.gt) if meta.gt is not None else None,
                               annotated_types.Le(meta.le) if meta.le is not None else None,
                               annotated_types.Lt(meta.lt) if meta.lt is not None else None) if part
                for w in _constraint_words(part)]
    nested = getattr(meta, "metadata", None)
    if isinstance(nested, list):
        return [w for m in nested for w in _constraint_words(m)]
    pattern = getattr(meta, "pattern", None)
    return [f"matching {pattern}"] if isinstance(pattern, str) else []


def _plural(desc: str) -> str:
    for single, many in (("an integer", "integers"), ("a number", "numbers"), ("a string", "strings"),
                         ("true or false", "true/false values"), ("a mapping", "mappings"), ("a list", "lists")):
        if desc.startswith(single):
            return many + desc[len(single):]
    return f"values ({desc})"


def _show(value: Any) -> str:
    """A value as the user wrote it in YAML (null, true), cut short when long."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# ------------------------------------------------------------------------------------------------ overrides

# One grammar for every command that takes a config (`loralab train ... rank=4 method.top_k=1`,
# `loralab bench grid.yaml train.max_steps=5 seeds=[0]`):
#
#     KEY=VALUE    KEY: dotted names (letters, digits, '_', '-'; no leading digit), one level per dot
#                  VALUE: YAML, read as in a config file (4, 0.5, true, null, abc, 'quoted', [1, 2], {a: 1}),
#                         except that 1e-3 is a number (YAML 1.2 and Python; PyYAML alone reads a string)
#
# An override sets one key of the command's config mapping before the mapping is validated, creating the
# mappings on its way; a mapping value replaces the whole section. So the schemas above check the result, and a
# bad key or value is the usual one line (`overrides: rnak: unknown key 'rnak' (did you mean 'rank'?); ...`).

_NAME = r"[A-Za-z_][A-Za-z0-9_-]*"
_OVERRIDE_KEY = re.compile(rf"^{_NAME}(\.{_NAME})*$")
# YAML 1.2's float forms that YAML 1.1 (PyYAML) reads as strings: an exponent without a dot (1e-3, 5E4, -2e+1)
_EXP_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)[eE][-+]?[0-9]+$")
OVERRIDES_WHERE = "overrides"  # how messages name the command line's overrides


class _OverrideLoader(yaml.SafeLoader):
    """PyYAML's safe loader plus YAML 1.2's exponent floats (so `learning_rate=1e-3` is a number)."""


_OverrideLoader.add_implicit_resolver("tag:yaml.org,2002:float", _EXP_FLOAT, list("-+.0123456789"))


@dataclasses.dataclass(frozen=True)
class Override:
    """One `KEY=VALUE` of the command line: the dotted key's parts, the YAML-parsed value, the text as typed."""

    path: tuple[str, ...]
    value: Any
    text: str

    @property
    def key(self) -> str:
        return ".".join(self.path)


def looks_like_override(text: str) -> bool:
    """Whether `text` has the shape `KEY=VALUE` (a positional argument that is an override, not a path)."""
    key, eq, _ = text.partition("=")
    return bool(eq) and bool(_OVERRIDE_KEY.match(key))


def parse_override(text: str) -> Override:
    """`"train.max_steps=5"` -> Override(("train", "max_steps"), 5, ...); a malformed one is one ConfigError line."""
    key, eq, raw = text.partition("=")
    if not eq:
        raise ConfigError(f"override {text!r} is not KEY=VALUE (e.g. rank=4 or train.max_steps=50)")
    if not _OVERRIDE_KEY.match(key):
        raise ConfigError(f"override {text!r}: {key!r} is not a key (allowed: dotted names of letters, digits, "
                          "'_' and '-', e.g. train.max_steps)")
    if not raw.strip():
        raise ConfigError(f"override {text!r} has no value (write {key}=null for null, {key}='' for an empty string)")
    try:
        value = yaml.load(raw, Loader=_OverrideLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"override {text!r}: the value is not valid YAML ({problem})") from None
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise ConfigError(f"override {text!r}: invalid YAML value ({exc})") from None
    return Override(tuple(key.split(".")), value, text)


def parse_overrides(texts: Sequence[str] | None) -> list[Override]:
    """Every override, in order; a key given twice, or a key and a key inside it (`train=...` and `train.rank=4`),
    is refused."""
    parsed = [parse_override(t) for t in texts or ()]
    for i, a in enumerate(parsed):
        for b in parsed[i + 1:]:
            shorter, longer = sorted((a, b), key=lambda o: len(o.path))
            if a.path == b.path:
                raise ConfigError(f"override key {a.key} is given twice: {a.text!r} and {b.text!r}; give it once")
            if longer.path[:len(shorter.path)] == shorter.path:
                raise ConfigError(f"overrides {a.text!r} and {b.text!r} both set {longer.key} ({shorter.text!r} sets "
                                  f"all of {shorter.key}); give one of them")
    return parsed


def as_overrides(items: Sequence[str | Override]) -> list[Override]:
    """Strings parsed (`parse_overrides`), Override objects as they are (parsed, and perhaps routed, already)."""
    texts = [o for o in items if not isinstance(o, Override)]
    return [o for o in items if isinstance(o, Override)] + parse_overrides(texts)


def route_overrides(overrides: Sequence[Override], sections: Mapping[str, str],
                    default: str | None = None) -> dict[str, list[Override]]:
    """Split overrides by their first key part: `sections` maps a prefix to a destination (the prefix is dropped,
    `method.top_k` -> `top_k` for "method"); other keys go to `default` whole (None: such a key is refused).

    A bare section name (`method=...`) is refused: a section's keys are set one by one (`method.KEY=VALUE`).
    """
    routed: dict[str, list[Override]] = {dest: [] for dest in {*sections.values(), *([default] if default else [])}}
    for o in overrides:
        head = o.path[0]
        if head in sections:
            if len(o.path) == 1:
                raise ConfigError(f"override {o.text!r}: {head} is a section; set its keys as {head}.KEY=VALUE")
            routed[sections[head]].append(dataclasses.replace(o, path=o.path[1:]))
        elif default is not None:
            routed[default].append(o)
        else:
            allowed = ", ".join(f"{s}.KEY" for s in sections)
            raise ConfigError(f"override {o.text!r}: unknown section {head!r}; allowed: {allowed}")
    return routed


def apply_overrides(data: Mapping[str, Any] | None, overrides: Sequence[Override], *,
                    where: str = OVERRIDES_WHERE) -> dict[str, Any]:
    """A copy of `data` with every override set (mappings on the way created as needed; `data` is left as it is).

    A key whose way passes through a value that is not a mapping (`train.rank=4` where `train` is a file name)
    is one ConfigError line naming it.
    """
    out = _copy_mappings(data or {})
    for o in overrides:
        node = out
        for depth, part in enumerate(o.path[:-1], start=1):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                prefix = ".".join(o.path[:depth])
                raise ConfigError(f"{where}: {o.key}: {prefix} is not a mapping (got {_show(child)}), so it has no "
                                  f"key {o.path[depth]!r}; set {prefix}=... as a whole")
            node = child
        node[o.path[-1]] = o.value
    return out


def check_overridden(spec: Any, data: Mapping[str, Any], overrides: Sequence[Override], *,
                     at: Sequence[str | int] = (), error: type[UserInputError] = ConfigError) -> dict[str, Any]:
    """`data` (already valid as `spec`) with `overrides` applied and checked as `spec`; errors name the overrides.

    Returns the applied mapping (not the schema's cleaned copy), for the caller's own constructor.
    """
    merged = apply_overrides(data, overrides)
    if overrides:
        check(spec, merged, OVERRIDES_WHERE, at=at, error=error)
    return merged


def _copy_mappings(value: Any) -> Any:
    """Mappings copied as dicts at any depth (lists and values shared: an override replaces, never edits, them)."""
    if isinstance(value, Mapping):
        return {k: _copy_mappings(v) for k, v in value.items()}
    return value


def to_yaml(data: Mapping[str, Any], *, header: str | None = None) -> str:
    """`data` as block-style YAML in its key order (tuples as lists, paths as strings), after `header` comment lines.

    What `--print-config` prints: reading it back (`read_yaml_mapping`) gives `data` again.
    """
    text = yaml.safe_dump(_plain_yaml(data), sort_keys=False, default_flow_style=False, allow_unicode=True, width=100)
    comment = "".join(f"# {line}".rstrip() + "\n" for line in header.splitlines()) if header else ""
    return comment + text


def _plain_yaml(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain_yaml(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain_yaml(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value
