"""Property tests (hypothesis): arbitrary unicode through the BIG-bench reader, JSONL/CSV round trips, the split."""

from __future__ import annotations

import csv
import json
import tempfile
from pathlib import Path
from typing import Any

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from loralab.data import SPLITS, example_record, load_bigbench_task, load_csv_task, load_jsonl_task, write_jsonl  # noqa: E402
from loralab.data.split import assign_split, content_id  # noqa: E402
from loralab.errors import TaskFormatError  # noqa: E402

SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Any code point (surrogates included: json.dumps escapes them and json.loads gives them back), plus
# the characters that tend to break line-based readers.
TRICKY = '\n\r\t\u2028\u2029\x85\x0b\x0c\x1c\x00"\\,[]{}: '
any_char = st.one_of(st.characters(codec=None, exclude_categories=()), st.sampled_from(TRICKY))
valid_char = st.one_of(st.characters(codec="utf-8"), st.sampled_from(TRICKY))  # no lone surrogates
any_text = st.text(any_char, max_size=20)
text = st.text(valid_char, max_size=20)
prompt_text = st.text(valid_char, min_size=1, max_size=40).filter(lambda s: s.strip() != "")
good_score = st.one_of(st.integers(-1, 2), st.floats(-1, 2, allow_nan=False), st.sampled_from([0, 1, 1.0, 0.5]))
bad_score = st.sampled_from([True, None, "1", [1]])  # values BIG-bench does not allow
maybe_prefix = st.one_of(st.none(), any_text)


@st.composite
def bigbench_task(draw: st.DrawFn) -> dict[str, Any]:
    data: dict[str, Any] = {"name": draw(st.text(max_size=8))}
    for key in (
        "task_prefix",
        "example_input_prefix",
        "example_output_prefix",
        "choice_prefix",
        "few_shot_example_separator",
    ):
        value = draw(maybe_prefix)
        if value is not None:
            data[key] = value
    append = draw(st.one_of(st.none(), st.booleans(), st.sampled_from(["false", "true", ""])))
    if append is not None:
        data["append_choices_to_input"] = append
    preferred = draw(st.sampled_from([None, "multiple_choice_grade", "exact_str_match"]))
    if preferred:
        data["preferred_score"] = preferred
    # Mostly well-formed tasks of one shape, now and then anything at all (malformed ones must fail cleanly).
    shape = draw(st.sampled_from(["mc", "mc", "generation", "both", "anything"]))
    examples = []
    for text_input in draw(st.lists(any_text, min_size=1, max_size=4, unique=True)):
        ex: dict[str, Any] = {"input": text_input}
        wild = shape == "anything"
        if shape in ("mc", "both") or (wild and draw(st.booleans())):
            scores = st.one_of(good_score, bad_score) if wild else good_score
            ex["target_scores"] = draw(st.dictionaries(any_text, scores, min_size=0 if wild else 2, max_size=5))
        if shape in ("generation", "both") or (wild and draw(st.booleans())):
            ex["target"] = draw(st.one_of(any_text, st.lists(any_text, min_size=0 if wild else 1, max_size=3)))
        examples.append(ex)
    data["examples"] = examples
    return data


