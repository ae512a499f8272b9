"""Hugging Face datasets mapped by columns: tiny DatasetDicts saved to tmp_path (no hub access)."""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any

import pytest

datasets = pytest.importorskip("datasets")

from loralab.data import GenerationSpec, load_hf_task, load_task, load_task_config  # noqa: E402
from loralab.data.split import assign_split  # noqa: E402
from loralab.errors import DataUnavailableError, TaskFormatError  # noqa: E402

LABELS = ["A", "B", "C"]


def _rows(split: str, n: int) -> dict[str, list[Any]]:
    return {
        "question": [f"{split} question {i}?" for i in range(n)],
        "options": [[f"red {i}", f"green {i}", f"blue {i}"] for i in range(n)],
        "label": [i % 3 for i in range(n)],
        "letter": [LABELS[i % 3] for i in range(n)],
        "letters": [LABELS for _ in range(n)],
        "answer_text": [["red", "green", "blue"][i % 3] + f" {i}" for i in range(n)],
        "nested": [{"text": [f"red {i}", f"green {i}", f"blue {i}"], "label": LABELS} for i in range(n)],
        "yes_no": ["yes" if i % 2 else "no" for i in range(n)],
        "answers": [[str(i), f"#{i}"] for i in range(n)],
        "number": [i * 10 for i in range(n)],
    }


@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    datasets.disable_progress_bars()
    root = tmp_path_factory.mktemp("hf")
    sizes = {"train": 4, "validation": 2, "test": 3}
    three = datasets.DatasetDict({s: datasets.Dataset.from_dict(_rows(s, n)) for s, n in sizes.items()})
    three.save_to_disk(str(root / "three"))
    datasets.DatasetDict(
        {"train": datasets.Dataset.from_dict(_rows("train", 4)), "dev": datasets.Dataset.from_dict(_rows("dev", 2))}
    ).save_to_disk(str(root / "dev"))
    datasets.DatasetDict({"train": datasets.Dataset.from_dict(_rows("only", 60))}).save_to_disk(str(root / "single"))
    datasets.Dataset.from_dict(_rows("plain", 60)).save_to_disk(str(root / "plain"))
    return {name: root / name for name in ("three", "dev", "single", "plain")}


MC_CASES = {
    "answer_index": dict(choices="options", answer="label"),
    "answer_label": dict(choices="options", answer="letter", answer_labels="letters"),
    "answer_text": dict(choices="options", answer="answer_text"),
    "nested_columns": dict(choices="nested.text", answer="letter", answer_labels="nested.label"),
}


@pytest.mark.parametrize("case", list(MC_CASES))
@pytest.mark.parametrize("choice_format", ["{}", " {}", " ({})"])
def test_multiple_choice_mappings(hf_dirs: dict[str, Path], case: str, choice_format: str) -> None:
    task = load_hf_task(
        str(hf_dirs["three"]),
        prompt="Question: {question}\nAnswer:",
        choice_format=choice_format,
        name="mc",
        **MC_CASES[case],
    )
    assert task.kind == "multiple_choice" and task.metric == "acc" and task.name == "mc"
    assert task.source == f"hf:{hf_dirs['three']}"
    assert collections.Counter(ex.split for ex in task.examples) == {"train": 4, "validation": 2, "test": 3}
    for split in ("train", "validation", "test"):
        for ex in task.split(split):
            i = int(ex.prompt.split("question ")[1].split("?")[0])
            assert ex.prompt == f"Question: {split} question {i}?\nAnswer:"
            assert ex.choices == tuple(choice_format.format(c) for c in (f"red {i}", f"green {i}", f"blue {i}"))
            assert ex.answers == (i % 3,)


def test_fixed_choice_list(hf_dirs: dict[str, Path]) -> None:
    task = load_hf_task(
        str(hf_dirs["three"]),
        prompt="{question} (yes/no)",
        choices=["yes", "no"],
        answer="yes_no",
        choice_format=" {}",
    )
    for ex in task.examples:
        assert ex.choices == (" yes", " no")
        i = int(ex.prompt.split("question ")[1].split("?")[0])
        assert ex.answers == ((0,) if i % 2 else (1,))
        assert ex.prompt.endswith("? (yes/no)")


@pytest.mark.parametrize(
    ("targets", "expected"),
    [
        ("answers", lambda i: (str(i), f"#{i}")),
        ("yes_no", lambda i: ("yes" if i % 2 else "no",)),
        ("number", lambda i: (str(i * 10),)),
    ],
    ids=["list_column", "string_column", "int_column"],
)
def test_generation_targets(hf_dirs: dict[str, Path], targets: str, expected: Any) -> None:
    spec = GenerationSpec(max_new_tokens=4, stop=("\n",), answer_regex=r"\d+")
    task = load_hf_task(str(hf_dirs["three"]), prompt="Q: {question}\nA:", targets=targets, generation=spec)
    assert task.kind == "generation" and task.metric == "exact_match" and task.generation == spec
    assert len(task.examples) == 9
    for ex in task.examples:
        i = int(ex.prompt.split("question ")[1].split("?")[0])
        assert ex.targets == expected(i) and ex.choices == ()
        assert ex.prompt.startswith("Q: ") and ex.prompt.endswith("?\nA:")


