"""`method_train`: per-method training overrides (e.g. each method's own learning rate) over `train`."""

from __future__ import annotations

import pytest

from loralab.bench import bench_from_mapping, expand
from loralab.errors import ConfigError


def _lr(cells, method):
    return {c.protocol["train"]["learning_rate"] for c in cells if c.method == method}


def test_override_reaches_only_its_method_and_changes_its_cell_ids(make_grid):
    plain = expand(bench_from_mapping(make_grid(methods=["loramoe", "xlora"])))
    tuned = expand(bench_from_mapping(make_grid(methods=["loramoe", "xlora"],
                                                method_train={"loramoe": {"learning_rate": 1.234e-4}})))
    assert _lr(tuned, "loramoe") == {1.234e-4}
    assert _lr(tuned, "xlora") == _lr(plain, "xlora") != {1.234e-4}
    same = {c.cell_id for c in plain if c.method == "xlora"} == {c.cell_id for c in tuned if c.method == "xlora"}
    assert same  # the untouched method keeps its cells (a resumed study reuses them)
    assert not {c.cell_id for c in plain if c.method == "loramoe"} & {c.cell_id for c in tuned if c.method == "loramoe"}


def test_override_keeps_the_other_train_fields(make_grid):
    bench = bench_from_mapping(make_grid(methods=["loramoe"], method_train={"loramoe": {"max_steps": 3}}))
    assert bench.hparams_for("loramoe").max_steps == 3
    assert bench.hparams_for("loramoe").learning_rate == bench.hparams.learning_rate


@pytest.mark.parametrize("section, message", [
    ({"lorammoe": {"learning_rate": 1e-3}}, "method_train has an entry for 'lorammoe', which is not in methods"),
    ({"loramoe": {"learning_rat": 1e-3}}, "method_train.loramoe: unknown key 'learning_rat' (did you mean "
                                          "'learning_rate'?)"),
    ({"loramoe": {"learning_rate": -1}}, "method_train.loramoe.learning_rate: out of range (got -1"),
])
def test_bad_override_is_one_line(make_grid, section, message):
    with pytest.raises(ConfigError) as info:
        bench_from_mapping(make_grid(methods=["loramoe"], method_train=section))
    assert message in str(info.value) and "\n" not in str(info.value)
