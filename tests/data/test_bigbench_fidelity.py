"""BIG-bench fidelity: subtask unions, few-shot pools and answers, stop strings, exact_str_match, choice order,
duplicates and non-finite scores, each against BIG-bench 1.0.0's own behaviour (`bigbench/api/json_task.py`).

Fixtures are small task.json files written here; the tests on the real data skip without the data folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from helpers import run_cli
from loralab.data import Example, GenerationSpec, Task, example_record, load_jsonl_task, load_task, write_jsonl
from loralab.data.bigbench import (
    DEFAULT_OUTPUT_REGEX,
    BigBenchRule,
    BigBenchTask,
    bigbench_choice_order,
    bigbench_demonstration,
    bigbench_rule,
    load_bigbench_task,
)
from loralab.errors import TaskFormatError
from loralab.eval import evaluate
from loralab.eval.generate import generate_bigbench
from loralab.eval.metrics import bigbench_postprocess, exact_match, exact_str_match


def write_task(folder: Path, data: Any, *, raw: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "task.json"
    path.write_text(raw if raw is not None else json.dumps(data), encoding="utf-8")
    return path


def two_subtasks(root: Path) -> Path:
    """A task folder with two generation subtasks that differ in every per-subtask field."""
    parent = root / "pair"
    write_task(parent / "alpha", {
        "name": "alpha", "preferred_score": "exact_str_match",
        "few_shot_example_separator": " | ", "example_input_prefix": "A:", "example_output_prefix": " -> ",
        "output_regex": r"\d+",
        "examples": [{"input": f"a{i}", "target": str(i)} for i in range(30)],
    })
    write_task(parent / "beta", {
        "name": "beta", "preferred_score": "exact_str_match",
        "few_shot_example_separator": "\n##\n", "example_input_prefix": "B:", "example_output_prefix": " = ",
        "stop_string": ".",
        "examples": [{"input": f"b{i}", "target": f"{i}."} for i in range(30)],
    })
    return parent


def by_input(task: Task) -> dict[str, Example]:
    return {ex.metadata["input"]: ex for ex in task.examples}


# ------------------------------------------------------------------------------------------------
# 1. A union keeps each subtask's separator, generation rule and kind
# ------------------------------------------------------------------------------------------------


def test_union_renders_each_subtask_with_its_own_separator(tmp_path: Path) -> None:
    task = load_bigbench_task(two_subtasks(tmp_path))
    assert isinstance(task, BigBenchTask) and task.kind == "generation"
    ex = by_input(task)
    # Hand-written: BIG-bench joins demonstrations with the query's own subtask separator.
    assert task.prompt(ex["a3"], [ex["a1"], ex["a2"]]) == "A:a1 -> 1 | A:a2 -> 2 | A:a3 -> "
    assert task.prompt(ex["b3"], [ex["b1"], ex["b2"]]) == "B:b1 = 1.\n##\nB:b2 = 2.\n##\nB:b3 = "
    assert task.prompt(ex["b3"]) == "B:b3 = "
    assert ex["a1"].metadata["bigbench"] == {"few_shot_example_separator": " | ", "stop_string": None,
                                             "output_regex": r"\d+"}
    assert ex["b1"].metadata["bigbench"] == {"few_shot_example_separator": "\n##\n", "stop_string": ".",
                                             "output_regex": None}


def test_union_few_shot_prompts_use_own_subtask_end_to_end(tmp_path: Path) -> None:
    task = load_bigbench_task(two_subtasks(tmp_path))
    for query in task.split("test"):
        shots = task.fewshot_examples(query, 3)
        assert len(shots) == 3
        sub = query.metadata["subtask"]
        sep = {"alpha": " | ", "beta": "\n##\n"}[sub]
        assert all(s.metadata["subtask"] == sub for s in shots)
        assert task.prompt(query, shots) == sep.join([*(s.body + s.targets[0] for s in shots), query.body])


def test_union_keeps_each_subtask_generation_rule(tmp_path: Path) -> None:
    task = load_bigbench_task(two_subtasks(tmp_path))
    ex = by_input(task)
    assert bigbench_rule(task, ex["a1"]) == BigBenchRule(None, r"\d+")
    assert bigbench_rule(task, ex["b1"]) == BigBenchRule(".", None)


def test_single_task_rule_is_the_files_rule(tmp_path: Path) -> None:
    plain = load_bigbench_task(write_task(tmp_path / "p", {"examples": [{"input": "x", "target": "y"}]}))
    (ex,) = plain.examples
    assert "bigbench" not in ex.metadata  # nothing to add: the task-level fields say it all
    assert bigbench_rule(plain, ex) == BigBenchRule(None, DEFAULT_OUTPUT_REGEX)


class _Dummy(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))


def test_union_scored_with_each_subtask_rule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The evaluator applies alpha's regex to alpha and beta's stop string to beta (not the first one to all)."""
    task = load_bigbench_task(two_subtasks(tmp_path))
    seen_stops: list[list[str | None]] = []

    def fake_generate(model, tokenizer, prompts, stops, max_new_tokens):
        seen_stops.append(list(stops))
        # "7. tail": alpha's regex \d+ gives "7", beta keeps through the stop string: "7."
        return ["7. tail" for _ in prompts]

    monkeypatch.setattr("loralab.eval.evaluator.generate_bigbench", fake_generate)
    out = evaluate(_Dummy(), None, task, split="all", progress=False, log_samples=True)
    answers = {s["id"]: s["answer"] for s in out.samples}
    ex = by_input(task)
    assert answers[ex["a7"].id] == "7" and answers[ex["b7"].id] == "7."
    scores = {s["id"]: (s["exact_match"], s["exact_str_match"]) for s in out.samples}
    assert scores[ex["a7"].id] == (1.0, 1.0) and scores[ex["b7"].id] == (1.0, 1.0)
    assert scores[ex["a6"].id] == (0.0, 0.0)
    assert {s for batch in seen_stops for s in batch} == {None, "."}
    assert out.metrics["exact_match"] == pytest.approx(2 / 60)


