"""Bad input: every case raises the exact error class with a one-line message naming the field or value."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from loralab.data import (
    Example,
    GenerationSpec,
    Task,
    load_bigbench_task,
    load_csv_task,
    load_gsm8k_task,
    load_jsonl_task,
    load_task,
    load_task_config,
    suite_task,
)
from loralab.data.files import MAX_FIELD_CHARS
from loralab.errors import EmptySplitError, LoralabError, TaskFormatError, UnknownNameError, UserInputError

LOADERS: dict[str, Callable[[Path], Any]] = {
    "task.json": load_bigbench_task,
    "t.jsonl": load_jsonl_task,
    "t.csv": load_csv_task,
    "t.yaml": load_task_config,
    "gsm8k.jsonl": load_gsm8k_task,
}


def one_line(exc: BaseException) -> str:
    message = str(exc)
    assert message and "\n" not in message and "\r" not in message, repr(message)
    return message


def jl(*records: Any) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def bb(examples: Any = None, **fields: Any) -> str:
    data = {"name": "t", **fields}
    if examples is not None:
        data["examples"] = examples
    return json.dumps(data)


MC = {"prompt": "p", "choices": ["a", "b"], "answer_index": 0}
GEN = {"prompt": "p", "targets": "x"}
SCORES = {"a": 1, "b": 0}

# (id, file name, content, expected fragments); TaskFormatError for all of these.
FILE_CASES: list[tuple[str, str, str | bytes, list[str]]] = [
    # ---- BIG-bench task.json
    (
        "bb_malformed_json",
        "task.json",
        '{\n  "examples": [,]\n}',
        ["invalid JSON at line 2 column 16: Expecting value", "task.json"],
    ),
    ("bb_truncated_json", "task.json", '{"examples": [', ["invalid JSON at line 1 column 15"]),
    (
        "bb_invalid_utf8",
        "task.json",
        b'{"examples": [{"input": "caf\xe9", "target": "x"}]}',
        ["not valid UTF-8 (byte 28)"],
    ),
    ("bb_non_object_list", "task.json", "[1, 2]", ["a BIG-bench task must be a JSON object, got list"]),
    ("bb_non_object_string", "task.json", '"task"', ["must be a JSON object, got str"]),
    ("bb_missing_examples", "task.json", bb(), ["'examples' must be a non-empty list"]),
    ("bb_empty_examples", "task.json", bb([]), ["'examples' must be a non-empty list"]),
    ("bb_examples_not_list", "task.json", bb({"input": "x"}), ["'examples' must be a non-empty list"]),
    ("bb_example_not_object", "task.json", bb([{"input": "x", "target": "y"}, "oops"]), ["cannot tell the task kind"]),
    ("bb_example_without_input", "task.json", bb([{"target": "y"}]), ["examples[0]", "'input' must be a string"]),
    ("bb_input_not_string", "task.json", bb([{"input": 5, "target": "y"}]), ["'input' must be a string, got 5"]),
    (
        "bb_no_target_at_all",
        "task.json",
        bb([{"input": "x"}]),
        ["cannot tell the task kind", "'target_scores' or 'target'"],
    ),
    (
        "bb_score_not_number",
        "task.json",
        bb([{"input": "x", "target_scores": {"a": "1", "b": 0}}]),
        ["score of choice 'a' must be a number, got '1'"],
    ),
    (
        "bb_score_bool",
        "task.json",
        bb([{"input": "x", "target_scores": {"a": True, "b": 0}}]),
        ["score of choice 'a' must be a number, got True"],
    ),
    (
        "bb_all_zero_scores",
        "task.json",
        bb([{"input": "x", "target_scores": {"a": 0, "b": 0}}]),
        ["examples[0]: no correct answer"],
    ),
    (
        "bb_negative_scores",
        "task.json",
        bb([{"input": "x", "target_scores": {"a": -1, "b": -2}}]),
        ["no correct answer"],
    ),
    (
        "bb_one_choice",
        "task.json",
        bb([{"input": "x", "target_scores": {"a": 1}}]),
        ["'target_scores' must map at least 2 choices"],
    ),
    (
        "bb_one_nonempty_choice",
        "task.json",
        bb([{"input": "x", "target_scores": {"": 0, "a": 1}}]),
        ["fewer than 2 non-empty choices"],
    ),
    (
        "bb_scores_not_object",
        "task.json",
        bb([{"input": "x", "target_scores": ["a", "b"]}]),
        ["'target_scores' must map at least 2 choices"],
    ),
    (
        "bb_target_empty_list",
        "task.json",
        bb([{"input": "x", "target": []}]),
        ["'target' must be a string or a non-empty list of strings"],
    ),
    ("bb_target_number", "task.json", bb([{"input": "x", "target": 4}]), ["'target' must be a string"]),
    (
        "bb_mc_kind_missing_scores",
        "task.json",
        bb(
            [{"input": "x", "target_scores": SCORES}, {"input": "y", "target": "z"}],
            preferred_score="multiple_choice_grade",
        ),
        ["cannot tell the task kind"],
    ),
    (
        "bb_generation_missing_target",
        "task.json",
        bb(
            [{"input": "x", "target": "y"}, {"input": "z", "target_scores": SCORES}],
            preferred_score="multiple_choice_grade",
        ),
        ["cannot tell the task kind"],
    ),
    (
        "bb_prefix_not_string",
        "task.json",
        bb([{"input": "x", "target": "y"}], example_input_prefix=5),
        ["example_input_prefix must be a str, got 5"],
    ),
    (
        "bb_append_not_bool",
        "task.json",
        bb([{"input": "x", "target": "y"}], append_choices_to_input=1),
        ["append_choices_to_input must be a bool, got 1"],
    ),
    (
        "bb_separator_not_string",
        "task.json",
        bb([{"input": "x", "target": "y"}], few_shot_example_separator=None),
        ["few_shot_example_separator must be a str, got None"],
    ),
    (
        "bb_bad_output_regex",
        "task.json",
        bb([{"input": "x", "target": "y"}], output_regex="([0-9]+"),
        ["output_regex is not a valid regular expression", "'([0-9]+'"],
    ),
    (
        "bb_output_regex_not_string",
        "task.json",
        bb([{"input": "x", "target": "y"}], output_regex=["\\d"]),
        ["output_regex must be a string, got ['\\\\d']"],
    ),
    (
        "bb_stop_string_not_string",
        "task.json",
        bb([{"input": "x", "target": "y"}], stop_string=5),
        ["stop_string must be a string, got 5"],
    ),
    (
        "bb_lone_surrogate_input",
        "task.json",
        '{"examples": [{"input": "x\\ud800", "target": "y"}]}',
        ["prompt contains a lone surrogate"],
    ),
    (
        "bb_lone_surrogate_choice",
        "task.json",
        '{"append_choices_to_input": false, "examples": [{"input": "x", "target_scores": {"\\udfff": 1, "b": 0}}]}',
        ["choice contains a lone surrogate"],
    ),
    (
        "bb_empty_prompt",
        "task.json",
        bb([{"input": " ", "target": "y"}], example_input_prefix="", example_output_prefix=""),
        ["prompt must be a non-empty string"],
    ),
    # ---- JSONL
    (
        "jsonl_malformed",
        "t.jsonl",
        jl(GEN) + '{"prompt": "p2", "targets": }\n',
        ["t.jsonl:2: invalid JSON", "at column 29"],
    ),
    ("jsonl_invalid_utf8", "t.jsonl", b'{"prompt": "\xff", "targets": "x"}\n', ["not valid UTF-8 (byte 12)"]),
    ("jsonl_not_object", "t.jsonl", jl(GEN, [1, 2]), ["t.jsonl:2: a record must be a JSON object, got list"]),
    (
        "jsonl_unknown_field_answer",
        "t.jsonl",
        jl({**MC, "answer": 0}),
        ["unknown field 'answer' (did you mean 'answer_index'?)", "allowed: id, prompt"],
    ),
    (
        "jsonl_unknown_field_promt",
        "t.jsonl",
        jl({"promt": "p", "targets": "x"}),
        ["unknown field 'promt' (did you mean 'prompt'?)"],
    ),
    ("jsonl_unknown_field_no_hint", "t.jsonl", jl({**GEN, "zzzzqq": 1}), ["unknown field 'zzzzqq'; allowed:"]),
    (
        "jsonl_missing_prompt",
        "t.jsonl",
        jl({"targets": "x"}),
        ["t.jsonl:1: 'prompt' must be a non-empty string, got None"],
    ),
    ("jsonl_blank_prompt", "t.jsonl", jl({"prompt": " \n", "targets": "x"}), ["'prompt' must be a non-empty string"]),
    (
        "jsonl_prompt_not_string",
        "t.jsonl",
        jl({"prompt": 3, "targets": "x"}),
        ["'prompt' must be a non-empty string, got 3"],
    ),
    (
        "jsonl_prompt_too_long",
        "t.jsonl",
        jl({"prompt": "x" * (MAX_FIELD_CHARS + 1), "targets": "x"}),
        [f"'prompt' has {MAX_FIELD_CHARS + 1} characters; the limit is {MAX_FIELD_CHARS}"],
    ),
    ("jsonl_neither_kind", "t.jsonl", jl({"prompt": "p"}), ["needs 'choices' + 'answer_index'", "or 'targets'"]),
    (
        "jsonl_empty_choices",
        "t.jsonl",
        jl({"prompt": "p", "choices": [], "answer_index": 0}),
        ["'choices' must be a list of at least 2 strings, got []"],
    ),
    (
        "jsonl_one_choice",
        "t.jsonl",
        jl({"prompt": "p", "choices": ["a"], "answer_index": 0}),
        ["'choices' must be a list of at least 2 strings, got ['a']"],
    ),
    (
        "jsonl_choices_string",
        "t.jsonl",
        jl({"prompt": "p", "choices": "ab", "answer_index": 0}),
        ["'choices' must be a list of at least 2 strings, got 'ab'"],
    ),
    (
        "jsonl_empty_choice",
        "t.jsonl",
        jl({"prompt": "p", "choices": ["a", ""], "answer_index": 0}),
        ["every choice must be a non-empty string"],
    ),
    ("jsonl_missing_answer_index", "t.jsonl", jl({"prompt": "p", "choices": ["a", "b"]}), ["needs 'answer_index'"]),
    ("jsonl_answer_out_of_range", "t.jsonl", jl({**MC, "answer_index": 2}), ["answer_index 2 out of range 0..1"]),
    (
        "jsonl_answer_list_out_of_range",
        "t.jsonl",
        jl({**MC, "answer_index": [0, 5]}),
        ["answer_index 5 out of range 0..1"],
    ),
    (
        "jsonl_answer_negative",
        "t.jsonl",
        jl({**MC, "answer_index": -1}),
        ["'answer_index' must be a non-negative int", "got -1"],
    ),
    ("jsonl_answer_bool", "t.jsonl", jl({**MC, "answer_index": True}), ["'answer_index' must be", "got True"]),
    ("jsonl_answer_bool_in_list", "t.jsonl", jl({**MC, "answer_index": [0, False]}), ["got [0, False]"]),
    ("jsonl_answer_empty_list", "t.jsonl", jl({**MC, "answer_index": []}), ["'answer_index' must be", "got []"]),
    ("jsonl_answer_string", "t.jsonl", jl({**MC, "answer_index": "0"}), ["'answer_index' must be", "got '0'"]),
    (
        "jsonl_targets_empty",
        "t.jsonl",
        jl({"prompt": "p", "targets": []}),
        ["'targets' must be a string or a non-empty list of strings, got []"],
    ),
    ("jsonl_targets_numbers", "t.jsonl", jl({"prompt": "p", "targets": [4]}), ["'targets' must be", "got [4]"]),
    (
        "jsonl_duplicate_ids",
        "t.jsonl",
        jl({**GEN, "id": "a"}, {"prompt": "q", "targets": "y", "id": "a"}),
        ["t.jsonl:2: duplicate id 'a' (first at", "t.jsonl:1)"],
    ),
    ("jsonl_duplicate_content", "t.jsonl", jl(GEN, GEN), ["t.jsonl:2: duplicate id"]),
    (
        "jsonl_duplicate_int_and_str_id",
        "t.jsonl",
        jl({**GEN, "id": 1}, {"prompt": "q", "targets": "y", "id": "1"}),
        ["duplicate id '1'"],
    ),
    ("jsonl_mixed_kinds", "t.jsonl", jl(MC, GEN), ["t.jsonl:2: mixes generation and multiple_choice records"]),
    ("jsonl_id_empty", "t.jsonl", jl({**GEN, "id": ""}), ["'id' must be a non-empty string, got ''"]),
    ("jsonl_id_bool", "t.jsonl", jl({**GEN, "id": False}), ["'id' must be a non-empty string, got False"]),
    ("jsonl_bad_split", "t.jsonl", jl({**GEN, "split": "dev"}), ["'split' must be one of", "got 'dev'"]),
    ("jsonl_metadata_not_object", "t.jsonl", jl({**GEN, "metadata": [1]}), ["'metadata' must be an object, got [1]"]),
    (
        "jsonl_generation_differs",
        "t.jsonl",
        jl(
            {**GEN, "generation": {"max_new_tokens": 5}},
            {"prompt": "q", "targets": "y", "generation": {"max_new_tokens": 6}},
        ),
        ["t.jsonl:2: 'generation' differs from earlier lines"],
    ),
    (
        "jsonl_generation_not_object",
        "t.jsonl",
        jl({**GEN, "generation": "greedy"}),
        ["'generation' must be an object, got 'greedy'"],
    ),
    (
        "jsonl_generation_bad_regex",
        "t.jsonl",
        jl({**GEN, "generation": {"answer_regex": "(unclosed"}}),
        ["generation.answer_regex is not a valid regular expression", "'(unclosed'"],
    ),
    (
        "jsonl_generation_bad_strict_regex",
        "t.jsonl",
        jl({**GEN, "generation": {"strict_regex": "[a-"}}),
        ["generation.strict_regex is not a valid regular expression"],
    ),
    (
        "jsonl_generation_regex_not_string",
        "t.jsonl",
        jl({**GEN, "generation": {"answer_regex": 5}}),
        ["generation.answer_regex must be a string, got 5"],
    ),
    (
        "jsonl_generation_unknown_key",
        "t.jsonl",
        jl({**GEN, "generation": {"max_tokens": 5}}),
        ["generation: unknown key(s) ['max_tokens']; allowed:"],
    ),
    (
        "jsonl_generation_zero_tokens",
        "t.jsonl",
        jl({**GEN, "generation": {"max_new_tokens": 0}}),
        ["generation.max_new_tokens must be an integer >= 1, got 0"],
    ),
    (
        "jsonl_generation_tokens_string",
        "t.jsonl",
        jl({**GEN, "generation": {"max_new_tokens": "8"}}),
        ["generation.max_new_tokens must be an integer >= 1, got '8'"],
    ),
    (
        "jsonl_generation_stop_string",
        "t.jsonl",
        jl({**GEN, "generation": {"stop": "\n"}}),
        ["generation.stop must be a list of strings, got '\\n'"],
    ),
    (
        "jsonl_generation_bad_pick",
        "t.jsonl",
        jl({**GEN, "generation": {"answer_pick": "middle"}}),
        ["generation.answer_pick must be 'first' or 'last', got 'middle'"],
    ),
    (
        "jsonl_generation_bad_normalize",
        "t.jsonl",
        jl({**GEN, "generation": {"normalize": "lower"}}),
        ["generation.normalize must be 'strip' or 'number', got 'lower'"],
    ),
    (
        "jsonl_lone_surrogate_with_id",
        "t.jsonl",
        '{"id": "a", "prompt": "p\\udc00", "targets": "x"}\n',
        ["prompt contains a lone surrogate"],
    ),
    (
        "jsonl_lone_surrogate_target",
        "t.jsonl",
        '{"prompt": "p", "targets": "\\ud83d"}\n',
        ["target contains a lone surrogate"],
    ),
    ("jsonl_empty_file", "t.jsonl", "\n\n", ["t.jsonl: no examples"]),
    # ---- CSV
    (
        "csv_bad_json_cell",
        "t.csv",
        'prompt,choices,answer_index\np,"[a, b]",0\n',
        ["t.csv:2: column 'choices' must hold JSON, got '[a, b]'"],
    ),
    (
        "csv_bad_answer_index",
        "t.csv",
        'prompt,choices,answer_index\np,"[""a"", ""b""]",x\n',
        ["t.csv:2: answer_index must be an integer, got 'x'"],
    ),
    ("csv_extra_cells", "t.csv", "prompt,targets\np,x,extra\n", ["t.csv:2: more cells than header columns"]),
    ("csv_unknown_column", "t.csv", "prompt,answers\np,x\n", ["unknown field 'answers'"]),
    ("csv_invalid_utf8", "t.csv", b"prompt,targets\n\xc3\x28,x\n", ["not valid UTF-8 (byte 15)"]),
    ("csv_header_only", "t.csv", "prompt,targets\n", ["t.csv: no examples"]),
    (
        "csv_out_of_range",
        "t.csv",
        'prompt,choices,answer_index\np,"[""a"", ""b""]",3\n',
        ["answer_index 3 out of range 0..1"],
    ),
    # ---- GSM8K
    (
        "gsm8k_no_final_answer",
        "gsm8k.jsonl",
        jl({"question": "q", "answer": "42"}),
        ["gsm8k.jsonl:1: answer has no '#### N' final answer"],
    ),
    (
        "gsm8k_missing_question",
        "gsm8k.jsonl",
        jl({"answer": "#### 1"}),
        ["needs string fields 'question' and 'answer'"],
    ),
    ("gsm8k_bad_json", "gsm8k.jsonl", '{"question": "q",\n', ["gsm8k.jsonl:1: invalid JSON"]),
    ("gsm8k_invalid_utf8", "gsm8k.jsonl", b'{"question": "\xff", "answer": "#### 1"}\n', ["not valid UTF-8"]),
    # ---- task YAML
    (
        "yaml_unknown_key",
        "t.yaml",
        "source: jsonl\npath: x.jsonl\nsorce: csv\n",
        ["unknown key 'sorce' (did you mean 'source'?)", "allowed:"],
    ),
    (
        "yaml_unknown_key_no_hint",
        "t.yaml",
        "source: jsonl\npath: x.jsonl\nwhatever: 1\n",
        ["unknown key 'whatever'; allowed:"],
    ),
    (
        "yaml_bad_source",
        "t.yaml",
        "source: bigbnech\npath: x\n",
        ["source: not an allowed value, did you mean 'bigbench'? (got 'bigbnech'; allowed: 'bigbench', 'gsm8k', 'jsonl', "
         "'csv', 'hf')"],
    ),
    ("yaml_missing_source", "t.yaml", "path: x\n", ["t.yaml: missing required key(s) source"]),
    ("yaml_missing_path", "t.yaml", "source: jsonl\n", ["t.yaml: missing required key(s) path"]),
    ("yaml_path_not_string", "t.yaml", "source: jsonl\npath: [a, b]\n",
     ["t.yaml: path: wrong type (got ['a', 'b']; allowed: a string)"]),
    (
        "yaml_hf_key_on_jsonl",
        "t.yaml",
        "source: jsonl\npath: x.jsonl\nprompt: '{q}'\n",
        ["['prompt'] only apply to source 'hf', not 'jsonl'"],
    ),
    ("yaml_not_mapping", "t.yaml", "- source: jsonl\n", ["a task config must be a mapping"]),
    ("yaml_invalid", "t.yaml", "source: [jsonl\n", ["invalid YAML ("]),
    (
        "yaml_generation_not_mapping",
        "t.yaml",
        "source: jsonl\npath: x.jsonl\ngeneration: 5\n",
        ["t.yaml: generation: wrong type (got 5; allowed: a mapping"],
    ),
    (
        "yaml_generation_unknown_key",
        "t.yaml",
        "source: jsonl\npath: x.jsonl\ngeneration: {stops: []}\n",
        ["t.yaml: generation: unknown key 'stops' (did you mean 'stop'?); allowed:"],
    ),
    (
        "yaml_missing_target_file",
        "t.yaml",
        "source: jsonl\npath: missing.jsonl\n",
        ["task file does not exist:", "missing.jsonl"],
    ),
    (
        "yaml_missing_gsm8k_file",
        "t.yaml",
        "source: gsm8k\npath: missing.jsonl\n",
        ["task file does not exist:", "missing.jsonl"],
    ),
    (
        "yaml_missing_bigbench_dir",
        "t.yaml",
        "source: bigbench\npath: nowhere\n",
        ["BIG-bench task path does not exist:", "nowhere"],
    ),
    ("yaml_invalid_utf8", "t.yaml", b"source: jsonl\npath: \xff\n", ["not valid UTF-8 (byte 20)"]),
]


@pytest.mark.parametrize(("name", "content", "fragments"), [c[1:] for c in FILE_CASES], ids=[c[0] for c in FILE_CASES])
def test_bad_file(tmp_path: Path, name: str, content: str | bytes, fragments: list[str]) -> None:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(TaskFormatError) as info:
        LOADERS[name](path)
    assert type(info.value) is TaskFormatError
    assert info.value.exit_code == 2 and isinstance(info.value, UserInputError)
    message = one_line(info.value)
    for fragment in fragments:
        assert fragment in message, (fragment, message)


@pytest.mark.parametrize(
    ("name", "content", "fragments"),
    [
        ("task.json", bb([{"input": "x", "target": "y"}], output_regex="(a"), ["output_regex", "task.json"]),
        ("t.jsonl", jl({"promt": "p", "targets": "x"}), ["did you mean 'prompt'?"]),
        ("t.csv", "prompt,targets\np,x,y\n", ["more cells than header columns"]),
        ("t.yaml", "source: jsonl\npath: x.jsonl\nsorce: csv\n", ["did you mean 'source'?"]),
    ],
    ids=["bigbench", "jsonl", "csv", "yaml"],
)
def test_bad_file_through_load_task(tmp_path: Path, name: str, content: str, fragments: list[str]) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(TaskFormatError) as info:
        load_task(str(path))
    assert type(info.value) is TaskFormatError
    for fragment in fragments:
        assert fragment in one_line(info.value)


# ------------------------------------------------------------------------------------------------
# Names and paths
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "suggestion"),
    [
        ("socal_iqa", "social_iqa"),
        ("gsm8", "gsm8k"),
        ("navigte", "navigate"),
        ("winowhyy", "winowhy"),
        ("zzzzzzzz", None),
    ],
)
def test_unknown_suite_name(spec: str, suggestion: str | None) -> None:
    for call in (lambda: load_task(spec), lambda: suite_task(spec)):
        with pytest.raises(UnknownNameError) as info:
            call()
        assert type(info.value) is UnknownNameError
        message = one_line(info.value)
        assert message.startswith(f"unknown task {spec!r}.")
        assert "Available: abstract_narrative_understanding, arithmetic_2_digit_addition" in message
        if suggestion is None:
            assert "Did you mean" not in message and info.value.suggestions == []
        else:
            assert f"Did you mean '{suggestion}'" in message and suggestion in info.value.suggestions


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("missing/task.jsonl", "task file does not exist: missing/task.jsonl"),
        ("missing.jsonl", "task file does not exist: missing.jsonl"),
        ("missing.csv", "task file does not exist: missing.csv"),
        ("missing.yaml", "task file does not exist: missing.yaml"),
        ("./nowhere", "task file does not exist: ./nowhere"),
    ],
)
def test_non_existent_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spec: str, fragment: str) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TaskFormatError) as info:
        load_task(spec)
    assert type(info.value) is TaskFormatError and one_line(info.value) == fragment


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (lambda d: load_jsonl_task(d / "nope.jsonl"), "task file does not exist:"),
        (lambda d: load_csv_task(d / "nope.csv"), "task file does not exist:"),
        (lambda d: load_gsm8k_task(d / "nope.jsonl"), "task file does not exist:"),
        (lambda d: load_task_config(d / "nope.yaml"), "task config does not exist:"),
        (lambda d: load_bigbench_task(d / "nope"), "BIG-bench task path does not exist:"),
        (lambda d: load_bigbench_task(d), "no task.json here or in subtask directories"),
    ],
    ids=["jsonl", "csv", "gsm8k", "yaml", "bigbench", "bigbench_empty_dir"],
)
def test_non_existent_path_direct_loaders(tmp_path: Path, call: Callable[[Path], Any], fragment: str) -> None:
    with pytest.raises(TaskFormatError) as info:
        call(tmp_path)
    assert type(info.value) is TaskFormatError and fragment in one_line(info.value)


def test_unknown_file_type(tmp_path: Path) -> None:
    path = tmp_path / "task.txt"
    path.write_text("hello", encoding="utf-8")
    with pytest.raises(TaskFormatError) as info:
        load_task(str(path))
    assert "unknown task file type '.txt'" in one_line(info.value)


def test_bad_kind_argument(tmp_path: Path) -> None:
    with pytest.raises(TaskFormatError) as info:
        load_task("social_iqa", kind="mc")
    assert type(info.value) is TaskFormatError
    assert one_line(info.value) == "kind must be one of ('multiple_choice', 'generation'), got 'mc'"
    path = tmp_path / "task.json"
    path.write_text(bb([{"input": "x", "target": "y"}]), encoding="utf-8")
    with pytest.raises(TaskFormatError) as info:
        load_bigbench_task(path, kind="multiple_choice")
    assert "a multiple-choice task needs 'target_scores' in every example" in one_line(info.value)
    path.write_text(bb([{"input": "x", "target_scores": SCORES}]), encoding="utf-8")
    with pytest.raises(TaskFormatError) as info:
        load_bigbench_task(path, kind="generation")
    assert "a generation task needs 'target' in every example" in one_line(info.value)


def test_example_not_object_with_kind(tmp_path: Path) -> None:
    path = tmp_path / "task.json"
    path.write_text(bb([{"input": "x", "target": "y"}, "oops"]), encoding="utf-8")
    with pytest.raises(TaskFormatError) as info:
        load_bigbench_task(path, kind="generation")
    assert one_line(info.value).endswith("task.json: examples[1]: must be an object, got str")


def test_missing_data_dir_is_user_input_error(tmp_path: Path) -> None:
    with pytest.raises(UserInputError) as info:
        load_task("social_iqa", data_dir=tmp_path / "no-such-dir")
    assert type(info.value) is UserInputError
    assert "is not an existing directory" in one_line(info.value) and "no-such-dir" in str(info.value)


# ------------------------------------------------------------------------------------------------
# Empty splits and bad Task/GenerationSpec construction
# ------------------------------------------------------------------------------------------------


def test_empty_split_from_file(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(jl({**GEN, "split": "train"}, {"prompt": "q", "targets": "y", "split": "train"}), encoding="utf-8")
    task = load_jsonl_task(path)
    assert len(task.split("train")) == 2
    for split, limit, message in [
        ("test", None, "task 't' has no examples in split 'test'"),
        ("validation", 5, "task 't' has no examples in split 'validation'"),
        ("train", 0, "limit must be >= 1, got 0"),
    ]:
        with pytest.raises(EmptySplitError) as info:
            task.split(split, limit=limit)
        assert type(info.value) is EmptySplitError and one_line(info.value) == message


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda: Task("t", "ranking", []), "kind must be one of ('multiple_choice', 'generation'), got 'ranking'"),
        (lambda: Task("t", "generation", [Example("a", "p")]), "a generation example needs at least one target"),
        (lambda: Task("t", "multiple_choice", [Example("a", "p", choices=("x", "y"))]), "no correct answer"),
        (
            lambda: Task("t", "multiple_choice", [Example("a", "p", choices=("x", "y"), answers=(2,))]),
            "answer index 2 out of range 0..1",
        ),
        (
            lambda: Task("t", "multiple_choice", [Example("a", "p", choices=("x",), answers=(0,))]),
            "multiple choice needs at least 2 choices, got 1",
        ),
        (
            lambda: Task("t", "multiple_choice", [Example("a", "p", choices=("x", ""), answers=(0,))]),
            "choices must be non-empty strings",
        ),
        (lambda: Task("t", "generation", [Example("a", " ", targets=("x",))]), "prompt must be a non-empty string"),
        (
            lambda: Task("t", "generation", [Example("a", "p", targets=("x",), split="dev")]),
            "split must be one of ('train', 'validation', 'test'), got 'dev'",
        ),
        (lambda: GenerationSpec(max_new_tokens=0), "generation.max_new_tokens must be an integer >= 1, got 0"),
        (lambda: GenerationSpec(max_new_tokens=True), "generation.max_new_tokens must be an integer >= 1, got True"),
        (lambda: GenerationSpec(answer_regex="("), "generation.answer_regex is not a valid regular expression"),
        (lambda: GenerationSpec.from_dict({"stop": [1]}), "generation.stop must be a list of strings, got [1]"),
    ],
    ids=[
        "bad_kind",
        "gen_no_target",
        "mc_no_answer",
        "mc_answer_range",
        "mc_one_choice",
        "mc_empty_choice",
        "blank_prompt",
        "bad_split",
        "zero_tokens",
        "bool_tokens",
        "bad_regex",
        "stop_not_strings",
    ],
)
def test_bad_construction(make: Callable[[], Any], fragment: str) -> None:
    with pytest.raises(TaskFormatError) as info:
        make()
    assert type(info.value) is TaskFormatError and fragment in one_line(info.value)


def test_error_hierarchy() -> None:
    for cls in (TaskFormatError, UnknownNameError, EmptySplitError):
        assert issubclass(cls, UserInputError) and issubclass(cls, LoralabError) and cls.exit_code == 2
