"""The contract every method passes, on tiny models of several architectures (checks in `contract.py`).

* save/load round trip gives identical logits;
* gradients reach exactly the parameters the paper trains, and nothing else;
* one expert whose gate is 1 reproduces plain PEFT LoRA output (the library LoRA it came from);
* mergeable methods give the same logits merged and unmerged, for every task;
* `unload()` gives back the untouched base model.

The suite runs over the method registry itself: every registered method with a `MethodSpec.contract`
(its small test settings, declared beside the method) is in it, so a new method is covered by its
registration alone. A method without one must write its own checkpoint (a custom `train`: the
PEFT-format baselines, `base`, LoraHub), and is covered by its own test file.
"""

from __future__ import annotations

import pytest

from loralab.moe.registry import all_methods

from .contract import (
    ARCHS,
    check_gradients,
    check_merge,
    check_one_expert,
    check_refuses_merge,
    check_round_trip,
    check_unload,
    takes_one_expert,
)

SPECS = all_methods()
CONTRACT = sorted(m for m, s in SPECS.items() if s.contract is not None)


def test_methods_without_a_contract_write_their_own_checkpoint():
    opted_out = {m: s for m, s in SPECS.items() if s.contract is None}
    assert all(s.train is not None for s in opted_out.values()), \
        "only methods with their own `train` (no trainable MoEModel) may go without a contract"
    # a registry that lost the built-in MoE methods would pass everything else vacuously
    assert {"hydralora", "loramoe", "mixlora", "moelora", "more", "mtllora", "multilora", "rocket",
            "xlora"} <= set(CONTRACT)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("method", CONTRACT)
def test_save_load_round_trip_identical_logits(tmp_path, tiny_libraries, method, arch):
    check_round_trip(method, arch, tiny_libraries, tmp_path)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("method", CONTRACT)
def test_gradients_reach_exactly_the_trained_parameters(tiny_libraries, method, arch):
    check_gradients(method, arch, tiny_libraries)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("method", [m for m in CONTRACT if takes_one_expert(SPECS[m])])
def test_one_expert_with_gate_one_equals_plain_peft_lora(tiny_libraries, method, arch):
    check_one_expert(method, arch, tiny_libraries)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("method", [m for m in CONTRACT if SPECS[m].mergeable])
def test_merged_equals_unmerged_per_task(tiny_libraries, method, arch):
    check_merge(method, arch, tiny_libraries)


@pytest.mark.parametrize("method", CONTRACT)
def test_unload_restores_the_base_model(tiny_libraries, method):
    check_unload(method, tiny_libraries)


@pytest.mark.parametrize("method", [m for m in CONTRACT if not SPECS[m].mergeable])
def test_token_routed_methods_refuse_to_merge(tiny_libraries, method):
    check_refuses_merge(method, tiny_libraries)