def test_union_of_kinds_is_refused_in_one_line(tmp_path: Path, monkeypatch, capsys) -> None:
    parent = two_subtasks(tmp_path)
    write_task(parent / "gamma", {
        "name": "gamma", "preferred_score": "multiple_choice_grade",
        "examples": [{"input": "q", "target_scores": {"yes": 1, "no": 0}}],
    })
    with pytest.raises(TaskFormatError) as info:
        load_bigbench_task(parent)
    message = str(info.value)
    assert "\n" not in message and "mix kinds" in message
    assert "generation: alpha, beta" in message and "multiple_choice: gamma" in message
    code, out, err = run_cli(monkeypatch, capsys, "tasks", "show", str(parent))
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(lines) == 1 and "mix kinds" in lines[0] and "Traceback" not in err


def test_union_export_keeps_each_subtask_rule(tmp_path: Path) -> None:
    task = load_bigbench_task(two_subtasks(tmp_path))
    out = tmp_path / "export.jsonl"
    write_jsonl(out, (example_record(task, ex) for ex in task.split("all")))
    back = load_jsonl_task(out)
    for ex in back.examples:
        original = next(e for e in task.examples if e.id == ex.id)
        assert bigbench_rule(back, ex) == bigbench_rule(task, original) is not None
        assert ex.prompt == original.prompt


def test_generation_override_replaces_the_bigbench_rule(tmp_path: Path) -> None:
    task = load_bigbench_task(two_subtasks(tmp_path))
    assert not task.generation_overridden
    task.generation = GenerationSpec(answer_regex=r"\w+", stop=())  # what a task YAML's `generation:` does
    assert task.generation_overridden
    assert all(bigbench_rule(task, ex) is None for ex in task.examples)


@pytest.mark.parametrize(
    ("metadata", "needle"),
    [
        ({"bigbench": "x"}, "must be an object"),
        ({"bigbench": {"stop": "."}}, "unknown key"),
        ({"bigbench": {"stop_string": 3}}, "stop_string must be a string or null"),
        ({"bigbench": {"output_regex": "("}}, "not a valid regular expression"),
    ],
)
def test_bad_bigbench_metadata_in_a_file_is_one_line(tmp_path: Path, metadata: dict[str, Any], needle: str) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({"prompt": "Q", "targets": ["a"], "metadata": metadata}) + "\n", encoding="utf-8")
    task = load_jsonl_task(path)
    with pytest.raises(TaskFormatError, match=needle) as info:
        evaluate(_Dummy(), None, task, split="all", progress=False)
    assert "\n" not in str(info.value)


