"""The configs shipped inside the package: found from any directory, valid, and the grids they promise."""

from __future__ import annotations

import collections
from importlib import resources

import pytest

from loralab.bench import expand, load_bench, shipped_config
from loralab.data.suite import SUITE


def test_shipped_configs_are_package_data(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # `loralab bench` works from any directory
    for name in ("quickstart", "loralib"):
        assert shipped_config(name).is_file()
        assert resources.files("loralab.configs").joinpath(f"{name}.yaml").is_file()


@pytest.mark.data
def test_quickstart_grid(data_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bench = load_bench(None)  # no argument: the quickstart
    cells = expand(bench)
    assert bench.config.models == ("smollm2-135m",) and len(cells) == 13
    assert collections.Counter((c.method, c.strategy) for c in cells) == {
        ("loramoe", "random"): 2, ("loramoe", "manual"): 2, ("rocket", "random"): 2, ("rocket", "manual"): 2,
        ("merge_linear", "random"): 2, ("merge_linear", "manual"): 1, ("base", None): 1, ("lora", None): 1}
    assert set(bench.target_names) <= set(bench.library_names)
    # the findings it reports were declared before it ran: one that a working pipeline must support
    # (the own LoRA vs the base model) and LoRALib's claims, which may come out either way
    assert [c["id"] for c in bench.config.claims] == ["own-lora-vs-base", "relevant-vs-random-merge",
                                                      "relevant-vs-random-loramoe", "loramoe-vs-rocket"]


@pytest.mark.data
def test_loralib_grid_is_the_whole_suite(data_dir):
    bench = load_bench("loralib")
    cells = expand(bench)
    assert set(bench.library_names) == set(bench.target_names) == set(SUITE)
    assert bench.config.k == (2, 4, 8) and bench.config.seeds == (0, 1, 2)
    assert len(cells) == 40 * 3 * 4 * 3 * 3 + 40 + 40
    assert bench.hparams == bench.library_hparams  # methods train with the library's hyperparameters
    # LoRALib's findings, pre-registered: its two headline claims against each alternative, loralab's own secondary
    assert [(c["id"], c.get("family", "headline")) for c in bench.config.claims] == [
        ("loramoe-vs-rocket", "headline"), ("loramoe-vs-xlora", "headline"), ("manual-vs-ppl", "headline"),
        ("manual-vs-random", "headline"), ("embedding-vs-ppl", "secondary"), ("embedding-vs-random", "secondary")]
