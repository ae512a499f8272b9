"""A method added as one file plus one registration, with no edit anywhere in loralab, is a full method.

The test writes the plug-in to a module file of its own (outside the package), imports it, and the
module registers itself with `register_method(MethodSpec(...))`. Then the method must be listed by
`loralab methods ls`, pass the whole method contract (the same checks the contract suite runs on the
built-in methods, driven by the `MethodContract` it declares) and run in a one-cell benchmark grid.
"""

from __future__ import annotations

import importlib
import json
import sys
import textwrap

import pytest
from helpers import run_cli

from loralab.moe.registry import METHODS

from .contract import check_contract

NAME = "plugin_lora"
MODULE = "loralab_test_plugin_lora"

# One LoRA per target linear: an expert bank of one whose gate is always 1. With one library LoRA it
# starts from that LoRA (so the one-expert check applies); its update is static, so it merges.
PLUGIN = f'''
"""A user's own method, built with loralab's shared builder."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from loralab.errors import UserInputError
from loralab.moe.builder import MethodBuilder, expert_weights
from loralab.moe.config import MethodConfig, check_positive
from loralab.moe.layer import MoELoRALinear
from loralab.moe.registry import MethodContract, MethodSpec, register_method
from loralab.moe.routers import Router


@dataclass
class PluginLoRAConfig(MethodConfig):
    rank: int = 4
    alpha: float = 8.0
    targets: str | tuple[str, ...] = "all"
    modules: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        check_positive("rank", self.rank)


class AlwaysOn(Router):
    def forward(self, x, state):
        ones = torch.ones(x.shape[0], 1, 1, device=x.device)
        return ones, ones


def merge_deltas(moe, task_id):
    return {{name: layer.expert_delta(torch.ones(1, device=layer.scaling.device))
            for name, layer in moe.model.named_modules() if isinstance(layer, MoELoRALinear)}}


def build(model, cfg, experts, tasks):
    if experts and len(experts) != 1:
        raise UserInputError(f"{NAME} starts from at most one library LoRA, not {{len(experts)}}")
    lora = experts[0] if experts else None
    if lora is not None:
        cfg = cfg.replace(rank=lora.rank)
    builder = MethodBuilder(model, "{NAME}")
    scaling = lora.scaling if lora is not None else cfg.alpha / cfg.rank

    def make(name, base):
        layer = MoELoRALinear(base, AlwaysOn(1), 1, cfg.rank, scaling, 0.0, builder.state, name=name)
        if lora is not None:
            layer.set_expert(0, *expert_weights(lora, name))
        return layer

    builder.inject(builder.targets(cfg), make)
    return builder.finish(cfg, tasks, experts, trainable=lambda n: "lora_" in n, merge_deltas=merge_deltas)


register_method(MethodSpec(
    name="{NAME}", config_cls=PluginLoRAConfig, build=build, library="optional", mergeable=True, paper="",
    description="Plug-in test method: one always-on LoRA per linear.",
    contract=MethodContract(config={{"rank": 2}}),
))
'''


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """The plug-in module imported from its own file (it registers itself); unregistered afterwards."""
    folder = tmp_path / "plugin"
    folder.mkdir()
    (folder / f"{MODULE}.py").write_text(textwrap.dedent(PLUGIN), encoding="utf-8")
    monkeypatch.syspath_prepend(str(folder))
    assert NAME not in METHODS
    try:
        importlib.import_module(MODULE)
        yield METHODS.get(NAME)
    finally:
        METHODS.unregister(NAME)
        sys.modules.pop(MODULE, None)


def test_plugin_is_listed_by_methods_ls(plugin, monkeypatch, capsys):
    code, stdout, _ = run_cli(monkeypatch, capsys, "methods", "ls")
    assert code == 0
    assert NAME in stdout and "Plug-in test method" in stdout and "loramoe" in stdout


def test_plugin_passes_the_method_contract(plugin, tiny_libraries, tmp_path):
    check_contract(NAME, tiny_libraries, tmp_path)


def test_plugin_runs_in_a_bench_grid(plugin, tmp_path):
    from loralab.bench import Store, bench_from_mapping, run_bench

    task = tmp_path / "parity.jsonl"
    task.write_text("".join(json.dumps({"prompt": f"Q: is {i} even?\nA:", "choices": [" yes", " no"],
                                        "answer_index": i % 2, "split": "test" if i % 3 == 0 else "train"}) + "\n"
                            for i in range(24)), encoding="utf-8")
    bench = bench_from_mapping({
        "name": "plugin", "models": ["tiny-llama"], "targets": [str(task)], "methods": [NAME],
        "from_scratch": [NAME], "library": {"tasks": []}, "seeds": [0],
        "train": {"max_steps": 1, "batch_size": 4, "rank": 4, "max_length": 64}, "eval": {"limit": 8},
        "device": "cpu",
    })
    result = run_bench(bench, tmp_path / "bench")
    assert result.cells == result.ran == 1 and not result.failed
    with Store(result.db, create=False) as store:
        (row,) = store.rows(volatile=False)
    assert row["method"] == NAME and row["target"] == "parity" and row["n"] == 8
    assert 0.0 <= row["score"] <= 1.0