def test_real_linguistic_mappings_union(data_dir: Path) -> None:
    """The real union of linguistic_mappings subtasks: each renders with its own prefixes and separator, and
    draws its demonstrations from its own subtask (hand-written expectations)."""
    task = load_task("bigbench:linguistic_mappings")
    assert {ex.metadata["subtask"] for ex in task.examples} >= {"past_tense_json", "plural_json",
                                                                 "sentence_negation_json"}
    ids = {ex.id: ex for ex in task.examples}
    expected = {
        "0018f58e64b53456": "Today I control. Yesterday I controlled. Today I await. Yesterday I awaited. "
                            "Today I riddle. Yesterday I ",
        "00cae568b0001aab": "This is a uncle. Now there is another one. There are two uncles. "
                            "This is a white. Now there is another one. There are two whites. "
                            "This is a riot. Now there is another one. There are two ",
        "008a327c6212e0f7": "John thinks the nurse visits the cafe, but the nurse does not visit the cafe. "
                            "John thinks the student has visited the cafe, but the student has not visited the cafe. "
                            "John thinks they love television, but ",
    }
    for ex_id, prompt in expected.items():
        ex = ids[ex_id]
        shots = task.fewshot_examples(ex, 2)
        assert task.prompt(ex, shots) == prompt
        assert all(s.metadata["subtask"] == ex.metadata["subtask"] for s in shots)
    separators = {}
    for sub in (data_dir / "bigbench" / "linguistic_mappings").glob("*/task.json"):
        raw = json.loads(sub.read_text(encoding="utf-8"))
        separators[raw.get("name", sub.parent.name)] = raw.get("few_shot_example_separator", "\n")
    for ex in task.examples:
        assert ex.metadata["bigbench"]["few_shot_example_separator"] == separators[ex.metadata["subtask"]]


# ------------------------------------------------------------------------------------------------
# 2. Few-shot demonstrations come from the same subtask (and are unchanged without subtasks)
# ------------------------------------------------------------------------------------------------


def test_fewshot_pool_is_the_query_subtask(tmp_path: Path) -> None:
    task = load_bigbench_task(two_subtasks(tmp_path))
    for query in task.split("all"):
        shots = task.fewshot_examples(query, 100)
        expected = {ex.id for ex in task.split("train")
                    if ex.metadata["subtask"] == query.metadata["subtask"] and ex.id != query.id}
        assert {s.id for s in shots} == expected


def test_fewshot_without_subtasks_is_the_plain_draw(tmp_path: Path) -> None:
    data = {"examples": [{"input": f"{i}+1", "target": str(i + 1)} for i in range(40)]}
    task = load_bigbench_task(write_task(tmp_path, data))
    plain = Task(name=task.name, kind=task.kind, examples=task.examples)
    for query in task.split("test"):
        assert task.fewshot_examples(query, 3) == plain.fewshot_examples(query, 3)


# ------------------------------------------------------------------------------------------------
# 3. stop_string: BIG-bench keeps it and does not cut at index 0
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "stop", "regex", "expected"),
    [
        ("12. and more", ".", None, "12."),  # kept, not cut before
        (". 12. more", ".", None, ". 12. more"),  # at index 0: nothing is cut
        ("no stop here", ".", None, "no stop here"),
        ("ab\n\ncd\n\n", "\n\n", None, "ab\n\n"),
        ("x 42. y 7.", ".", r"\d+", "42"),  # then the first regex match
        ("words only", None, r"\d+", ""),  # no match: empty
        ("Paris. It is big", None, DEFAULT_OUTPUT_REGEX, "Paris"),
        ("keep all", None, None, "keep all"),
        ("keep", "", None, "keep"),
    ],
)
def test_bigbench_postprocess(text: str, stop: str | None, regex: str | None, expected: str) -> None:
    assert bigbench_postprocess(text, stop, regex) == expected


def test_stop_string_task_carries_bigbench_rule(tmp_path: Path) -> None:
    task = load_bigbench_task(write_task(tmp_path, {"stop_string": "\n", "examples": [{"input": "x", "target": "y"}]}))
    (ex,) = task.examples
    assert task.generation.stop == ("\n",) and task.generation.answer_regex is None
    assert ex.metadata["bigbench"] == {"few_shot_example_separator": "\n", "stop_string": "\n", "output_regex": None}
    assert bigbench_rule(task, ex) == BigBenchRule("\n", None)


@pytest.fixture(scope="module")
def tiny_llama():
    from loralab.models import build_tiny_model

    return build_tiny_model("llama", seed=1)


