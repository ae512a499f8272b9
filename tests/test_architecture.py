"""The package's dependency rules, read from the imports (module level and inside functions alike).

Layers, bottom to top; a package may import only packages below it (and itself):

    errors, utils, stats, configs (shipped YAML)  <  data  <  models  <  eval  <  training  <  library  <  moe  <  selection
        <  recipes (the orchestration layer)  <  bench  <  cli

So components (everything up to `selection`) never import the orchestration layer, `bench` or `cli`,
and no two packages import each other (no cycle).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import loralab

ROOT = Path(loralab.__file__).parent
LAYERS = [{"errors", "utils", "stats", "configs"}, {"data"}, {"models"}, {"eval"}, {"training"}, {"library"}, {"moe"},
          {"selection"}, {"recipes"}, {"bench"}, {"cli"}]
RANK = {pkg: i for i, layer in enumerate(LAYERS) for pkg in layer}
COMPONENTS = {pkg for layer in LAYERS[: RANK["selection"] + 1] for pkg in layer}
ORCHESTRATION = {"recipes", "bench", "cli"}
ROOT_MODULES = {"__init__", "_aliases"}  # the package's own front door: lazy names only


def package_of(path: Path) -> str:
    rel = path.relative_to(ROOT)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def imported_packages(path: Path) -> set[str]:
    """The loralab packages `path` imports anywhere in the file (top level or inside a function)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] if node.module != "loralab" else [f"loralab.{a.name}" for a in node.names]
        for name in names:
            parts = name.split(".")
            # `from loralab import __version__` names an attribute, not a package
            if parts[0] == "loralab" and len(parts) > 1 and ((ROOT / parts[1]).is_dir()
                                                             or (ROOT / f"{parts[1]}.py").is_file()):
                found.add(parts[1])
    return found


def edges() -> dict[tuple[str, str], list[str]]:
    """(importing package, imported package) -> the files that import it."""
    out: dict[tuple[str, str], list[str]] = {}
    for path in sorted(ROOT.rglob("*.py")):
        src = package_of(path)
        if src in ROOT_MODULES:
            continue
        for dst in imported_packages(path) - {src}:
            out.setdefault((src, dst), []).append(str(path.relative_to(ROOT)))
    return out


def test_every_package_has_a_layer():
    packages = {package_of(p) for p in ROOT.rglob("*.py")} - ROOT_MODULES
    assert packages <= set(RANK), f"packages without a layer in this test: {sorted(packages - set(RANK))}"


def test_components_never_import_the_orchestration_layer():
    bad = {k: v for k, v in edges().items() if k[0] in COMPONENTS and k[1] in ORCHESTRATION}
    assert not bad, f"components importing recipes/bench/cli: {bad}"


def test_imports_point_down_the_layers():
    bad = {k: v for k, v in edges().items() if RANK[k[1]] > RANK[k[0]]}
    assert not bad, f"imports that point up the layers: {bad}"


def test_no_import_cycle_between_packages():
    graph: dict[str, set[str]] = {}
    for src, dst in edges():
        graph.setdefault(src, set()).add(dst)

    def cycle_from(start: str) -> list[str] | None:
        stack = [(start, [start])]
        while stack:
            node, trail = stack.pop()
            for nxt in graph.get(node, ()):
                if nxt == start:
                    return [*trail, start]
                if nxt not in trail:
                    stack.append((nxt, [*trail, nxt]))
        return None

    cycles = [c for pkg in sorted(graph) if (c := cycle_from(pkg))]
    assert not cycles, f"import cycles between packages: {cycles[0]}"


@pytest.mark.parametrize("source, expected", [
    ("from loralab.bench import run_bench\n", {"bench"}),
    ("def f():\n    from loralab.recipes.train import train_method\n", {"recipes"}),
    ("import loralab.cli\n", {"cli"}),
    ("from loralab import moe\n", {"moe"}),
    ("from .x import y\nimport os\n", set()),
])
def test_the_import_reader_sees_every_form(tmp_path, source, expected):
    """The rule is only as good as its reader: function-level and `from loralab import x` forms count."""
    path = tmp_path / "probe.py"
    path.write_text(source)
    assert imported_packages(path) == expected
