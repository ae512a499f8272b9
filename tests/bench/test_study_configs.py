"""The cpu-2026-12 study (studies/cpu-2026-12): its configs expand to the cells its README and comments describe,
and the design keeps the promises the findings depend on (relevant and unrelated LoRAs per target, own LoRA
left out, same budget and test examples, pre-registered claims)."""

from __future__ import annotations

import collections
import copy
from pathlib import Path

import pytest

from loralab.bench import bench_from_mapping, expand, load_bench
from loralab.utils.config import read_yaml_mapping

STUDY = Path(__file__).resolve().parents[2] / "studies" / "cpu-2026-12"
TRIO = ("loramoe", "xlora", "rocket")


@pytest.mark.data
def test_part_a_grid(data_dir):
    bench = load_bench(STUDY / "loralib.yaml")
    cells = expand(bench)
    assert len(cells) == 124
    counts = collections.Counter((c.method, c.strategy) for c in cells)
    for strategy in ("random", "ppl", "manual", "embedding"):
        for method in TRIO:
            assert counts[(method, strategy)] == 4 * 2  # 4 targets x 2 seeds
        # a merge trains nothing: one seed-free cell per target unless the strategy draws (random)
        assert counts[("merge_linear", strategy)] == (4 * 2 if strategy == "random" else 4)
    assert all(c.seed is None for c in cells if c.method == "merge_linear" and c.strategy != "random")
    assert counts[("base", None)] == counts[("lora", None)] == 4
    relevance = read_yaml_mapping(STUDY / "relevance.yaml")
    library = set(bench.library_names)
    assert len(bench.target_names) >= 4
    for target in bench.target_names:
        candidates = library - {target}  # the own LoRA is always left out of the pool
        relevant = set(relevance[target])
        assert target in library and relevant <= candidates and len(relevant) >= 2
        assert len(candidates - relevant) >= 4
    # same budget for the trio (only the learning rate is per method), same test examples, same modules
    trained = [c for c in cells if c.method in TRIO]
    budgets = {tuple(sorted((k, v) for k, v in c.protocol["train"].items() if k != "learning_rate"))
               for c in trained}
    assert len(budgets) == 1
    assert {(c.protocol["eval"]["split"], c.protocol["eval"]["limit"]) for c in cells} == {("test", 200)}
    assert {c.protocol["method_config"].get("targets") for c in trained if c.method != "xlora"} == {"all"}
    assert bench.config.precision == "fp32" and bench.config.k == (2,) and bench.config.seeds == (0, 1)
    claims = bench.config.claims
    assert [c["id"] for c in claims] == ["loramoe-vs-rocket", "loramoe-vs-xlora", "relevant-vs-ppl",
                                         "relevant-vs-random", "relevant-math-vs-random"]
    assert all(c.get("family", "headline") == "headline" for c in claims)


@pytest.mark.data
def test_part_b_grid(data_dir):
    bench = load_bench(STUDY / "more.yaml")
    cells = expand(bench)
    assert bench.config.multitask and len(bench.target_names) >= 4
    assert collections.Counter(c.method for c in cells) == {
        "base": 4, "more": 8, "multitask_lora": 8, "moelora": 8, "mixlora": 8, "mtllora": 8}
    trained = [c for c in cells if c.method != "base"]
    assert {c.protocol["train"]["max_steps"] for c in trained} == {300}
    assert {c.protocol["train"]["val_every"] for c in trained} == {50}
    assert {tuple(c.train_targets) for c in trained} == {tuple(bench.target_names)}
    assert [c["id"] for c in bench.config.claims] == ["more-vs-lora", "more-vs-moelora", "more-vs-mixlora",
                                                      "more-vs-mtllora"]


@pytest.mark.data
@pytest.mark.parametrize("name, expected", [("pilot-loralib", 4), ("pilot-more", 6)])
def test_pilots_use_the_validation_split_of_one_target(data_dir, name, expected):
    path = STUDY / f"{name}.yaml"
    data = copy.deepcopy(dict(read_yaml_mapping(path)))
    pilot = data.pop("pilot")
    assert len(pilot["learning_rates"]) >= 2
    bench = bench_from_mapping(data, where=str(path), base_dir=path.parent)
    cells = expand(bench)
    assert len(cells) == expected and len(bench.target_names) == 1
    assert {c.protocol["eval"]["split"] for c in cells} == {"validation"}
    assert set(pilot["methods"]) == {c.method for c in cells} - {"base"}


def test_pilot_builds_the_study_library():
    """pilot-loralib.yaml runs into the study's --out first, so its library must be the study's."""
    pilot, study = (read_yaml_mapping(STUDY / f"{n}.yaml") for n in ("pilot-loralib", "loralib"))
    assert pilot["library"] == study["library"]
    assert pilot["train"] == study["train"] and pilot["method_config"] == study["method_config"]
