"""What every strategy shares: strategy and option names, k, leave-one-out, the library check, ranking."""

from __future__ import annotations

import dataclasses

import pytest

from loralab.errors import ConfigError, UnknownNameError, UserInputError
from loralab.library import LoRAHparams, build_library
from loralab.models import build_tiny_model
from loralab.selection import Selection, Selector, all_selectors, rank_scores, register_selector, select_experts

from .conftest import TASKS, styled_task


def test_registry_lists_the_four_strategies_and_refuses_a_clash():
    selectors = all_selectors()
    assert list(selectors) == ["embedding", "manual", "ppl", "random"]
    assert all(issubclass(cls, Selector) and dataclasses.is_dataclass(cls.config_cls) for cls in selectors.values())

    class Impostor(Selector):
        name = "ppl"
        description = score_name = "x"
        config_cls = dict

        def scores(self, context):
            return {}

    with pytest.raises(ValueError, match="already registered"):
        register_selector(Impostor)


def test_unknown_strategy_says_did_you_mean(tiny_library):
    root, tasks = tiny_library
    with pytest.raises(UnknownNameError, match="Did you mean 'embedding'") as info:
        select_experts("embeding", "tiny-llama", root, tasks["parity"], k=1)
    assert "\n" not in str(info.value)


def test_an_option_of_another_strategy_is_refused(tiny_library):
    root, tasks = tiny_library
    with pytest.raises(ConfigError, match="option 'seed' does not apply to strategy 'ppl'; its options: n_examples"):
        select_experts("ppl", "tiny-llama", root, tasks["parity"], k=1, seed=3)
    with pytest.raises(ConfigError, match="split must be one of train, validation"):
        select_experts("ppl", "tiny-llama", root, tasks["parity"], k=1, split="test")
    with pytest.raises(ConfigError, match="n_examples must be an integer >= 1, got 0"):
        select_experts("embedding", "tiny-llama", root, tasks["parity"], k=1, n_examples=0)


@pytest.mark.parametrize("exclude_own, k_max", [(True, 3), (False, 4)])
def test_k_outside_the_candidates_names_the_field_and_the_range(tiny_library, exclude_own, k_max):
    root, tasks = tiny_library
    for k in (0, k_max + 1):
        with pytest.raises(UserInputError, match=f"^k must be between 1 and {k_max} .*got {k}") as info:
            select_experts("random", "tiny-llama", root, tasks["parity"], k=k, exclude_own=exclude_own)
        assert "\n" not in str(info.value)
    chosen = select_experts("random", "tiny-llama", root, tasks["parity"], k=k_max, exclude_own=exclude_own)
    assert len(chosen) == k_max


def test_leave_one_out_excludes_the_own_lora_and_says_so(tiny_library):
    root, tasks = tiny_library
    chosen = select_experts("random", "tiny-llama", root, tasks["parity"], k=3)
    assert sorted(s.task for s in chosen) == ["colour", "echo", "succ"]
    assert all(s.own_lora == "excluded" and s.target == "parity" and s.strategy == "random" for s in chosen)
    kept = select_experts("random", "tiny-llama", root, tasks["parity"], k=4, exclude_own=False)
    assert sorted(s.task for s in kept) == sorted(TASKS) and {s.own_lora for s in kept} == {"included"}
    outsider = dataclasses.replace(styled_task("parity"), name="parity_copy")  # same data, no LoRA of its own
    absent = select_experts("random", "tiny-llama", root, outsider, k=4)
    assert sorted(s.task for s in absent) == sorted(TASKS) and {s.own_lora for s in absent} == {"absent"}


def test_records_are_ranked_and_point_at_the_adapters(tiny_library):
    root, tasks = tiny_library
    chosen = select_experts("manual", "tiny-llama", root, tasks["parity"], k=3)
    assert [s.rank for s in chosen] == [1, 2, 3]
    assert all(isinstance(s, Selection) and s.score_name == "relevance" for s in chosen)
    assert chosen[0].path == str(root / "tiny-llama" / chosen[0].task)
    assert chosen[0].to_dict()["own_lora"] == "excluded"


def test_library_without_adapters_for_the_model(tiny_library, tmp_path):
    root, tasks = tiny_library
    with pytest.raises(UserInputError, match="no adapters for model 'tiny-qwen2'; it has adapters for: tiny-llama"):
        select_experts("random", "tiny-qwen2", root, tasks["parity"], k=1)
    with pytest.raises(UserInputError, match="library folder does not exist"):
        select_experts("random", "tiny-llama", tmp_path / "nope", tasks["parity"], k=1)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserInputError, match="it has no adapters at all"):
        select_experts("random", "tiny-llama", tmp_path / "empty", tasks["parity"], k=1)


def test_a_library_holding_only_the_targets_own_lora(tmp_path):
    task = styled_task("parity")
    build_library(build_tiny_model("llama", seed=0), [task], tmp_path, hparams=LoRAHparams(max_steps=1, batch_size=4),
                  eval_limit=0, progress=False)
    with pytest.raises(UserInputError, match="only the target's own LoRA .*--include-own"):
        select_experts("random", "tiny-llama", tmp_path, task, k=1)
    assert select_experts("random", "tiny-llama", tmp_path, task, k=1, exclude_own=False)[0].task == "parity"


def test_ranking_breaks_ties_by_name_and_respects_direction():
    scores = {"b": 1.0, "a": 1.0, "c": 0.5, "d": 2.0}
    assert [n for n, _ in rank_scores(scores, higher_is_better=True)] == ["d", "a", "b", "c"]
    assert [n for n, _ in rank_scores(scores, higher_is_better=False)] == ["c", "a", "b", "d"]
    with pytest.raises(ValueError, match="NaN"):
        rank_scores({"a": float("nan")}, higher_is_better=True)
