"""The 40-task suite: the registry itself, and (marked `data`) every task loaded from the shared data folder."""

from __future__ import annotations

import collections
import os
from pathlib import Path

import pytest

from loralab.data import DOMAINS, SPLITS, SUITE, load_task, suite_names, suite_task
from loralab.errors import UnknownNameError


def _data_dir() -> Path | None:
    configured = os.environ.get("LORALAB_DATA_DIR")
    path = Path(configured) if configured else Path(__file__).resolve().parents[3] / "shared" / "data"
    return path if (path / "bigbench").is_dir() and (path / "gsm8k" / "test.jsonl").is_file() else None


DATA_DIR = _data_dir()
needs_data = pytest.mark.skipif(DATA_DIR is None, reason="no data folder (set LORALAB_DATA_DIR or ../shared/data)")


# ------------------------------------------------------------------------------------------------
# Registry (no data needed)
# ------------------------------------------------------------------------------------------------


def test_suite_registry() -> None:
    assert len(SUITE) == 40
    assert sum(t.source == "bigbench" for t in SUITE.values()) == 39 and SUITE["gsm8k"].source == "gsm8k"
    assert len({t.path for t in SUITE.values()}) == 40
    for name, entry in SUITE.items():
        assert entry.name == name and entry.domain in DOMAINS
        assert entry.description.strip() and "\n" not in entry.description
    assert suite_names() == sorted(SUITE)
    by_domain = collections.Counter(t.domain for t in SUITE.values())
    assert set(by_domain) == set(DOMAINS)
    assert sum(len(suite_names(d)) for d in DOMAINS) == 40 and suite_names("math")[0] == "arithmetic_2_digit_addition"
    assert suite_task("social_iqa").path == "social_iqa"
    with pytest.raises(UnknownNameError):
        suite_task("social-iqa")


def test_suite_domain_is_validated() -> None:
    from loralab.data import SuiteTask

    with pytest.raises(ValueError, match="domain 'cooking' not in"):
        SuiteTask("x", "bigbench", "x", "cooking", "desc")


# ------------------------------------------------------------------------------------------------
# Real data
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def loaded() -> dict[str, object]:
    assert DATA_DIR is not None
    return {name: load_task(name, data_dir=DATA_DIR) for name in SUITE}


@pytest.mark.data
@needs_data
@pytest.mark.parametrize("name", sorted(SUITE))
def test_suite_task_loads(loaded: dict, name: str) -> None:
    task = loaded[name]
    entry = SUITE[name]
    assert task.name == name and task.domain == entry.domain and task.domain in DOMAINS
    assert task.description == entry.description and task.description.strip()
    assert task.source == f"{entry.source}:{entry.path}"
    assert len(task.split("test")) >= 1
    assert {ex.split for ex in task.examples} <= set(SPLITS)
    assert len({ex.id for ex in task.examples}) == len(task.examples)
    for ex in task.split("test", limit=20):
        assert ex.prompt.strip()
        if task.kind == "multiple_choice":
            assert len(ex.choices) >= 2 and "" not in ex.choices and ex.answers
        else:
            assert ex.targets


@pytest.mark.data
@needs_data
def test_suite_has_40_tasks(loaded: dict) -> None:
    assert len(loaded) == 40
    kinds = collections.Counter(task.kind for task in loaded.values())
    assert kinds["generation"] >= 5 and kinds["multiple_choice"] >= 30


@pytest.mark.data
@needs_data
def test_real_task_formats(loaded: dict) -> None:
    # logic_grid_puzzle has append_choices_to_input: "false" (a string), which BIG-bench treats as true;
    # read as BIG-bench renders it (bigbench:...), the choices are listed ...
    ex = load_task("bigbench:logic_grid_puzzle").split("test")[0]
    assert all("\n  choice: " + c in ex.prompt for c in ex.choices)
    # ... while the suite scores multiple choice as cloze (SUITE_FORMAT): no choice list, same ids.
    suite_ex = loaded["logic_grid_puzzle"].split("test")[0]
    assert suite_ex.id == ex.id and "choice: " not in suite_ex.prompt
    assert all("choice: " not in e.prompt for t in loaded.values() for e in t.examples[:50])
    # parsinlu_qa's empty choices are dropped.
    assert all("" not in e.choices for e in loaded["parsinlu_qa"].examples)
    # arithmetic: default prefixes, output_regex from the file.
    add = loaded["arithmetic_2_digit_addition"]
    assert add.kind == "generation" and add.generation.answer_regex == r"[-+]?\d+"
    assert all(e.prompt.startswith("\nQ: What is ") and e.prompt.endswith("\nA: ") for e in add.examples)
    # linguistic mappings: custom prefixes and few-shot separator.
    past = loaded["linguistic_mappings_past_tense"]
    assert past.fewshot_separator == ". "
    assert all(e.prompt.startswith("Today I ") and e.prompt.endswith(". Yesterday I ") for e in past.examples)
    # GSM8K: lm-eval prompt and numeric targets.
    gsm = loaded["gsm8k"]
    assert len(gsm.examples) == 1319
    assert all(e.prompt.startswith("Question: ") and e.prompt.endswith("\nAnswer:") for e in gsm.examples)
    assert all(e.targets[0].lstrip("-").replace(".", "").isdigit() for e in gsm.examples)


@pytest.mark.data
@needs_data
def test_real_split_is_stable(loaded: dict) -> None:
    """Loading again gives the same ids and splits (nothing depends on the run)."""
    again = load_task("social_iqa", data_dir=DATA_DIR)
    first = loaded["social_iqa"]
    assert [(e.id, e.split) for e in again.split("all")] == [(e.id, e.split) for e in first.split("all")]
    counts = collections.Counter(e.split for e in first.examples)
    assert abs(counts["train"] / len(first.examples) - 0.7) < 0.05
