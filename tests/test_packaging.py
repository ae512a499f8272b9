"""The install: `pip install loralab` pulls what every command needs and nothing else (no test tools, no optional
feature's package); `[dev]` is the contributors' install; each optional package has an extra and is imported only
through `loralab.utils.extras` (or by the one module that is that feature).

Read from pyproject.toml, the source of truth: the installed metadata may be an older editable install's.
"""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import loralab
from loralab.utils.extras import EXTRAS

REPO = Path(__file__).resolve().parents[1]
SRC = Path(loralab.__file__).parent
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
TEST_TOOLS = {"pytest", "hypothesis"}
# modules that are an optional feature themselves, so they import its package at the top
FEATURE_MODULES = {"lm_eval": {"recipes/lmeval.py"}}


def dist_name(requirement: str) -> str:
    """`lm-eval>=0.4.9` -> `lm-eval` (PEP 503 normalised)."""
    name = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement.strip()).group(0)
    return re.sub(r"[-_.]+", "-", name).lower()


CORE = {dist_name(r) for r in PROJECT["dependencies"]}
EXTRA_DISTS = {extra: {dist_name(r) for r in reqs} for extra, reqs in PROJECT["optional-dependencies"].items()}
OPTIONAL = {dist_name(dist) for _, dist in EXTRAS.values()}


def test_the_user_install_has_no_test_tools_and_no_optional_package():
    assert not CORE & TEST_TOOLS
    assert not CORE & OPTIONAL, "an optional feature's package is a core dependency"


def test_every_optional_package_has_its_extra_and_dev_has_them_all():
    for module, (extra, dist) in EXTRAS.items():
        assert dist_name(dist) in EXTRA_DISTS.get(extra, set()), f"{module}: extra [{extra}] does not list {dist}"
    others = set().union(*(dists for extra, dists in EXTRA_DISTS.items() if extra != "dev"))
    assert TEST_TOOLS | others <= EXTRA_DISTS["dev"]


def imports_by_module() -> dict[str, set[str]]:
    """Top-level name of every module imported anywhere in loralab (any depth) -> the files importing it."""
    found: dict[str, set[str]] = {}
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top != "loralab" and top not in sys.stdlib_module_names:
                    found.setdefault(top, set()).add(path.relative_to(SRC).as_posix())
    return found


def requirement_closure(dists: set[str]) -> set[str]:
    """`dists` and everything they require (as installed here), without extras-only requirements."""
    seen: set[str] = set()
    todo = list(dists)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        todo += [dist_name(r) for r in requires if "extra ==" not in r.replace("extra==", "extra ==")]
    return seen


def test_every_imported_package_comes_with_the_user_install():
    provided = requirement_closure(CORE)
    dists_of = importlib.metadata.packages_distributions()
    for module, files in imports_by_module().items():
        if module in EXTRAS:
            extra_ok = FEATURE_MODULES.get(module, set())
            assert files <= extra_ok, (f"{sorted(files - extra_ok)} import optional {module!r} directly; use "
                                       "loralab.utils.extras.require_extra")
            continue
        dists = {dist_name(d) for d in dists_of.get(module, [])}
        assert dists & provided, f"{module!r} (imported by {sorted(files)[:3]}) is not a loralab dependency"


def test_console_scripts_resolve():
    for name, target in PROJECT["scripts"].items():
        module, _, func = target.partition(":")
        assert callable(getattr(importlib.import_module(module), func)), name
