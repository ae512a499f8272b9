"""Property test: `loralab bench CONFIG --dry-run` on generated configs exits 0, or 2 with exactly one `error:` line.

A valid small grid (tiny-llama, three toy JSONL tasks) is mutated at any depth: a field replaced by a value of
a random type (null, bool, number, NaN, text with '..', '/', NUL or 5000 characters, a list, a mapping,
nested junk), an unknown key added, a section dropped, or a valid value moved to the wrong place. Whatever
comes out, the command never shows a traceback, never exits with anything but 0 or 2, and writes nothing.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import yaml

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from helpers import run_cli  # noqa: E402

SPECIAL_TEXT = ["", "..", "../../evil", "a/b", "/", "\x00", "a\x00b", "x" * 5000, "~nouser/x", "tiny-llama",
                "base", "random", "manual", "cpu", "cuda:0", "gpu0", "test", "dev", "1e-3", "null", "cosin",
                "all-linear", "bigbench", ".hidden", "v1.2"]
scalar = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 10), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(SPECIAL_TEXT), st.text(max_size=12),
)
junk = st.recursive(scalar, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                    st.dictionaries(st.one_of(st.text(max_size=8), st.integers()),
                                                                    inner, max_size=3)), max_leaves=6)
KEYS = ["name", "models", "methods", "targets", "strategies", "k", "seeds", "library", "train", "method_config",
        "selection", "from_scratch", "eval", "resources", "keep_checkpoints", "device", "data_dir", "tasks", "path",
        "hparams", "eval_limit", "rank", "max_steps", "max_length", "target_modules", "split", "limit", "cpus",
        "relevance", "num_experts", "n_examples", "trian", "rnak", "limt"]


def _write_tasks(folder: Path) -> dict[str, str]:
    paths = {}
    for name in ("alpha", "beta", "gamma"):
        rows = [{"prompt": f"Q: {name} {i}?\nA:", "choices": [" yes", " no"], "answer_index": i % 2,
                 "split": "test" if i % 3 == 0 else "train"} for i in range(12)]
        path = folder / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        paths[name] = str(path)
    return paths


def base_grid(tasks: dict[str, str]) -> dict[str, Any]:
    return {
        "name": "prop", "models": ["tiny-llama"], "methods": ["base", "loramoe"], "targets": [tasks["alpha"]],
        "library": {"tasks": list(tasks.values()), "hparams": {"max_steps": 1, "max_length": 64}, "eval_limit": 0},
        "strategies": ["random", "manual"], "k": [1], "seeds": [0, 1],
        "train": {"max_steps": 1, "batch_size": 2, "target_modules": ["q_proj"]},
        "method_config": {"loramoe": {"num_experts": 2}},
        "selection": {"manual": {"relevance": {"alpha": ["beta"]}}},
        "eval": {"split": "test", "limit": 4}, "resources": {"cpus": 1}, "device": "cpu",
    }


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every place in a nested mapping/list where a value sits (the root's keys, their items, ...)."""
    out = []
    if isinstance(value, dict):
        for key, child in value.items():
            out.append((*prefix, key))
            out += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            out.append((*prefix, i))
            out += _paths(child, (*prefix, i))
    return out


def _get(data: Any, path: tuple) -> Any:
    for part in path:
        data = data[part]
    return data


@st.composite
def mutated_configs(draw: st.DrawFn, tasks: dict[str, str]) -> Any:
    data = base_grid(tasks)
    if draw(st.integers(0, 19)) == 0:
        return draw(junk)  # the whole file is not a mapping (or is an odd one)
    for _ in range(draw(st.integers(1, 3))):
        places = _paths(data)
        action = draw(st.sampled_from(["replace", "replace", "replace", "add_key", "drop", "move"]))
        if not places or action == "add_key":
            mappings = [()] + [p for p in places if isinstance(_get(data, p), dict)]
            _get(data, draw(st.sampled_from(mappings)))[draw(st.sampled_from(KEYS))] = draw(junk)
            continue
        path = draw(st.sampled_from(places))
        parent = _get(data, path[:-1])
        if action == "drop":
            del parent[path[-1]]
        elif action == "move":  # a valid value from elsewhere in the grid, in the wrong place
            parent[path[-1]] = json.loads(json.dumps(_get(data, draw(st.sampled_from(places)))))
        else:
            parent[path[-1]] = draw(junk)
    return data


def snapshot(root: Path) -> dict[str, tuple[int, int] | None]:
    out: dict[str, tuple[int, int] | None] = {}
    for path in sorted(root.rglob("*")):
        st_ = path.lstat()
        out[str(path.relative_to(root))] = None if path.is_dir() else (st_.st_size, st_.st_mtime_ns)
    return out


@pytest.fixture(scope="module")
def toy_tasks(tmp_path_factory) -> dict[str, str]:
    return _write_tasks(tmp_path_factory.mktemp("prop-tasks"))


def test_base_grid_is_valid(toy_tasks, tmp_path, monkeypatch, capsys):
    """The property would be vacuous if the unmutated grid failed: it dry-runs with exit 0."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(base_grid(toy_tasks)), encoding="utf-8")
    code, out, err = run_cli(monkeypatch, capsys, "bench", "grid.yaml", "--dry-run")
    assert code == 0 and "prop: " in out and "error" not in err, err


@settings(max_examples=60, deadline=None, suppress_health_check=[
    HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_generated_configs_exit_0_or_2_with_one_error_line(toy_tasks, tmp_path, monkeypatch, capsys, data):
    config = data.draw(mutated_configs(toy_tasks))
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    before = snapshot(tmp_path.parent)
    code, out, err = run_cli(monkeypatch, capsys, "bench", str(path), "--dry-run")
    assert "Traceback" not in out + err, err
    assert code in (0, 2), (code, err[-2000:])
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    if code == 2:
        assert len(errors) == 1, err
        other = [line for line in err.splitlines() if line.strip() and not line.startswith(("error:", "WARNING"))]
        assert not other, err
    else:
        assert not errors, err
    assert snapshot(tmp_path.parent) == before, "a dry run wrote, created or removed files"


def test_nan_and_huge_numbers_are_caught_not_passed_on(toy_tasks, tmp_path, monkeypatch, capsys):
    """Two values the property finds rarely by chance: NaN resources and a seed past numpy's 32 bits."""
    monkeypatch.chdir(tmp_path)
    for change, needle in (({"resources": {"cpus": math.nan}}, "resources.cpus: not a finite number (got nan;"),
                           ({"seeds": [2**40]}, "seeds[0]: out of range (got 1099511627776;")):
        (tmp_path / "grid.yaml").write_text(yaml.safe_dump({**base_grid(toy_tasks), **change}), encoding="utf-8")
        code, _, err = run_cli(monkeypatch, capsys, "bench", "grid.yaml", "--dry-run")
        assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err