def test_generate_bigbench_stops_like_bigbench(tiny_llama) -> None:
    """Decoding stops where BIG-bench cuts (after the stop string, not at index 0); batching changes nothing."""
    model, tok = tiny_llama.model, tiny_llama.tokenizer
    prompts = ["the quick brown fox", "x y z"]
    free = generate_bigbench(model, tok, prompts, [None, None], 16)
    stops: list[str | None] = []
    for text in free:
        # An ASCII character (a whole byte token: nothing before it can still change) first seen at index > 0.
        stop = next((c for i, c in enumerate(text) if i > 0 and c.isascii() and c.isprintable() and text.find(c) == i),
                    None)
        assert stop is not None, free
        stops.append(stop)
    cut = generate_bigbench(model, tok, prompts, stops, 16)
    for text, stop, got in zip(free, stops, cut):
        assert bigbench_postprocess(got, stop, None) == text[:text.find(stop) + len(stop)]
        assert len(got) < len(text)  # decoding ended early
    # A stop string at index 0 never stops decoding (BIG-bench cuts nothing then).
    at_start = [t[:1] for t in free]
    assert generate_bigbench(model, tok, prompts, at_start, 16) == free
    # Row by row equals batched.
    assert [generate_bigbench(model, tok, [p], [s], 16)[0] for p, s in zip(prompts, stops)] == cut


# ------------------------------------------------------------------------------------------------
# 4. exact_match (stripped, primary) and BIG-bench's exact_str_match (not stripped), both reported
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pred", "targets", "stripped", "bigbench"),
    [(" 4", ["4"], 1.0, 0.0), ("4", ["4"], 1.0, 1.0), ("4", [" 4 "], 1.0, 0.0), ("4.", ["4"], 0.0, 0.0),
     ("x", ["a", "x"], 1.0, 1.0)],
)
def test_exact_match_variants(pred: str, targets: list[str], stripped: float, bigbench: float) -> None:
    assert exact_match(pred, targets, "strip") == stripped
    assert exact_str_match(pred, targets) == bigbench


