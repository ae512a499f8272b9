"""BIG-bench task.json reader: every format field, checked on the exact rendered prompt string.

All fixtures are tiny task.json files written into tmp_path by the tests themselves.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from loralab.data import GenerationSpec, Task, load_bigbench_task, load_task
from loralab.data.bigbench import DEFAULT_OUTPUT_REGEX
from loralab.data.split import assign_split

Q, A, C = "\nQ: ", "\nA: ", "\n  choice: "  # BIG-bench's default prefixes


def write_task(folder: Path, data: Any, *, raw: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "task.json"
    path.write_text(raw if raw is not None else json.dumps(data), encoding="utf-8")
    return path


def gen_task(**fields: Any) -> dict[str, Any]:
    """A one-example generation task with the given top-level fields."""
    return {"name": "t", "preferred_score": "exact_str_match", "examples": [{"input": "2+2", "target": "4"}], **fields}


def mc_task(scores: dict[str, float] | None = None, **fields: Any) -> dict[str, Any]:
    scores = scores if scores is not None else {"yes": 1, "no": 0, "maybe": 0}
    return {
        "name": "t",
        "preferred_score": "multiple_choice_grade",
        "examples": [{"input": "Is it?", "target_scores": scores}],
        **fields,
    }


def only(task: Task):
    assert len(task.examples) == 1
    return task.examples[0]


def listed(choices: tuple[str, ...], prefix: str = C) -> str:
    return "".join(prefix + c for c in choices)


# ------------------------------------------------------------------------------------------------
# Prefix fields on a generation task (no choices, so the prompt is fully fixed)
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "prefix", "body"),
    [
        ({}, "", "\nQ: 2+2\nA: "),
        ({"task_prefix": "Add the numbers.\n"}, "Add the numbers.\n", "\nQ: 2+2\nA: "),
        ({"example_input_prefix": "Question: "}, "", "Question: 2+2\nA: "),
        ({"example_input_prefix": ""}, "", "2+2\nA: "),
        ({"example_output_prefix": "\nAnswer:"}, "", "\nQ: 2+2\nAnswer:"),
        ({"example_output_prefix": ""}, "", "\nQ: 2+2"),
        ({"task_prefix": "T|", "example_input_prefix": "I|", "example_output_prefix": "|O"}, "T|", "I|2+2|O"),
        # choice_prefix / append_choices_to_input change nothing without target_scores
        ({"choice_prefix": " | ", "append_choices_to_input": True}, "", "\nQ: 2+2\nA: "),
    ],
    ids=[
        "defaults",
        "task_prefix",
        "input_prefix",
        "empty_input_prefix",
        "output_prefix",
        "empty_output_prefix",
        "all_three",
        "choice_fields_without_choices",
    ],
)
def test_generation_prompt_prefixes(tmp_path: Path, fields: dict[str, Any], prefix: str, body: str) -> None:
    task = load_bigbench_task(write_task(tmp_path, gen_task(**fields)))
    ex = only(task)
    assert ex.prefix == prefix
    assert ex.body == body
    assert ex.prompt == prefix + body
    assert task.prompt(ex) == prefix + body
    assert ex.targets == ("4",)
    assert ex.choices == () and ex.answers == ()
    assert ex.metadata["input"] == "2+2"


# ------------------------------------------------------------------------------------------------
# Multiple choice: choice_prefix and append_choices_to_input
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "expected_list_prefix"),
    [
        ({}, C),
        ({"append_choices_to_input": True}, C),
        ({"choice_prefix": " | "}, " | "),
        ({"choice_prefix": ""}, ""),
        ({"choice_prefix": "\n choice:", "example_input_prefix": "\nProblem:"}, "\n choice:"),
        ({"append_choices_to_input": False}, None),
        ({"append_choices_to_input": False, "choice_prefix": " | "}, None),
        # BIG-bench tests the field for truthiness: the *string* "false" appends the choices.
        ({"append_choices_to_input": "false"}, C),
        ({"append_choices_to_input": ""}, None),
    ],
    ids=[
        "default",
        "append_true",
        "choice_prefix",
        "empty_choice_prefix",
        "with_input_prefix",
        "append_false",
        "append_false_ignores_choice_prefix",
        "append_string_false_is_truthy",
        "append_empty_string",
    ],
)
def test_multiple_choice_prompt(tmp_path: Path, fields: dict[str, Any], expected_list_prefix: str | None) -> None:
    task = load_bigbench_task(write_task(tmp_path, mc_task(**fields)))
    ex = only(task)
    assert task.kind == "multiple_choice" and task.metric == "acc"
    assert sorted(ex.choices) == ["maybe", "no", "yes"]
    assert [ex.choices[i] for i in ex.answers] == ["yes"]
    input_prefix = fields.get("example_input_prefix", Q)
    appended = "" if expected_list_prefix is None else listed(ex.choices, expected_list_prefix)
    assert ex.prompt == input_prefix + "Is it?" + appended + A
    if expected_list_prefix is not None:
        for choice in ex.choices:
            assert expected_list_prefix + choice in ex.prompt


def test_string_false_append_is_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="loralab.data.bigbench"):
        load_bigbench_task(write_task(tmp_path, mc_task(append_choices_to_input="false")))
    assert "append_choices_to_input is the string 'false'" in caplog.text


def test_choice_order_is_pinned(tmp_path: Path) -> None:
    """The appended order is BIG-bench's: sorted, then numpy.random.RandomState(42).permutation (indices
    [1, 3, 0, 2] for four choices): fixed forever. The id and split did not move when the order changed."""
    data = mc_task(
        examples=[{"input": "Which colour?", "target_scores": {"red": 0, "green": 1, "blue": 0, "cyan": 0}}]
    )
    ex = only(load_bigbench_task(write_task(tmp_path, data)))
    assert (ex.id, ex.split) == ("4e6257cadfe2635a", "test")
    assert ex.choices == ("cyan", "red", "blue", "green")
    assert ex.prompt == "\nQ: Which colour?\n  choice: cyan\n  choice: red\n  choice: blue\n  choice: green\nA: "
    assert ex.answers == (3,)


def test_choice_order_independent_of_json_key_order(tmp_path: Path) -> None:
    scores = {f"option {i}": float(i == 3) for i in range(8)}
    forward = load_bigbench_task(write_task(tmp_path / "a", mc_task(scores)))
    backward_scores = dict(reversed(list(scores.items())))
    # Also reorder the example's own keys and the top-level keys.
    backward = {
        "examples": [{"target_scores": backward_scores, "input": "Is it?"}],
        "preferred_score": "multiple_choice_grade",
        "name": "t",
    }
    backward_task = load_bigbench_task(write_task(tmp_path / "b", backward))
    a, b = only(forward), only(backward_task)
    assert a.id == b.id and a.split == b.split
    assert a.choices == b.choices and a.answers == b.answers and a.prompt == b.prompt
    assert a.choices[a.answers[0]] == "option 3"
    # Re-reading gives the same order; the order is a permutation of the sorted choices.
    assert only(load_bigbench_task(tmp_path / "a" / "task.json")).choices == a.choices
    assert sorted(a.choices) == sorted(scores)


def test_choice_order_same_for_same_choices(tmp_path: Path) -> None:
    """BIG-bench uses a fresh RandomState(42) per example, so the same choices are listed in the same order
    in every example (this test used to expect per-example orders: that was the deviation fixed)."""
    scores = {"a": 1, "b": 0, "c": 0, "d": 0}
    data = {"name": "t", "examples": [{"input": f"question {i}", "target_scores": scores} for i in range(20)]}
    task = load_bigbench_task(write_task(tmp_path, data))
    assert {ex.choices for ex in task.examples} == {("b", "d", "a", "c")}


# ------------------------------------------------------------------------------------------------
# Scores, targets and kinds
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scores", "correct", "all_choices"),
    [
        ({"a": 1, "b": 0}, {"a"}, {"a", "b"}),
        ({"a": 1, "b": 1, "c": 0}, {"a", "b"}, {"a", "b", "c"}),  # several max-score choices: all correct
        ({"a": 1.0, "b": 1.0, "c": 1.0}, {"a", "b", "c"}, {"a", "b", "c"}),
        ({"a": 0.5, "b": 0.25, "c": 0.0}, {"a"}, {"a", "b", "c"}),  # non-binary: only the best
        ({"a": 2, "b": 3, "c": 1}, {"b"}, {"a", "b", "c"}),
        ({"a": 0.5, "b": 0.5, "c": 0.1}, {"a", "b"}, {"a", "b", "c"}),
        ({"": 0, "x": 1, "y": 0}, {"x"}, {"x", "y"}),  # the empty choice is dropped
        ({"": 1, "x": 1, "y": 0}, {"x"}, {"x", "y"}),
    ],
    ids=[
        "binary",
        "two_best",
        "all_best",
        "fractional",
        "integers_above_one",
        "tied_fractional",
        "empty_choice_dropped",
        "empty_correct_choice_dropped",
    ],
)
def test_target_scores(tmp_path: Path, scores: dict[str, float], correct: set[str], all_choices: set[str]) -> None:
    ex = only(load_bigbench_task(write_task(tmp_path, mc_task(scores))))
    assert set(ex.choices) == all_choices and len(ex.choices) == len(all_choices)
    assert {ex.choices[i] for i in ex.answers} == correct
    assert list(ex.answers) == sorted(ex.answers)
    assert ex.prompt == Q + "Is it?" + listed(ex.choices) + A
    assert C + C not in ex.prompt and not ex.prompt.endswith(C + A)  # no empty choice listed


@pytest.mark.parametrize(
    ("target", "expected"),
    [("4", ("4",)), (["4"], ("4",)), (["4", "four", " 4"], ("4", "four", " 4")), ("", ("",))],
    ids=["string", "list_of_one", "list", "empty_string"],
)
def test_generation_targets(tmp_path: Path, target: Any, expected: tuple[str, ...]) -> None:
    data = gen_task(examples=[{"input": "2+2", "target": target}])
    ex = only(load_bigbench_task(write_task(tmp_path, data)))
    assert ex.targets == expected
    assert ex.demonstration_answer() == expected[0]


BOTH = {"input": "Is it?", "target": "yes", "target_scores": {"yes": 1, "no": 0}}


@pytest.mark.parametrize(
    ("preferred", "examples", "kind_arg", "kind"),
    [
        ("multiple_choice_grade", [BOTH], None, "multiple_choice"),
        ("exact_str_match", [BOTH], None, "generation"),
        (None, [BOTH], None, "generation"),
        ("bleu", [BOTH], None, "generation"),
        (None, [{"input": "Is it?", "target_scores": {"yes": 1, "no": 0}}], None, "multiple_choice"),
        ("exact_str_match", [{"input": "Is it?", "target_scores": {"yes": 1, "no": 0}}], None, "multiple_choice"),
        ("multiple_choice_grade", [{"input": "Is it?", "target": "yes"}], None, "generation"),
        ("multiple_choice_grade", [BOTH], "generation", "generation"),
        ("exact_str_match", [BOTH], "multiple_choice", "multiple_choice"),
    ],
    ids=[
        "mc_grade_both",
        "exact_match_both",
        "no_preferred_both",
        "other_score_both",
        "scores_only",
        "exact_match_scores_only",
        "mc_grade_target_only",
        "override_to_generation",
        "override_to_mc",
    ],
)
def test_kind(
    tmp_path: Path, preferred: str | None, examples: list[dict[str, Any]], kind_arg: str | None, kind: str
) -> None:
    data: dict[str, Any] = {"name": "t", "examples": examples}
    if preferred is not None:
        data["preferred_score"] = preferred
    task = load_bigbench_task(write_task(tmp_path, data), kind=kind_arg)
    ex = only(task)
    assert task.kind == kind
    assert task.metric == ("acc" if kind == "multiple_choice" else "exact_match")
    if kind == "multiple_choice":
        assert (
            set(ex.choices) == {"yes", "no"} and ex.choices[ex.answer_index] == "yes" and ex.targets in ((), ("yes",))
        )
    else:
        assert ex.choices == () and ex.targets == ("yes",)
    if "target_scores" in examples[0]:
        # BIG-bench appends the choices whenever an example has target_scores, whatever the scoring.
        order = tuple(sorted({"yes", "no"}, key=lambda c: ex.prompt.index(C + c)))
        assert ex.prompt == Q + "Is it?" + listed(order) + A
    else:
        assert ex.prompt == Q + "Is it?" + A


def test_kind_override_changes_nothing_but_kind(tmp_path: Path) -> None:
    path = write_task(tmp_path, {"name": "t", "preferred_score": "multiple_choice_grade", "examples": [BOTH]})
    as_mc, as_gen = load_bigbench_task(path), load_bigbench_task(path, kind="generation")
    assert only(as_mc).id == only(as_gen).id and only(as_mc).prompt == only(as_gen).prompt
    assert load_task(str(path), kind="generation").kind == "generation"


# ------------------------------------------------------------------------------------------------
# Generation spec: output_regex / stop_string
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "regex", "stop"),
    [
        ({}, DEFAULT_OUTPUT_REGEX, ()),
        ({"output_regex": r"[-+]?\d+"}, r"[-+]?\d+", ()),
        ({"stop_string": "."}, None, (".",)),
        ({"output_regex": r"\w+", "stop_string": "\n"}, r"\w+", ("\n",)),
        ({"stop_string": ""}, None, ()),
    ],
    ids=["default_regex", "output_regex", "stop_string", "both", "empty_stop_string"],
)
def test_generation_spec(tmp_path: Path, fields: dict[str, Any], regex: str | None, stop: tuple[str, ...]) -> None:
    task = load_bigbench_task(write_task(tmp_path, gen_task(**fields)))
    assert task.generation == GenerationSpec(
        max_new_tokens=32, stop=stop, answer_regex=regex, answer_pick="first", normalize="strip", strict_regex=None
    )
    assert DEFAULT_OUTPUT_REGEX == r"[^\.\?\!\;\n]+"


# ------------------------------------------------------------------------------------------------
# Few-shot layout
# ------------------------------------------------------------------------------------------------


def _by_input(task: Task) -> dict[str, Any]:
    return {ex.metadata["input"]: ex for ex in task.examples}


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, "\nQ: 1+1\nA: 2\n\nQ: 2+2\nA: 4\n\nQ: 3+3\nA: "),
        (
            {"few_shot_example_separator": "\n\n###\n", "task_prefix": "Add.\n"},
            "Add.\n\nQ: 1+1\nA: 2\n\n###\n\nQ: 2+2\nA: 4\n\n###\n\nQ: 3+3\nA: ",
        ),
        (
            {"few_shot_example_separator": ". ", "example_input_prefix": "Sum ", "example_output_prefix": " is "},
            "Sum 1+1 is 2. Sum 2+2 is 4. Sum 3+3 is ",
        ),
    ],
    ids=["default_separator", "separator_and_task_prefix", "linguistic_mappings_style"],
)
def test_fewshot_prompt(tmp_path: Path, fields: dict[str, Any], expected: str) -> None:
    examples = [{"input": f"{i}+{i}", "target": [str(2 * i), "other"]} for i in (1, 2, 3)]
    task = load_bigbench_task(write_task(tmp_path, gen_task(examples=examples, **fields)))
    by = _by_input(task)
    assert task.fewshot_separator == fields.get("few_shot_example_separator", "\n")
    assert task.prompt(by["3+3"], shots=[by["1+1"], by["2+2"]]) == expected
    assert task.prompt(by["3+3"], shots=[]) == by["3+3"].prompt


def test_fewshot_multiple_choice_demonstrates_correct_choice(tmp_path: Path) -> None:
    examples = [
        {"input": "sky?", "target_scores": {"blue": 1, "red": 0}},
        {"input": "grass?", "target_scores": {"green": 1, "red": 0}},
    ]
    task = load_bigbench_task(
        write_task(
            tmp_path, mc_task(examples=examples, append_choices_to_input=False, few_shot_example_separator=" || ")
        )
    )
    by = _by_input(task)
    assert task.prompt(by["grass?"], shots=[by["sky?"]]) == "\nQ: sky?\nA: blue || \nQ: grass?\nA: "


def test_fewshot_examples_from_train_split(tmp_path: Path) -> None:
    examples = [{"input": f"{i}+1", "target": str(i + 1)} for i in range(40)]
    task = load_bigbench_task(write_task(tmp_path, gen_task(examples=examples, few_shot_example_separator="\n\n")))
    query = task.split("test")[0]
    shots = task.fewshot_examples(query, 3)
    assert len(shots) == 3 and len({s.id for s in shots}) == 3
    assert all(s.split == "train" and s.id != query.id for s in shots)
    assert task.fewshot_examples(query, 3) == shots  # fixed per example
    assert task.fewshot_examples(query, 0) == []
    expected = "\n\n".join([*(s.body + s.targets[0] for s in shots), query.body])
    assert task.prompt(query, shots) == expected
    n_train = len(task.split("train"))
    assert len(task.fewshot_examples(query, 1000)) == n_train


# ------------------------------------------------------------------------------------------------
# Subtasks, duplicates, ids
# ------------------------------------------------------------------------------------------------


def _subtask_dir(root: Path) -> Path:
    parent = root / "parent"
    write_task(
        parent / "sub_a",
        {
            "name": "sub_a",
            "preferred_score": "exact_str_match",
            "task_prefix": "A-task\n",
            "example_input_prefix": "\nInA: ",
            "example_output_prefix": "\nOutA: ",
            "output_regex": r"\d+",
            "examples": [{"input": f"a{i}", "target": str(i)} for i in range(12)]
            + [{"input": "shared", "target": "0"}],
        },
    )
    write_task(
        parent / "sub_b",
        {
            "name": "sub_b",
            "preferred_score": "exact_str_match",
            "example_input_prefix": "InB: ",
            "example_output_prefix": " => ",
            "examples": [{"input": f"b{i}", "target": str(i)} for i in range(7)]
            + [{"input": "shared", "target": "0"}],
        },
    )
    return parent


def test_subtasks_union_with_own_prefixes(tmp_path: Path) -> None:
    parent = _subtask_dir(tmp_path)
    task = load_bigbench_task(parent)
    assert len(task.examples) == 13 + 8  # "shared" is in both subtasks and kept in both
    assert {ex.metadata["subtask"] for ex in task.examples} == {"sub_a", "sub_b"}
    for ex in task.examples:
        text = ex.metadata["input"]
        if ex.metadata["subtask"] == "sub_a":
            assert ex.prompt == f"A-task\n\nInA: {text}\nOutA: "
        else:
            assert ex.prompt == f"InB: {text} => "
    assert len({ex.id for ex in task.examples}) == len(task.examples)
    # The parent directory also loads through load_task.
    assert [ex.id for ex in load_task(str(parent)).split("all")] == [ex.id for ex in task.split("all")]


@pytest.mark.parametrize("sub", ["sub_a", "sub_b"])
def test_subtask_alone_has_same_ids_and_splits(tmp_path: Path, sub: str) -> None:
    parent = _subtask_dir(tmp_path)
    union = {ex.id: ex for ex in load_bigbench_task(parent).examples if ex.metadata["subtask"] == sub}
    for source in (parent / sub, parent / sub / "task.json"):
        alone = load_bigbench_task(source)
        assert {ex.id: ex.split for ex in alone.examples} == {i: ex.split for i, ex in union.items()}
        assert {ex.id: ex.prompt for ex in alone.examples} == {i: ex.prompt for i, ex in union.items()}
        assert all("subtask" not in ex.metadata for ex in alone.examples)
        assert alone.name == sub
    assert all(ex.split == assign_split(ex.id) for ex in union.values())


def test_duplicate_examples_are_kept_once(tmp_path: Path) -> None:
    examples = [
        {"input": "Is it?", "target_scores": {"yes": 1, "no": 0}},
        {"input": "Is it?", "target_scores": {"no": 0, "yes": 1}},  # same content, other key order
        {"target_scores": {"yes": 1.0, "no": 0.0}, "input": "Is it?"},  # floats equal the ints
        {"input": "Is it?", "target_scores": {"yes": 0, "no": 1}},  # different scores: a different example
        {"input": "Is it really?", "target_scores": {"yes": 1, "no": 0}},
    ]
    task = load_bigbench_task(write_task(tmp_path, mc_task(examples=examples)))
    assert len(task.examples) == 3
    assert sorted(ex.metadata["input"] for ex in task.examples) == ["Is it really?", "Is it?", "Is it?"]


def test_source_id_and_names(tmp_path: Path) -> None:
    data = gen_task(examples=[{"input": "2+2", "target": "4", "id": 17}], description="Adds.")
    path = write_task(tmp_path / "adder", data)
    task = load_bigbench_task(path)
    assert only(task).metadata == {"input": "2+2", "source_id": 17}
    assert task.name == "t" and task.description == "Adds." and task.source == str(path)
    assert load_bigbench_task(path, name="renamed").name == "renamed"
    nameless = write_task(tmp_path / "nameless", {"examples": [{"input": "2+2", "target": "4"}]})
    assert load_bigbench_task(nameless.parent).name == "nameless"


def test_id_depends_on_content_not_position(tmp_path: Path) -> None:
    one = load_bigbench_task(write_task(tmp_path / "one", gen_task(examples=[{"input": "2+2", "target": "4"}])))
    two = load_bigbench_task(
        write_task(
            tmp_path / "two", gen_task(examples=[{"input": "1+1", "target": "2"}, {"input": "2+2", "target": "4"}])
        )
    )
    assert only(one).id in {ex.id for ex in two.examples}
    other_task = load_bigbench_task(write_task(tmp_path / "three", gen_task(name="other")))
    assert only(other_task).id != only(one).id  # the task name is part of the id


def test_format_overrides_change_prompt_not_ids(tmp_path):
    from loralab.data import load_bigbench_task
    from loralab.errors import TaskFormatError

    path = tmp_path / "task.json"
    path.write_text(json.dumps({"name": "t", "preferred_score": "multiple_choice_grade", "examples": [
        {"input": "Pick one.", "target_scores": {"yes": 1, "no": 0}}]}), encoding="utf-8")
    listed = load_bigbench_task(path).examples[0]
    cloze = load_bigbench_task(path, format_overrides={"append_choices_to_input": False}).examples[0]
    assert listed.prompt.count("\n  choice: ") == 2
    assert cloze.prompt == "\nQ: Pick one.\nA: "
    assert cloze.id == listed.id and cloze.split == listed.split
    with pytest.raises(TaskFormatError, match="format_overrides"):
        load_bigbench_task(path, format_overrides={"append_choice_to_input": False})
