"""Unified-format JSONL and CSV task files, and the export round trip."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from loralab.data import (
    GenerationSpec,
    Task,
    example_record,
    load_bigbench_task,
    load_csv_task,
    load_jsonl_task,
    load_task,
    write_jsonl,
)
from loralab.data.split import assign_split, content_id


def write_jsonl_lines(path: Path, records: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


# ------------------------------------------------------------------------------------------------
# JSONL records
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("record", "kind", "choices", "answers", "targets"),
    [
        (
            {"prompt": "Q: 2+2=?\nA:", "choices": [" 3", " 4"], "answer_index": 1},
            "multiple_choice",
            (" 3", " 4"),
            (1,),
            (),
        ),
        (
            {"prompt": "Pick:", "choices": ["a", "b", "c"], "answer_index": [2, 0]},
            "multiple_choice",
            ("a", "b", "c"),
            (0, 2),
            (),
        ),
        (
            {"prompt": "Pick:", "choices": ["a", "b", "c"], "answer_index": [1, 1]},
            "multiple_choice",
            ("a", "b", "c"),
            (1,),
            (),
        ),
        ({"prompt": "Pick:", "choices": ["a", "b"], "answer_index": [0]}, "multiple_choice", ("a", "b"), (0,), ()),
        ({"prompt": "Q: 2+2=?\nA:", "targets": " 4"}, "generation", (), (), (" 4",)),
        ({"prompt": "Q: 2+2=?\nA:", "targets": ["4", "four"]}, "generation", (), (), ("4", "four")),
        ({"prompt": "Q: 2+2=?\nA:", "target": "4"}, "generation", (), (), ("4",)),
        ({"prompt": "Q: 2+2=?\nA:", "target": ["4", "4.0"]}, "generation", (), (), ("4", "4.0")),
    ],
    ids=[
        "mc",
        "mc_answer_list",
        "mc_answer_list_duplicates",
        "mc_answer_list_of_one",
        "gen_string",
        "gen_list",
        "target_alias",
        "target_alias_list",
    ],
)
def test_jsonl_record(
    tmp_path: Path,
    record: dict[str, Any],
    kind: str,
    choices: tuple[str, ...],
    answers: tuple[int, ...],
    targets: tuple[str, ...],
) -> None:
    task = load_jsonl_task(write_jsonl_lines(tmp_path / "task.jsonl", [record]))
    (ex,) = task.examples
    assert task.kind == kind and task.name == "task" and task.source == str(tmp_path / "task.jsonl")
    assert task.metric == ("acc" if kind == "multiple_choice" else "exact_match")
    assert ex.prompt == record["prompt"] and ex.body == record["prompt"] and ex.prefix == ""
    assert ex.choices == choices and ex.answers == answers and ex.targets == targets
    assert ex.id == content_id(
        {"prompt": record["prompt"], "choices": list(choices), "answers": list(answers), "targets": list(targets)}
    )
    assert ex.split == assign_split(ex.id)
    assert ex.metadata == {}
    assert task.generation == GenerationSpec()


def test_jsonl_explicit_fields(tmp_path: Path) -> None:
    generation = {
        "max_new_tokens": 8,
        "stop": ["\n", "."],
        "answer_regex": r"(\d+)",
        "answer_pick": "last",
        "normalize": "number",
        "strict_regex": r"#### (\d+)",
    }
    records = [
        {
            "id": "first",
            "prompt": "a:",
            "targets": "1",
            "split": "train",
            "metadata": {"src": "x", "n": [1]},
            "generation": generation,
        },
        {
            "id": 7,
            "prompt": "b:",
            "targets": "2",
            "split": "validation",
            "generation": dict(reversed(generation.items())),
        },
        {"prompt": "c:", "targets": "3", "split": "test"},  # generation may be left out on some lines
    ]
    task = load_jsonl_task(write_jsonl_lines(tmp_path / "t.jsonl", records), name="named")
    assert task.name == "named"
    assert [(ex.id, ex.split, dict(ex.metadata)) for ex in task.examples] == [
        ("first", "train", {"src": "x", "n": [1]}),
        ("7", "validation", {}),
        (task.examples[2].id, "test", {}),
    ]
    assert task.generation == GenerationSpec(
        max_new_tokens=8,
        stop=("\n", "."),
        answer_regex=r"(\d+)",
        answer_pick="last",
        normalize="number",
        strict_regex=r"#### (\d+)",
    )


@pytest.mark.parametrize(
    "text",
    [
        '{"prompt": "a", "targets": "x"}\n\n   \n{"prompt": "b", "targets": "y"}\n',
        '{"prompt": "a", "targets": "x"}\r\n{"prompt": "b", "targets": "y"}\r\n',
        '{"prompt": "a", "targets": "x"}\n{"prompt": "b", "targets": "y"}',
    ],
    ids=["blank_lines", "crlf", "no_final_newline"],
)
def test_jsonl_line_handling(tmp_path: Path, text: str) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(text.encode())
    assert [ex.prompt for ex in load_jsonl_task(path).examples] == ["a", "b"]


@pytest.mark.parametrize("char", ["\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1c", "\x1e", "\r"])
def test_jsonl_keeps_unicode_line_separators(tmp_path: Path, char: str) -> None:
    """JSON leaves U+2028 etc. unescaped; JSONL lines end at "\\n" only (regression: str.splitlines broke them)."""
    prompt = f"first{char}second:"
    path = tmp_path / "t.jsonl"
    write_jsonl(path, [{"prompt": prompt, "choices": [f"x{char}", "y"], "answer_index": 0}])
    (ex,) = load_jsonl_task(path).examples
    assert ex.prompt == prompt and ex.choices == (f"x{char}", "y")


def test_jsonl_unicode_and_escapes(tmp_path: Path) -> None:
    prompt = 'Übersetze „Haus" 🏠\t→ \\n literal\nAntwort:'
    path = tmp_path / "t.jsonl"
    # ensure_ascii escapes (including a surrogate pair for the emoji) must read back the same.
    path.write_text(json.dumps({"prompt": prompt, "targets": ["house", "🏠"]}) + "\n", encoding="utf-8")
    (ex,) = load_jsonl_task(path).examples
    assert ex.prompt == prompt and ex.targets == ("house", "🏠")


# ------------------------------------------------------------------------------------------------
# CSV
# ------------------------------------------------------------------------------------------------


def test_csv_multiple_choice_json_cells(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "mc.csv",
        ["id", "prompt", "choices", "answer_index", "split", "metadata"],
        [
            ["q1", "Q: 2+2=?\nA:", '[" 3", " 4", " 5"]', "1", "train", '{"level": 1}'],
            ["q2", "Which, of these?", '["a, b", "c"]', "[0, 1]", "", ""],
            ["", "No id:", '["x", "y"]', "0", "test", ""],
        ],
    )
    task = load_csv_task(path)
    assert task.kind == "multiple_choice" and task.name == "mc"
    q1, q2, q3 = task.examples
    assert (q1.id, q1.prompt, q1.choices, q1.answers, q1.split, dict(q1.metadata)) == (
        "q1",
        "Q: 2+2=?\nA:",
        (" 3", " 4", " 5"),
        (1,),
        "train",
        {"level": 1},
    )
    assert (q2.id, q2.prompt, q2.choices, q2.answers, q2.split, dict(q2.metadata)) == (
        "q2",
        "Which, of these?",
        ("a, b", "c"),
        (0, 1),
        assign_split("q2"),
        {},
    )
    assert q3.id == content_id({"prompt": "No id:", "choices": ["x", "y"], "answers": [0], "targets": []})
    assert q3.split == "test"


def test_csv_generation_and_generation_cell(tmp_path: Path) -> None:
    gen = '{"max_new_tokens": 5, "stop": ["\\n"], "answer_regex": "\\\\d+"}'
    path = write_csv(
        tmp_path / "gen.csv",
        ["prompt", "targets", "generation"],
        [
            ["Q: 2+2=?\nA:", "4", gen],
            ["Q: 3+3=?\nA:", '["6", "six"]', ""],
            ["Q: [1]?\nA:", '["[1]"]', gen],  # a target starting with "[" must be written as a JSON list
        ],
    )
    task = load_csv_task(path)
    assert task.kind == "generation"
    assert [ex.targets for ex in task.examples] == [("4",), ("6", "six"), ("[1]",)]
    assert task.generation == GenerationSpec(max_new_tokens=5, stop=("\n",), answer_regex=r"\d+")


@pytest.mark.parametrize("prompt", ["line one\nline two:", "crlf\r\ninside:", "sep\u2028inside:", 'quote " and , :'])
def test_csv_keeps_quoted_cells_exactly(tmp_path: Path, prompt: str) -> None:
    """Regression: the csv module must see raw line endings (quoted cells with newlines were altered)."""
    path = write_csv(tmp_path / "t.csv", ["prompt", "targets"], [[prompt, "x"], ["next:", "y"]])
    task = load_csv_task(path)
    assert [ex.prompt for ex in task.examples] == [prompt, "next:"]


def test_csv_and_jsonl_give_the_same_task(tmp_path: Path) -> None:
    records = [
        {"id": f"r{i}", "prompt": f"Q{i}:\n", "choices": ["yes", "no"], "answer_index": i % 2} for i in range(5)
    ]
    jsonl = load_jsonl_task(write_jsonl_lines(tmp_path / "t.jsonl", records))
    rows = [[r["id"], r["prompt"], json.dumps(r["choices"]), str(r["answer_index"])] for r in records]
    csv_task = load_csv_task(write_csv(tmp_path / "t.csv", ["id", "prompt", "choices", "answer_index"], rows))
    assert jsonl.examples == csv_task.examples


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_load_task_dispatches_on_suffix(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"mine{suffix}"
    if suffix == ".jsonl":
        write_jsonl_lines(path, [{"prompt": "p:", "targets": "t"}])
    else:
        write_csv(path, ["prompt", "targets"], [["p:", "t"]])
    task = load_task(str(path))
    assert task.name == "mine" and [ex.prompt for ex in task.examples] == ["p:"]


# ------------------------------------------------------------------------------------------------
# Round trip: example_record + write_jsonl -> load_jsonl_task
# ------------------------------------------------------------------------------------------------


def _signature(task: Task) -> list[tuple[Any, ...]]:
    return [
        (ex.id, ex.prompt, ex.choices, ex.answers, ex.targets, ex.split, dict(ex.metadata)) for ex in task.split("all")
    ]


def _bigbench(tmp_path: Path, data: dict[str, Any]) -> Task:
    folder = tmp_path / "bb"
    folder.mkdir()
    (folder / "task.json").write_text(json.dumps(data), encoding="utf-8")
    return load_bigbench_task(folder)


MC_BB = {
    "name": "mc",
    "preferred_score": "multiple_choice_grade",
    "task_prefix": "Answer well.\n",
    "choice_prefix": "\n - ",
    "examples": [
        {"input": f"question {i}", "target_scores": {"a": 1, "b": int(i % 2 == 0), "c": 0.5}, "id": i}
        for i in range(30)
    ],
}
GEN_BB = {
    "name": "gen",
    "output_regex": r"[-+]?\d+",
    "stop_string": "\n",
    "example_output_prefix": " = ",
    "examples": [{"input": f"{i}+{i}", "target": [str(2 * i), f"{2 * i}.0"]} for i in range(30)],
}


@pytest.mark.parametrize("data", [MC_BB, GEN_BB], ids=["multiple_choice", "generation"])
def test_export_round_trip(tmp_path: Path, data: dict[str, Any]) -> None:
    task = _bigbench(tmp_path, data)
    out = tmp_path / "export.jsonl"
    assert write_jsonl(out, (example_record(task, ex) for ex in task.split("all"))) == 30
    back = load_jsonl_task(out)
    assert back.kind == task.kind and back.metric == task.metric
    assert _signature(back) == _signature(task)
    if task.kind == "generation":
        assert back.generation == task.generation
        assert back.generation.answer_regex == r"[-+]?\d+" and back.generation.stop == ("\n",)
    # Exporting the re-read task gives the same file, byte for byte.
    again = tmp_path / "again.jsonl"
    write_jsonl(again, (example_record(back, ex) for ex in back.split("all")))
    assert again.read_bytes() == out.read_bytes()


def test_example_record_fields(tmp_path: Path) -> None:
    mc = _bigbench(tmp_path, MC_BB)
    ex = next(e for e in mc.examples if len(e.answers) == 2)
    rec = example_record(mc, ex)
    assert list(rec) == ["id", "prompt", "choices", "answer_index", "split", "metadata"]
    assert rec["prompt"] == ex.prefix + ex.body and rec["prompt"].startswith("Answer well.\n\nQ: question ")
    assert rec["answer_index"] == list(ex.answers) and rec["metadata"]["source_id"] == ex.metadata["source_id"]
    single = next(e for e in mc.examples if len(e.answers) == 1)
    assert example_record(mc, single)["answer_index"] == single.answers[0]
    assert example_record(mc, single, prompt="override")["prompt"] == "override"


def test_few_shot_export_scores_the_same_prompt(tmp_path: Path) -> None:
    task = _bigbench(tmp_path, GEN_BB)
    query = task.split("test")[0]
    shots = task.fewshot_examples(query, 2)
    out = tmp_path / "fs.jsonl"
    write_jsonl(out, [example_record(task, query, prompt=task.prompt(query, shots))])
    (back,) = load_jsonl_task(out).examples
    assert back.prompt == task.prompt(query, shots) and back.id == query.id and back.targets == query.targets
