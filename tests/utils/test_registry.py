"""The generic registry: clashes are loud, misses suggest close names, built-ins load lazily."""

from __future__ import annotations

import sys
import types

import pytest

from loralab.errors import UnknownNameError
from loralab.utils.registry import Registry


def test_register_and_get() -> None:
    reg: Registry[int] = Registry("widget")
    reg.register("alpha", 1)
    assert reg.get("alpha") == 1
    assert "alpha" in reg and "beta" not in reg
    assert reg.names() == ["alpha"] and len(reg) == 1


def test_clash_is_an_error_unless_same_item_or_replace() -> None:
    reg: Registry[object] = Registry("widget")
    item = object()
    reg.register("alpha", item)
    reg.register("alpha", item)  # the same object again (a module imported twice) is harmless
    with pytest.raises(ValueError, match="already registered"):
        reg.register("alpha", object())
    other = object()
    reg.register("alpha", other, replace=True)
    assert reg.get("alpha") is other


@pytest.mark.parametrize("bad", ["", "Alpha", 3])
def test_names_are_lowercase_strings(bad) -> None:
    with pytest.raises(ValueError, match="lowercase"):
        Registry("widget").register(bad, 1)


def test_unknown_name_suggests_close_matches() -> None:
    reg: Registry[int] = Registry("widget")
    reg.register("loramoe", 1)
    reg.register("hydralora", 2)
    with pytest.raises(UnknownNameError, match=r"unknown widget 'loramo'\. Did you mean 'loramoe'\?") as info:
        reg.get("loramo")
    assert info.value.suggestions == ["loramoe"]


def test_builtins_load_once_and_lazily(tmp_path, monkeypatch) -> None:
    pkg = tmp_path / "fake_builtins"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "one.py").write_text("import registry_under_test as r\nr.REG.register('one', 1)\n")
    (pkg / "two.py").write_text("import registry_under_test as r\nr.REG.register('two', 2)\n")
    holder = types.ModuleType("registry_under_test")
    holder.REG = Registry("widget", builtins="fake_builtins")
    monkeypatch.setitem(sys.modules, "registry_under_test", holder)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "fake_builtins.one" not in sys.modules  # nothing imported at construction
    assert holder.REG.names() == ["one", "two"]
    assert holder.REG.get("two") == 2
    assert holder.REG.items() == {"one": 1, "two": 2}
