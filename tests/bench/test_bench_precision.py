"""The benchmark's `precision`: resolved once, part of the cell id (fp32 ids stay what they were), recorded in
every row and comparison record, and checked against an existing library's precision."""

from __future__ import annotations

import pytest

from loralab.bench import Store, bench_from_mapping, expand, run_bench
from loralab.bench.compare import compare_methods
from loralab.errors import ConfigError
from loralab.library import LoRAHparams, build_library

MODEL = "tiny-llama"



def _base_grid(toy_tasks, **overrides):
    """One seed-free cell: the base model on one target (no library, no training)."""
    return {"name": "prec", "models": [MODEL], "methods": ["base"], "targets": [toy_tasks["parity"]],
            "library": {"tasks": []}, "eval": {"limit": 4}, "device": "cpu", **overrides}


def test_precision_is_in_the_cell_id_only_when_not_fp32(make_grid, cpu_with_bf16):
    fp32 = expand(bench_from_mapping(make_grid(precision="fp32")))
    auto = expand(bench_from_mapping(make_grid()))  # auto on a CPU with native bf16
    assert all("precision" not in c.protocol for c in fp32)  # ids of fp32 grids are what they were
    assert all(c.protocol["precision"] == "bf16" for c in auto)
    assert len(fp32) == len(auto) and not {c.cell_id for c in fp32} & {c.cell_id for c in auto}
    assert [c.cell_id for c in expand(bench_from_mapping(make_grid(precision="fp32")))] == [c.cell_id for c in fp32]


def test_bench_rows_record_the_resolved_precision(toy_tasks, tmp_path, cpu_with_bf16):
    ids = {}
    for name in ("fp32", "bf16"):
        result = run_bench(bench_from_mapping(_base_grid(toy_tasks, precision=name)), tmp_path / name, report=False)
        assert not result.failed and result.ran == 1
        with Store(result.db, create=False) as store:
            (row,) = store.rows()
        assert row["precision"]["name"] == name and row["precision"]["device_type"] == "cpu"
        assert row["config"]["protocol"].get("precision", "fp32") == name
        ids[name] = row["cell_id"]
    assert ids["fp32"] != ids["bf16"]


def test_compare_records_name_the_precision(toy_tasks, tmp_path):
    records = compare_methods(MODEL, ["base"], [toy_tasks["parity"]], tmp_path / "cmp", eval_limit=4,
                              precision="fp32")
    assert [r["precision"] for r in records] == ["fp32"]
    with Store(tmp_path / "cmp" / "bench.sqlite", create=False) as store:
        assert [r["precision"]["name"] for r in store.rows()] == ["fp32"]


def test_an_existing_library_of_another_precision_is_refused(make_grid, toy_tasks, tmp_path, cpu_with_bf16):
    lib = tmp_path / "lib"
    grid = make_grid(library={"tasks": [toy_tasks["parity"]], "path": str(lib),
                              "hparams": {"max_steps": 1, "batch_size": 4, "rank": 4, "max_length": 64}},
                     methods=["base"], strategies=[], selection=None)
    build_library(MODEL, [toy_tasks["parity"]], lib, hparams=LoRAHparams(max_steps=1, batch_size=4, rank=4,
                                                                         max_length=64),
                  eval_limit=0, progress=False, precision="fp32")
    with pytest.raises(ConfigError, match=r"precision='fp32' \(config: 'bf16'\); set precision to match"):
        run_bench(bench_from_mapping(grid), tmp_path / "out", report=False)  # auto: bf16 here


def test_a_precision_the_device_cannot_run_fails_at_check_time(make_grid):
    with pytest.raises(ConfigError, match=r"precision: 'fp16' runs on CUDA only"):
        bench_from_mapping(make_grid(precision="fp16"))
    with pytest.raises(ConfigError, match=r"precision"):
        bench_from_mapping(make_grid(precision="half"))
