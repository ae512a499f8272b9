"""Optional dependencies: a missing one is one error naming the extra that installs it (exit code 2)."""

from __future__ import annotations

import sys
import types

import pytest

from loralab.errors import MissingExtraError
from loralab.utils.extras import EXTRAS, has_extra, require_extra


@pytest.mark.parametrize("module", sorted(EXTRAS))
def test_an_optional_feature_names_its_extra_when_its_package_is_missing(monkeypatch, module):
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed
    assert not has_extra(module)
    with pytest.raises(MissingExtraError) as info:
        require_extra(module, "this feature")
    extra, dist = EXTRAS[module]
    assert str(info.value) == f"this feature needs {dist}, which is not installed: pip install 'loralab[{extra}]'"
    assert info.value.exit_code == 2


def test_an_installed_optional_package_is_returned(monkeypatch):
    fake = types.ModuleType("ray")
    monkeypatch.setitem(sys.modules, "ray", fake)  # stands in for an installed one (the real import is slow)
    assert require_extra("ray", "--executor ray") is fake


def test_only_declared_optional_packages_are_required():
    with pytest.raises(KeyError):
        require_extra("yaml", "reading YAML")  # a core dependency is imported directly: a programming error