def test_generation_default_spec(hf_dirs: dict[str, Path]) -> None:
    task = load_hf_task(str(hf_dirs["three"]), prompt="{question}", targets="answers")
    assert task.generation == GenerationSpec()


def test_split_mapping(hf_dirs: dict[str, Path]) -> None:
    task = load_hf_task(str(hf_dirs["dev"]), prompt="{question}", targets="answers", splits={"validation": "dev"})
    by_split = {s: sorted(ex.prompt for ex in task.split(s)) for s in ("train", "validation")}
    assert by_split == {
        "train": [f"train question {i}?" for i in range(4)],
        "validation": [f"dev question {i}?" for i in range(2)],
    }
    assert not [ex for ex in task.examples if ex.split == "test"]


@pytest.mark.parametrize("which", ["single", "plain"], ids=["one_split_dict", "plain_dataset"])
def test_single_split_gets_hash_split(hf_dirs: dict[str, Path], which: str) -> None:
    """Regression: a dataset with one split (even one called "train") is re-split by hash, as documented."""
    task = load_hf_task(str(hf_dirs[which]), prompt="{question}", choices="options", answer="label")
    assert len(task.examples) == 60
    assert all(ex.split == assign_split(ex.id) for ex in task.examples)
    counts = collections.Counter(ex.split for ex in task.examples)
    assert counts["train"] > 0 and counts["test"] > 0 and sum(counts.values()) == 60
    assert task.split("test")


def test_task_yaml_with_hf_source(hf_dirs: dict[str, Path], tmp_path: Path) -> None:
    config = tmp_path / "mine.yaml"
    config.write_text(
        f"name: my_mc\nsource: hf\npath: {hf_dirs['three']}\n"
        'prompt: "Q: {question}\\nA:"\nchoices: nested.text\nanswer: letter\nanswer_labels: nested.label\n'
        'choice_format: " {}"\ndomain: knowledge\ndescription: A tiny MC set.\n',
        encoding="utf-8",
    )
    for task in (load_task_config(config), load_task(str(config))):
        assert (task.name, task.kind, task.domain, task.description) == (
            "my_mc",
            "multiple_choice",
            "knowledge",
            "A tiny MC set.",
        )
        ex = sorted(task.split("test"), key=lambda e: e.prompt)[0]
        assert ex.prompt == "Q: test question 0?\nA:"
        assert ex.choices == (" red 0", " green 0", " blue 0") and ex.answers == (0,)


def test_task_yaml_hf_generation(hf_dirs: dict[str, Path], tmp_path: Path) -> None:
    config = tmp_path / "gen.yaml"
    config.write_text(
        f"source: hf\npath: {hf_dirs['dev']}\nprompt: '{{question}} ='\ntargets: answers\n"
        "splits: {validation: dev}\ngeneration: {max_new_tokens: 3, stop: [';'], answer_regex: '\\d+'}\n",
        encoding="utf-8",
    )
    task = load_task_config(config)
    assert task.name == "dev"
    assert task.generation == GenerationSpec(max_new_tokens=3, stop=(";",), answer_regex=r"\d+")
    assert sorted(ex.prompt for ex in task.split("validation")) == ["dev question 0? =", "dev question 1? ="]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(prompt="{question}"), "give exactly one of 'choices' (multiple choice) or 'targets'"),
        (dict(prompt="{question}", choices="options", targets="answers"), "give exactly one of 'choices'"),
        (dict(prompt="{question}", choices="options"), "multiple choice needs 'answer'"),
        (dict(prompt="{nope}", targets="answers"), "prompt template uses {nope}, not a column"),
        (dict(prompt="{0}", targets="answers"), "is not a valid format template"),
        (dict(prompt="{question", targets="answers"), "is not a valid format template"),
        (dict(prompt="{question.x}", targets="answers"), "is not a valid format template"),
        (dict(prompt="   ", targets="answers"), "prompt renders empty"),
        (dict(prompt="{question}", targets="missing"), "no column 'missing'"),
        (dict(prompt="{question}", choices="question", answer="label"), "choices must be a list of at least 2"),
        (
            dict(prompt="{question}", choices="options", answer="letter", answer_labels="yes_no"),
            "is not one of the labels",
        ),
        (dict(prompt="{question}", choices="options", answer="number"), "out of range 0..2"),
        (dict(prompt="{question}", choices="options", answer="yes_no"), "is neither an index nor one of the choices"),
    ],
    ids=[
        "neither",
        "both",
        "no_answer",
        "unknown_column",
        "positional",
        "unclosed_brace",
        "attribute",
        "empty_prompt",
        "missing_targets_column",
        "choices_not_list",
        "label_not_found",
        "index_out_of_range",
        "answer_not_a_choice",
    ],
)
def test_hf_errors(hf_dirs: dict[str, Path], kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(TaskFormatError) as info:
        load_hf_task(str(hf_dirs["three"]), **kwargs)
    assert type(info.value) is TaskFormatError
    assert message in str(info.value) and "\n" not in str(info.value)


def test_hf_missing_local_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataUnavailableError) as info:
        load_hf_task(str(empty), prompt="{q}", targets="a")
    assert "cannot load Hugging Face dataset" in str(info.value) and "\n" not in str(info.value)
