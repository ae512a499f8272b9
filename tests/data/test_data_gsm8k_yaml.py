"""GSM8K reader, declarative task YAML (load_task_config) and load_task dispatch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from loralab.data import GenerationSpec, load_gsm8k_task, load_task, load_task_config
from loralab.data.gsm8k import GSM8K_GENERATION
from loralab.data.split import assign_split

RATIONALE = "Tom had 1,000 apples and bought 234 more.\nSo he has <<1000+234=1234>>1,234 apples.\n#### 1,234"


def write_gsm8k(path: Path, items: list[tuple[str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in items), encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------------
# GSM8K
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "target"),
    [
        (RATIONALE, "1234"),
        ("easy\n#### 72", "72"),
        ("#### 1,234,567", "1234567"),
        ("negative\n####  -5 ", "-5"),
        ("no space\n####3.5", "3.5"),
        ("trailing newline\n#### 18\n", "18"),
        ("dollars #### $1,000", "$1000"),
    ],
    ids=["thousands", "plain", "millions", "negative_spaces", "no_space_decimal", "trailing_newline", "dollar"],
)
def test_gsm8k_target_extraction(tmp_path: Path, answer: str, target: str) -> None:
    task = load_gsm8k_task(write_gsm8k(tmp_path / "test.jsonl", [("How many?", answer)]))
    (ex,) = task.examples
    assert ex.targets == (target,)
    assert ex.metadata == {"demonstration": " " + answer}


def test_gsm8k_prompt_and_spec(tmp_path: Path) -> None:
    question = "Tom had 1,000 apples and bought 234 more. How many does he have?"
    task = load_gsm8k_task(write_gsm8k(tmp_path / "test.jsonl", [(question, RATIONALE)]))
    (ex,) = task.examples
    assert ex.prompt == f"Question: {question}\nAnswer:" and ex.prefix == ""
    assert ex.split == assign_split(ex.id)
    assert (task.name, task.kind, task.metric, task.fewshot_separator) == (
        "gsm8k",
        "generation",
        "exact_match",
        "\n\n",
    )
    assert task.generation is GSM8K_GENERATION
    assert task.generation == GenerationSpec(
        max_new_tokens=256,
        stop=("Question:", "</s>", "<|im_end|>"),
        answer_regex=r"(-?[$0-9.,]{2,})|(-?[0-9]+)",
        answer_pick="last",
        normalize="number",
        strict_regex=r"#### (\-?[0-9\.\,]+)",
    )
    assert load_gsm8k_task(tmp_path / "test.jsonl", name="math").name == "math"


def test_gsm8k_fewshot_demonstrates_rationale(tmp_path: Path) -> None:
    task = load_gsm8k_task(write_gsm8k(tmp_path / "test.jsonl", [("1+1?", "one and one\n#### 2"), ("2+2?", "#### 4")]))
    shot, query = sorted(task.examples, key=lambda e: e.body)
    assert task.prompt(query, [shot]) == "Question: 1+1?\nAnswer: one and one\n#### 2\n\nQuestion: 2+2?\nAnswer:"


def test_gsm8k_deduplicates_and_skips_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "test.jsonl"
    line = json.dumps({"question": "q", "answer": "#### 1"})
    path.write_text(f"{line}\n\n{line}\n{json.dumps({'question': 'r', 'answer': '#### 2'})}", encoding="utf-8")
    assert sorted(ex.targets[0] for ex in load_gsm8k_task(path).examples) == ["1", "2"]


# ------------------------------------------------------------------------------------------------
# Declarative task YAML
# ------------------------------------------------------------------------------------------------


def _fixture_tree(root: Path) -> None:
    data = root / "data"
    data.mkdir(parents=True)
    (data / "qa.jsonl").write_text(
        json.dumps({"prompt": "Q: capital of France?\nA:", "choices": [" Paris", " Rome"], "answer_index": 0}) + "\n",
        encoding="utf-8",
    )
    (data / "qa.csv").write_text('prompt,targets\n"Q: 2+2?\nA:",4\n', encoding="utf-8")
    bb = data / "bb" / "adder"
    bb.mkdir(parents=True)
    (bb / "task.json").write_text(
        json.dumps(
            {
                "name": "adder",
                "description": "Adds.",
                "preferred_score": "multiple_choice_grade",
                "task_prefix": "Add.\n",
                "examples": [{"input": "1+1", "target": "2", "target_scores": {"2": 1, "3": 0}}],
            }
        ),
        encoding="utf-8",
    )
    write_gsm8k(data / "gsm8k" / "test.jsonl", [("q?", "r\n#### 3")])


@pytest.mark.parametrize(
    ("yaml_text", "check"),
    [
        (
            "source: jsonl\npath: data/qa.jsonl\n",
            dict(name="qa", kind="multiple_choice", prompt="Q: capital of France?\nA:", choices=(" Paris", " Rome")),
        ),
        (
            "source: jsonl\npath: ./data/../data/qa.jsonl\nname: capitals\ndomain: knowledge\n"
            "description: Capitals.\n",
            dict(name="capitals", domain="knowledge", description="Capitals.", prompt="Q: capital of France?\nA:"),
        ),
        ("source: csv\npath: data/qa.csv\n", dict(name="qa", kind="generation", prompt="Q: 2+2?\nA:", targets=("4",))),
        (
            "source: bigbench\npath: data/bb/adder\n",
            dict(name="adder", description="Adds.", kind="multiple_choice", prompt_start="Add.\n\nQ: 1+1"),
        ),
        (
            "source: bigbench\npath: data/bb/adder/task.json\nkind: generation\n",
            dict(kind="generation", targets=("2",), prompt_start="Add.\n\nQ: 1+1"),
        ),
        ("source: gsm8k\npath: data/gsm8k/test.jsonl\n", dict(name="gsm8k", prompt="Question: q?\nAnswer:")),
        (
            'source: jsonl\npath: data/qa.jsonl\ngeneration:\n  max_new_tokens: 7\n  stop: ["\\n\\n"]\n',
            dict(generation=GenerationSpec(max_new_tokens=7, stop=("\n\n",))),
        ),
        (
            "source: bigbench\npath: data/bb/adder\nkind: generation\ngeneration: {answer_regex: '\\d+', stop: []}\n",
            dict(generation=GenerationSpec(answer_regex=r"\d+", stop=())),
        ),
    ],
    ids=[
        "jsonl",
        "jsonl_overrides",
        "csv",
        "bigbench_dir",
        "bigbench_file_kind",
        "gsm8k",
        "generation_override",
        "bigbench_generation_override",
    ],
)
def test_task_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, yaml_text: str, check: dict[str, Any]) -> None:
    project = tmp_path / "project"
    _fixture_tree(project)
    config = project / "task.yaml"
    config.write_text(yaml_text, encoding="utf-8")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # relative paths resolve against the YAML's folder, not the cwd
    for task in (load_task_config(config), load_task(str(config)), load_task_config(str(config))):
        (ex,) = task.examples
        for key, value in check.items():
            if key == "prompt":
                assert ex.prompt == value
            elif key == "prompt_start":
                assert ex.prompt.startswith(value) and ex.prompt.endswith("\nA: ")
            elif key in ("choices", "targets"):
                assert getattr(ex, key) == value
            else:
                assert getattr(task, key) == value, key


def test_task_yaml_absolute_path_and_yml_suffix(tmp_path: Path) -> None:
    _fixture_tree(tmp_path)
    config = tmp_path / "elsewhere" / "t.yml"
    config.parent.mkdir()
    config.write_text(f"source: jsonl\npath: {tmp_path / 'data' / 'qa.jsonl'}\n", encoding="utf-8")
    assert load_task(str(config)).examples[0].choices == (" Paris", " Rome")


# ------------------------------------------------------------------------------------------------
# load_task dispatch
# ------------------------------------------------------------------------------------------------


def test_load_task_paths(tmp_path: Path) -> None:
    _fixture_tree(tmp_path)
    bb = tmp_path / "data" / "bb" / "adder"
    assert load_task(str(bb)).name == "adder"
    assert load_task(str(bb / "task.json")).name == "adder"  # "task" stem: keep the task's own name
    renamed = tmp_path / "my_adder.json"
    renamed.write_bytes((bb / "task.json").read_bytes())
    assert load_task(str(renamed)).name == "my_adder"


def test_load_task_suite_and_bigbench_prefix(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _fixture_tree(tmp_path)
    adder = data / "bigbench" / "arithmetic" / "2_digit_addition"
    adder.mkdir(parents=True)
    (adder / "task.json").write_text(
        json.dumps(
            {
                "name": "2_digit_addition",
                "output_regex": r"[-+]?\d+",
                "examples": [{"input": "What is 12 plus 30?", "target": "42"}],
            }
        )
    )
    task = load_task("arithmetic_2_digit_addition", data_dir=data)
    assert (task.name, task.domain, task.source) == (
        "arithmetic_2_digit_addition",
        "math",
        "bigbench:arithmetic/2_digit_addition",
    )
    assert task.description == "Add two 2-digit numbers (generation)."
    assert task.examples[0].prompt == "\nQ: What is 12 plus 30?\nA: "
    assert task.generation.answer_regex == r"[-+]?\d+"
    by_path = load_task("bigbench:arithmetic/2_digit_addition", data_dir=data)
    assert by_path.name == "arithmetic_2_digit_addition" and by_path.examples == task.examples
    gsm = load_task("gsm8k", data_dir=data)
    assert (gsm.name, gsm.domain, gsm.source) == ("gsm8k", "math", "gsm8k:gsm8k/test.jsonl")
    assert gsm.examples[0].targets == ("3",)