@SETTINGS
@given(data=bigbench_task(), kind=st.sampled_from([None, "multiple_choice", "generation"]))
def test_bigbench_arbitrary_unicode(data: dict[str, Any], kind: str | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "task.json"
        path.write_text(json.dumps(data), encoding="ascii")  # ensure_ascii: surrogates travel as escapes
        try:
            task = load_bigbench_task(path, kind=kind)
        except TaskFormatError as exc:
            assert "\n" not in str(exc)
            return
    output_prefix = data.get("example_output_prefix", "\nA: ")
    input_prefix = data.get("example_input_prefix", "\nQ: ")
    choice_prefix = data.get("choice_prefix", "\n  choice: ")
    appended = bool(data.get("append_choices_to_input", True))
    assert task.kind in ("multiple_choice", "generation")
    assert len({ex.id for ex in task.examples}) == len(task.examples)
    for ex in task.examples:
        assert ex.prefix == data.get("task_prefix", "")
        assert ex.prompt.endswith(output_prefix)
        assert ex.body.startswith(input_prefix + ex.metadata["input"])
        assert ex.split == assign_split(ex.id)
        assert ex.prompt.strip()
        raw = next(e for e in data["examples"] if e["input"] == ex.metadata["input"])
        if task.kind == "multiple_choice":
            assert sorted(ex.choices) == sorted(k for k in raw["target_scores"] if k != "")
            best = max(float(raw["target_scores"][c]) for c in ex.choices)
            assert best > 0 and {ex.choices[i] for i in ex.answers} == {
                c for c in ex.choices if float(raw["target_scores"][c]) == best
            }
        if "target_scores" in raw and appended:
            # Choices are listed (for generation too, as BIG-bench does), each after the choice prefix.
            for choice in (k for k in raw["target_scores"] if k != ""):
                assert choice_prefix + choice in ex.prompt
            if ex.choices:
                listed = "".join(choice_prefix + c for c in ex.choices)
                assert ex.body == input_prefix + raw["input"] + listed + output_prefix
        else:
            assert ex.body == input_prefix + raw["input"] + output_prefix


@st.composite
def records(draw: st.DrawFn) -> list[dict[str, Any]]:
    multiple_choice = draw(st.booleans())
    out = []
    for i in range(draw(st.integers(1, 6))):
        rec: dict[str, Any] = {"id": f"r{i}", "prompt": draw(prompt_text)}
        if multiple_choice:
            choices = draw(st.lists(text.filter(bool), min_size=2, max_size=5))
            rec["choices"] = choices
            answers = draw(st.lists(st.integers(0, len(choices) - 1), min_size=1, max_size=3))
            rec["answer_index"] = answers[0] if len(answers) == 1 else answers
        else:
            rec["targets"] = draw(st.one_of(text, st.lists(text, min_size=1, max_size=3)))
        if draw(st.booleans()):
            rec["split"] = draw(st.sampled_from(SPLITS))
        if draw(st.booleans()):
            rec["metadata"] = draw(st.dictionaries(text, st.one_of(text, st.integers()), max_size=2))
        if draw(st.booleans()):
            del rec["id"]
        out.append(rec)
    # Records without an id are keyed by content: drop exact duplicates so every id is unique.
    unique: dict[str, dict[str, Any]] = {}
    for rec in out:
        unique.setdefault(json.dumps(rec, sort_keys=True), rec)
    return list(unique.values())


def _expected(rec: dict[str, Any]) -> tuple[Any, ...]:
    answers = rec.get("answer_index", [])
    answers = tuple(sorted(set(answers if isinstance(answers, list) else [answers])))
    targets = rec.get("targets", ())
    targets = (targets,) if isinstance(targets, str) else tuple(targets)
    return rec["prompt"], tuple(rec.get("choices", ())), answers, targets


@SETTINGS
@given(recs=records())
def test_jsonl_round_trip(recs: list[dict[str, Any]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        first = Path(tmp) / "first.jsonl"
        assert write_jsonl(first, recs) == len(recs)
        try:
            task = load_jsonl_task(first)
        except TaskFormatError as exc:
            assert "duplicate id" in str(exc)  # two records with the same content and no id
            return
        assert [(ex.prompt, ex.choices, ex.answers, ex.targets) for ex in task.examples] == [
            _expected(r) for r in recs
        ]
        for ex, rec in zip(task.examples, recs, strict=True):
            assert ex.split == rec.get("split", assign_split(ex.id))
            assert dict(ex.metadata) == rec.get("metadata", {})
        second = Path(tmp) / "second.jsonl"
        write_jsonl(second, (example_record(task, ex) for ex in task.examples))
        back = load_jsonl_task(second)
    assert back.examples == task.examples
    assert back.generation == task.generation and back.kind == task.kind


@SETTINGS
@given(recs=records())
def test_csv_round_trip(recs: list[dict[str, Any]]) -> None:
    header = ["id", "prompt", "choices", "answer_index", "targets", "split", "metadata"]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "t.csv"
        with open(path, "w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(header)
            for rec in recs:
                cells = {k: (v if k in ("id", "prompt", "split") else json.dumps(v)) for k, v in rec.items()}
                if "targets" in rec:
                    cells["targets"] = json.dumps(
                        rec["targets"] if isinstance(rec["targets"], list) else [rec["targets"]]
                    )
                if not rec.get("metadata"):
                    cells.pop("metadata", None)
                writer.writerow([cells.get(k, "") for k in header])
        try:
            task = load_csv_task(path)
        except TaskFormatError as exc:
            assert "duplicate id" in str(exc)
            return
    assert [(ex.prompt, ex.choices, ex.answers, ex.targets) for ex in task.examples] == [_expected(r) for r in recs]


json_value = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(any_char, max_size=10)),
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=10,
)


@SETTINGS
@given(example_id=st.text(any_char, max_size=50))
def test_assign_split_total(example_id: str) -> None:
    assert assign_split(example_id) in SPLITS
    assert assign_split(example_id) == assign_split(example_id)


@SETTINGS
@given(content=st.dictionaries(st.text(any_char, max_size=8), json_value, max_size=6), seed=st.randoms())
def test_content_id_ignores_key_order(content: dict[str, Any], seed: Any) -> None:
    items = list(content.items())
    seed.shuffle(items)
    shuffled = dict(items)
    assert content_id(shuffled) == content_id(content)
    assert len(content_id(content)) == 16 and assign_split(content_id(content)) in SPLITS