def test_evaluate_reports_both_variants(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = {"examples": [{"input": "2+2", "target": "4"}, {"input": "3+3", "target": "6"}]}
    task = load_bigbench_task(write_task(tmp_path, data))
    monkeypatch.setattr("loralab.eval.evaluator.generate_bigbench",
                        lambda model, tok, prompts, stops, n: [" 4" if "2+2" in p else "6" for p in prompts])
    metrics = evaluate(_Dummy(), None, task, split="all", progress=False).metrics
    assert metrics["exact_match"] == 1.0 and metrics["exact_str_match"] == 0.5
    assert task.metric == "exact_match"


def test_plain_generation_task_has_no_exact_str_match(tiny_llama) -> None:
    examples = [Example(id="a", body="1 2 3", targets=("x",))]
    task = Task(name="gen", kind="generation", examples=examples, metric="exact_match",
                generation=GenerationSpec(max_new_tokens=2, stop=()))
    metrics = evaluate(tiny_llama.model, tiny_llama.tokenizer, task, split="test", progress=False).metrics
    assert "exact_str_match" not in metrics and "exact_match" in metrics


def test_cli_eval_bigbench_task_reports_both(tmp_path: Path, monkeypatch, capsys) -> None:
    root = tmp_path / "data"
    examples = [{"input": f"{i} plus {i}", "target": str(2 * i)} for i in range(12)]
    write_task(root / "bigbench" / "adder", {"name": "adder", "output_regex": r"\S+", "examples": examples})
    out_file = tmp_path / "r.json"
    code, out, err = run_cli(monkeypatch, capsys, "eval", "--model", "tiny-llama", "--task", "bigbench:adder",
                             "--data-dir", str(root), "--split", "all", "--limit", "4", "--out", str(out_file))
    assert code == 0, err
    record = json.loads(out_file.read_text())
    assert {"exact_match", "exact_str_match", "exact_match_stderr", "exact_str_match_stderr"} <= set(record["metrics"])
    assert record["primary_metric"] == "exact_match"
    assert "exact_str_match" in out and "exact_match" in out


# ------------------------------------------------------------------------------------------------
# 5. Choice order: sorted, then numpy.random.RandomState(42).permutation, fresh per example
# ------------------------------------------------------------------------------------------------

C = "\n  choice: "


@pytest.mark.parametrize(
    ("scores", "listed"),
    [
        # Hand-computed from BIG-bench's algorithm: RandomState(42).permutation(n) is [1, 0] for n=2,
        # [0, 1, 2] for 3, [1, 3, 0, 2] for 4, [1, 4, 2, 0, 3] for 5, applied to the sorted choices.
        ({"Yes": 1, "No": 0}, ["Yes", "No"]),
        ({"c": 0, "a": 1, "b": 0}, ["a", "b", "c"]),
        ({"red": 0, "green": 1, "blue": 0, "cyan": 0}, ["cyan", "red", "blue", "green"]),
        ({"e": 0, "d": 0, "c": 1, "b": 0, "a": 0}, ["b", "e", "c", "a", "d"]),
    ],
)
def test_choice_order_hand_computed(tmp_path: Path, scores: dict[str, int], listed: list[str]) -> None:
    data = {"preferred_score": "multiple_choice_grade", "examples": [{"input": "Q?", "target_scores": scores}]}
    (ex,) = load_bigbench_task(write_task(tmp_path, data)).examples
    assert ex.prompt == "\nQ: Q?" + "".join(C + c for c in listed) + "\nA: "
    assert list(ex.choices) == listed


def test_choice_order_is_bigbench_call_and_file_order_free(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    examples = []
    for i in range(25):
        n = int(rng.integers(2, 12))
        keys = [f"opt{int(k)}" for k in rng.choice(1000, size=n, replace=False)]
        examples.append({"input": f"q{i}", "target_scores": {k: float(j == 0) for j, k in enumerate(keys)}})
    forward = load_bigbench_task(write_task(tmp_path / "f", {"name": "t", "examples": examples}))
    backward = load_bigbench_task(write_task(tmp_path / "b", {"name": "t", "examples": [
        {"input": e["input"], "target_scores": dict(reversed(list(e["target_scores"].items())))}
        for e in reversed(examples)]}))
    for raw in examples:
        # What BIG-bench does for every example: a fresh RandomState(42), permutation of the sorted keys.
        reference = list(np.random.RandomState(42).permutation(sorted(raw["target_scores"])))
        assert bigbench_choice_order(list(raw["target_scores"])) == reference
        a, b = by_input(forward)[raw["input"]], by_input(backward)[raw["input"]]
        assert list(a.choices) == reference and a.prompt == b.prompt and a.id == b.id


def test_real_social_iqa_listing_matches_bigbench(data_dir: Path) -> None:
    raw = json.loads((data_dir / "bigbench" / "social_iqa" / "task.json").read_text(encoding="utf-8"))
    task = load_task("bigbench:social_iqa")
    byin = {}
    for ex in task.examples:
        byin.setdefault(ex.metadata["input"], ex)
    for r in raw["examples"][:200]:
        ex = byin[r["input"]]
        order = np.random.RandomState(42).permutation(sorted(r["target_scores"]))
        assert ex.body == "\nQ: " + r["input"] + "".join(C + c for c in order) + "\nA: "


# ------------------------------------------------------------------------------------------------
# 6. Few-shot answers: `target` when a multiple-choice example has one, else the first best choice in file order
# ------------------------------------------------------------------------------------------------


def test_mc_demonstration_is_target_when_present(tmp_path: Path) -> None:
    data = {"preferred_score": "multiple_choice_grade", "append_choices_to_input": False, "examples": [
        {"input": "Frost?", "target_scores": {"Yes": 1, "No": 0}, "target": "Yes. It is winter."},
        {"input": "Snow?", "target_scores": {"Yes": 1, "No": 0}, "target": "Yes"},
    ]}
    task = load_bigbench_task(write_task(tmp_path, data))
    ex = by_input(task)
    assert bigbench_demonstration(ex["Frost?"]) == "Yes. It is winter."
    assert ex["Frost?"].demonstration_answer() == "Yes"  # what the library trains on is unchanged
    assert "bigbench" not in ex["Snow?"].metadata  # the same as the correct choice: nothing to store
    assert task.prompt(ex["Snow?"], [ex["Frost?"]]) == "\nQ: Frost?\nA: Yes. It is winter.\n\nQ: Snow?\nA: "
    # An export keeps it: the re-read example demonstrates the same way.
    out = tmp_path / "e.jsonl"
    write_jsonl(out, [example_record(task, ex["Frost?"])])
    (back,) = load_jsonl_task(out).examples
    assert bigbench_demonstration(back) == "Yes. It is winter."


def test_mc_demonstration_is_first_best_in_file_order(tmp_path: Path) -> None:
    data = {"preferred_score": "multiple_choice_grade", "examples": [
        {"input": "count?", "target_scores": {"zero": 0, "three": 1, "3": 1}},
        {"input": "other?", "target_scores": {"3": 1, "three": 1, "zero": 0}},
    ]}
    ex = by_input(load_bigbench_task(write_task(tmp_path, data)))
    # Both list "3", "three", "zero" (sorted; identity permutation for 3) with answers 0 and 1.
    assert ex["count?"].choices == ex["other?"].choices == ("3", "three", "zero")
    assert bigbench_demonstration(ex["count?"]) == "three"
    assert bigbench_demonstration(ex["other?"]) == "3"
    assert ex["count?"].demonstration_answer() == ex["other?"].demonstration_answer() == "3"


def test_real_strategyqa_and_colored_objects_demonstrations(data_dir: Path) -> None:
    for task_name, check in (("strategyqa", "target"), ("reasoning_about_colored_objects", "first_best")):
        raw = json.loads((data_dir / "bigbench" / task_name / "task.json").read_text(encoding="utf-8"))
        byin = {ex.metadata["input"]: ex for ex in load_task(f"bigbench:{task_name}").examples}
        tested = 0
        for r in raw["examples"][:300]:
            ex = byin[r["input"]]
            if check == "target":
                expected = r["target"]
            else:
                top = max(r["target_scores"].values())
                expected = next(k for k, v in r["target_scores"].items() if v == top)
            assert bigbench_demonstration(ex) == expected
            tested += 1
        assert tested == 300


# ------------------------------------------------------------------------------------------------
# 7. Duplicates (a documented deviation): kept once, with unchanged ids
# ------------------------------------------------------------------------------------------------


def test_duplicates_differing_in_id_or_comment_are_kept_once(tmp_path: Path) -> None:
    examples = [
        {"input": "Is it?", "target_scores": {"yes": 1, "no": 0}, "id": 1},
        {"input": "Is it?", "target_scores": {"yes": 1, "no": 0}, "id": 2},
        {"input": "Is it?", "target_scores": {"yes": 1, "no": 0}, "comment": "again"},
    ]
    task = load_bigbench_task(write_task(tmp_path, {"name": "t", "examples": examples}))
    (ex,) = task.examples
    assert ex.metadata["source_id"] == 1
    assert (ex.id, ex.split) == ("9beea1816dc156f6", "test")  # the id the reader gave before these fixes


def test_real_fever_duplicates(data_dir: Path) -> None:
    raw = json.loads((data_dir / "bigbench" / "fact_checker" / "fever" / "task.json").read_text(encoding="utf-8"))
    task = load_task("bigbench:fact_checker/fever")
    assert len(raw["examples"]) - len(task.examples) == 85  # the deviation table's count for this task


# ------------------------------------------------------------------------------------------------
# 8. NaN, Infinity and non-numeric target_scores: one line naming file, example and value
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("score", "shown"),
    [("NaN", "NaN"), ("Infinity", "Infinity"), ("-Infinity", "-Infinity"), ("1e999", "Infinity"),
     ('"1"', "'1'"), ("null", "None"), ("[1]", "[1]")],
)
def test_bad_scores_are_one_line(tmp_path: Path, score: str, shown: str) -> None:
    raw = ('{"name": "t", "examples": [{"input": "ok", "target_scores": {"a": 1, "b": 0}},'
           ' {"input": "bad", "target_scores": {"a": 1, "b": ' + score + '}}]}')
    path = write_task(tmp_path, None, raw=raw)
    with pytest.raises(TaskFormatError) as info:
        load_bigbench_task(path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message and "examples[1]" in message and "'b'" in message and shown in message


def test_cli_nan_score_exit_2_nothing_written(tmp_path: Path, monkeypatch, capsys) -> None:
    path = write_task(tmp_path / "t", None, raw='{"examples": [{"input": "q", "target_scores": {"a": NaN, "b": 1}}]}')
    out_file = tmp_path / "r.json"
    code, _, err = run_cli(monkeypatch, capsys, "eval", "--model", "tiny-llama", "--task", str(path),
                           "--out", str(out_file))
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(lines) == 1 and "NaN" in lines[0] and "examples[0]" in lines[0]
    assert "Traceback" not in err and not out_file.exists()
