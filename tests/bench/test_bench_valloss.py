"""`train.val_every` in a benchmark: the row's `train` carries the validation loss; cells and libraries without
validation keep their ids and hyperparameter matches."""

from __future__ import annotations

import json

import pytest

from loralab.bench import Store, bench_from_mapping, expand, run_bench
from loralab.errors import ConfigError
from loralab.library import LoRAHparams, build_library

MODEL = "tiny-llama"
TRAIN = {"max_steps": 2, "batch_size": 4, "rank": 4, "max_length": 64}


def _task_file(tmp_path, name: str = "parity") -> str:
    path = tmp_path / f"{name}.jsonl"
    records = [{"prompt": f"Q: is {i} {name}?\nA:", "choices": [" yes", " no"], "answer_index": i % 2,
                "split": ("validation", "test", "train", "train")[i % 4]} for i in range(24)]
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return str(path)


def _grid(task: str, **overrides):
    return {"name": "val", "models": [MODEL], "methods": ["lora"], "targets": [task], "seeds": [0],
            "library": {"tasks": []}, "train": dict(TRAIN), "eval": {"limit": 4}, "device": "cpu", **overrides}


def test_val_every_is_in_the_cell_id_only_when_set(tmp_path):
    tasks = [_task_file(tmp_path, name) for name in ("parity", "odd")]

    def cells(val: dict):
        library = {"tasks": tasks, "hparams": {**TRAIN, **val}}
        return expand(bench_from_mapping(_grid(tasks[0], targets=tasks, methods=["base", "more", "loramoe"],
                                               strategies=["random"], k=[1], library=library,
                                               train={**TRAIN, **val})))

    plain, with_val = cells({}), cells({"val_every": 1})
    assert all(not {"val_every", "val_examples"} & set(c.protocol.get("train", {})) for c in plain)
    trained = [c for c in with_val if "train" in c.protocol]
    assert trained and all(c.protocol["train"]["val_every"] == 1 for c in trained)
    libraries = [c.protocol["library"]["hparams"] for c in with_val if "hparams" in c.protocol.get("library", {})]
    assert libraries and all("val_every" not in hp for hp in libraries)
    # cells that train get new ids (their rows differ); base keeps its ids, and the library part is unchanged
    base = {c.cell_id for c in plain if c.method == "base"}
    assert {c.cell_id for c in with_val} & {c.cell_id for c in plain} == base
    assert [c.protocol.get("library") for c in with_val] == [c.protocol.get("library") for c in plain]


def test_bench_row_carries_the_validation_loss(tmp_path):
    task = _task_file(tmp_path)
    grid = _grid(task, train={**TRAIN, "val_every": 1, "val_examples": 3})
    result = run_bench(bench_from_mapping(grid), tmp_path / "out", report=False)
    assert not result.failed and result.ran == 1
    with Store(result.db, create=False) as store:
        (row,) = store.rows()
    assert [r["step"] for r in row["train"]["val_loss"]] == [1, 2]
    assert all(isinstance(r["loss"], float) for r in row["train"]["val_loss"])


def test_a_library_built_with_validation_serves_a_bench_without(tmp_path):
    task = _task_file(tmp_path)
    lib = tmp_path / "lib"
    build_library(MODEL, [task], lib, hparams=LoRAHparams(**TRAIN, val_every=1, val_examples=2), eval_limit=0,
                  progress=False, precision="fp32")
    grid = _grid(task, methods=["base"], library={"tasks": [task], "path": str(lib), "hparams": dict(TRAIN)})
    result = run_bench(bench_from_mapping(grid), tmp_path / "out", report=False)  # not refused: same weights
    assert not result.failed and result.ran == 1


def test_a_target_without_validation_split_fails_at_check_time(make_grid, toy_tasks):
    grid = make_grid(train={**make_grid()["train"], "val_every": 1})  # the toy tasks have train and test only
    message = r"^config: train\.val_every: 1 needs a validation split, but task 'parity'"
    with pytest.raises(ConfigError, match=message) as info:
        bench_from_mapping(grid)
    assert "\n" not in str(info.value)
