"""One small generic registry for everything loralab looks up by name: methods, selection strategies,
routers, task sources (`loralab.data.task_sources`).

    METHODS: Registry[MethodSpec] = Registry("method", builtins="loralab.moe.methods")
    METHODS.register("loramoe", spec)          # a clash is a loud error, never a silent overwrite
    METHODS.get("loramo")                      # UnknownNameError: ... Did you mean 'loramoe'?

`builtins` names a package whose modules register themselves on import; they are imported the first
time the registry is read, so `import loralab` stays cheap and a user's own registration (one line,
in their own file) sits beside the built-ins on equal terms.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator
from typing import Generic, TypeVar

from loralab.errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """Name -> T, lowercase names, did-you-mean on a miss, built-ins loaded lazily."""

    def __init__(self, kind: str, *, builtins: str | None = None) -> None:
        self.kind = kind
        self._builtins = builtins
        self._loaded = builtins is None
        self._items: dict[str, T] = {}

    def register(self, name: str, item: T, *, replace: bool = False) -> T:
        """Add `item` under `name`; a name already taken by another item raises (unless `replace`)."""
        if not isinstance(name, str) or not name or name != name.lower():
            raise ValueError(f"{self.kind} names are non-empty lowercase strings, got {name!r}")
        current = self._items.get(name)
        if current is not None and current is not item and not replace:
            raise ValueError(f"{self.kind} {name!r} is already registered (by {_origin(current)})")
        self._items[name] = item
        return item

    def unregister(self, name: str) -> None:
        """Remove `name` (tests and plug-ins that register temporarily)."""
        self._items.pop(name, None)

    def get(self, name: str) -> T:
        """The item registered as `name`; `UnknownNameError` with close matches otherwise."""
        self._load()
        if name not in self._items:
            raise UnknownNameError(self.kind, str(name), self._items)
        return self._items[name]

    def names(self, *, by_registration: bool = False) -> list[str]:
        """Sorted names; `by_registration`: in the order they were registered (built-ins first)."""
        self._load()
        return list(self._items) if by_registration else sorted(self._items)

    def items(self) -> dict[str, T]:
        """A sorted copy: name -> item."""
        self._load()
        return dict(sorted(self._items.items()))

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        self._load()
        return len(self._items)

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True  # set first: a built-in module that reads the registry must not recurse
        package = importlib.import_module(self._builtins)  # type: ignore[arg-type]
        for info in pkgutil.iter_modules(package.__path__):  # each module registers itself on import
            importlib.import_module(f"{package.__name__}.{info.name}")


def _origin(item: object) -> str:
    for attr in ("build", "__call__"):
        fn = getattr(item, attr, None)
        if fn is not None and getattr(fn, "__module__", None):
            return fn.__module__
    return getattr(item, "__module__", type(item).__module__)
