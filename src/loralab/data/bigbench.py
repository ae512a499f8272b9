"""Read BIG-bench JSON tasks (`task.json`, with subtasks) into the unified format.

Every field of the format that changes the prompt or the scoring is honoured, with BIG-bench's own
defaults (`bigbench/api/json_task.py`):

| field | default | effect |
|---|---|---|
| `task_prefix` | "" | text before the prompt (and before few-shot demonstrations) |
| `example_input_prefix` | "\\nQ: " | before each input |
| `example_output_prefix` | "\\nA: " | after each input; choices and targets follow it directly |
| `choice_prefix` | "\\n  choice: " | before each choice appended to the input |
| `append_choices_to_input` | true | list the choices in the prompt (truthiness, as BIG-bench: the string "false" appends) |
| `few_shot_example_separator` | "\\n" | between few-shot demonstrations |
| `output_regex` / `stop_string` | `[^\\.\\?\\!\\;\\n]+` if neither | generation: cut at the stop string, then take the first regex match |
| `target` (string or list) | | generation references (any one counts) |
| `target_scores` | | choices; the highest-scoring ones (score > 0) are correct (several allowed) |
| `preferred_score` | | picks the kind: `multiple_choice_grade` -> multiple choice, else generation |

Deviation: an empty choice string is dropped (it has no tokens to score; parsinlu_qa has 24, all
wrong answers). The appended choices are BIG-bench's sorted choices in a permutation seeded by the example's id, so the
order is fixed per example and independent of the file order. A directory with subtask directories
is read as the union of its subtasks (each rendered with its own prefixes; `metadata.subtask` says which).
"""

from __future__ import annotations

import json
import logging
import random
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from loralab.data.schema import Example, GenerationSpec, Task
from loralab.data.split import assign_split, content_id
from loralab.errors import TaskFormatError

logger = logging.getLogger(__name__)

DEFAULT_OUTPUT_REGEX = r"[^\.\?\!\;\n]+"
_DEFAULTS = {
    "task_prefix": "",
    "example_input_prefix": "\nQ: ",
    "example_output_prefix": "\nA: ",
    "choice_prefix": "\n  choice: ",
    "append_choices_to_input": True,
    "few_shot_example_separator": "\n",
}
_MC_SCORES = ("multiple_choice_grade",)


def read_json_file(path: Path) -> Any:
    """Parse a JSON file with one-line errors for bad UTF-8 and bad JSON."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TaskFormatError(f"{path}: not valid UTF-8 (byte {exc.start})") from None
    except OSError as exc:
        raise TaskFormatError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise TaskFormatError(f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise TaskFormatError(f"{path}: JSON nested too deeply to be a task") from None


def load_bigbench_task(
    path: str | Path,
    *,
    kind: str | None = None,
    name: str | None = None,
    format_overrides: Mapping[str, Any] | None = None,
) -> Task:
    """Load a BIG-bench task from a `task.json` file or a task directory (with or without subtasks).

    `format_overrides` replaces prompt-format fields of the file (keys of the table above, e.g.
    `{"append_choices_to_input": False}`); example ids and splits do not depend on it.
    """
    path = Path(path)
    overrides = dict(format_overrides or {})
    unknown = set(overrides) - set(_DEFAULTS)
    if unknown:
        raise TaskFormatError(f"format_overrides: unknown field(s) {sorted(unknown)}; allowed: {sorted(_DEFAULTS)}")
    files = _task_files(path)
    parts = [(f, read_json_file(f)) for f in files]
    for f, data in parts:
        if not isinstance(data, dict):
            raise TaskFormatError(f"{f}: a BIG-bench task must be a JSON object, got {type(data).__name__}")
    first = parts[0][1]
    task_kind = kind or _infer_kind(first, parts[0][0])
    examples: list[Example] = []
    seen: set[str] = set()
    for f, data in parts:
        subtask = str(data.get("name", f.parent.name)) if len(parts) > 1 else None
        for ex in _read_examples(f, {**data, **overrides}, task_kind, subtask):
            if ex.id not in seen:
                seen.add(ex.id)
                examples.append(ex)
    n_raw = sum(len(d.get("examples", [])) for _, d in parts)
    if n_raw != len(examples):
        logger.debug("%s: dropped %d duplicate examples", path, n_raw - len(examples))
    return Task(
        name=name or str(first.get("name", path.stem)),
        kind=task_kind,  # type: ignore[arg-type]
        examples=examples,
        metric="acc" if task_kind == "multiple_choice" else "exact_match",
        generation=_generation_spec(first, parts[0][0]),
        fewshot_separator=str(first.get("few_shot_example_separator", _DEFAULTS["few_shot_example_separator"])),
        description=str(first.get("description", "")),
        source=str(path),
    )


def _task_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise TaskFormatError(f"BIG-bench task path does not exist: {path}")
    subtasks = sorted(p for p in path.glob("*/task.json"))
    if subtasks:
        return subtasks
    if (path / "task.json").is_file():
        return [path / "task.json"]
    raise TaskFormatError(f"{path}: no task.json here or in subtask directories")


def _infer_kind(data: Mapping[str, Any], where: Path) -> str:
    preferred = data.get("preferred_score")
    examples = data.get("examples")
    if not isinstance(examples, list) or not examples:
        raise TaskFormatError(f"{where}: 'examples' must be a non-empty list")
    has_scores = bool(examples) and all(isinstance(e, dict) and "target_scores" in e for e in examples)
    if preferred in _MC_SCORES and has_scores:
        return "multiple_choice"
    if examples and all(isinstance(e, dict) and "target" in e for e in examples):
        return "generation"
    if has_scores:
        return "multiple_choice"
    raise TaskFormatError(f"{where}: cannot tell the task kind: examples need 'target_scores' or 'target'")


def _generation_spec(data: Mapping[str, Any], where: Path) -> GenerationSpec:
    regex = data.get("output_regex")
    stop = data.get("stop_string")
    for key, value in (("output_regex", regex), ("stop_string", stop)):
        if value is not None and not isinstance(value, str):
            raise TaskFormatError(f"{where}: {key} must be a string, got {value!r:.60}")
    if regex is not None:
        try:
            re.compile(regex)
        except re.error as exc:
            raise TaskFormatError(f"{where}: output_regex is not a valid regular expression ({exc}): {regex!r}") \
                from None
    if regex is None and stop is None:
        regex = DEFAULT_OUTPUT_REGEX
    return GenerationSpec(max_new_tokens=32, stop=(stop,) if stop else (), answer_regex=regex)


def _fmt(data: Mapping[str, Any], key: str, where: Path) -> Any:
    value = data.get(key, _DEFAULTS[key])
    if key == "append_choices_to_input" and isinstance(value, str):
        # BIG-bench tests this field for truthiness, so the string "false" (logic_grid_puzzle) appends
        # the choices; keep that, since it is what BIG-bench scored.
        logger.warning("%s: append_choices_to_input is the string %r; treated as %s, as BIG-bench does",
                       where, value, bool(value))
        return bool(value)
    expected = bool if key == "append_choices_to_input" else str
    if not isinstance(value, expected):
        raise TaskFormatError(f"{where}: {key} must be a {expected.__name__}, got {value!r}")
    return value


def _read_examples(f: Path, data: Mapping[str, Any], kind: str, subtask: str | None) -> list[Example]:
    raw = data.get("examples")
    if not isinstance(raw, list) or not raw:
        raise TaskFormatError(f"{f}: 'examples' must be a non-empty list")
    fmt = {key: _fmt(data, key, f) for key in _DEFAULTS}
    task_name = str(data.get("name", f.parent.name))
    return [_example(f, i, ex, kind, fmt, task_name, subtask) for i, ex in enumerate(raw)]


def _example(
    f: Path, i: int, raw: Any, kind: str, fmt: Mapping[str, Any], task_name: str, subtask: str | None
) -> Example:
    at = f"{f}: examples[{i}]"
    if not isinstance(raw, dict):
        raise TaskFormatError(f"{at}: must be an object, got {type(raw).__name__}")
    text = raw.get("input")
    if not isinstance(text, str):
        raise TaskFormatError(f"{at}: 'input' must be a string, got {text!r:.60}")
    scores = _target_scores(raw, at) if "target_scores" in raw else None
    targets = _targets(raw, at) if "target" in raw else ()
    if kind == "multiple_choice" and scores is None:
        raise TaskFormatError(f"{at}: a multiple-choice task needs 'target_scores' in every example")
    if kind == "generation" and not targets:
        raise TaskFormatError(f"{at}: a generation task needs 'target' in every example")
    ex_id = content_id({"task": task_name, "input": text, "target_scores": scores, "target": list(targets)})
    order = sorted(scores) if scores is not None else []
    random.Random(ex_id).shuffle(order)  # BIG-bench permutes the sorted choices; seeded per example
    choices = tuple(order)
    body = text
    if choices and fmt["append_choices_to_input"]:
        body += fmt["choice_prefix"] + fmt["choice_prefix"].join(choices)
    body = fmt["example_input_prefix"] + body + fmt["example_output_prefix"]
    metadata: dict[str, Any] = {"input": text}
    if subtask:
        metadata["subtask"] = subtask
    if "id" in raw:
        metadata["source_id"] = raw["id"]
    answers: tuple[int, ...] = ()
    if kind == "multiple_choice" and scores is not None:
        best = max(scores.values())
        answers = tuple(j for j, c in enumerate(choices) if scores[c] == best and best > 0)
        if not answers:
            raise TaskFormatError(f"{at}: no correct answer (no choice has a positive score)")
    return Example(
        id=ex_id,
        body=body,
        prefix=fmt["task_prefix"],
        choices=choices if kind == "multiple_choice" else (),
        answers=answers,
        targets=targets,
        split=assign_split(ex_id),
        metadata=metadata,
    )


def _target_scores(raw: Mapping[str, Any], at: str) -> dict[str, float]:
    scores = raw["target_scores"]
    if not isinstance(scores, dict) or len(scores) < 2:
        raise TaskFormatError(f"{at}: 'target_scores' must map at least 2 choices to scores")
    for choice, score in scores.items():
        if isinstance(score, bool) or not isinstance(score, (int, float)):
            raise TaskFormatError(f"{at}: score of choice {choice!r} must be a number, got {score!r}")
    if "" in scores:
        # An empty continuation has no tokens, so it cannot be scored by likelihood (parsinlu_qa has
        # 24 such zero-score distractors); drop it.
        logger.debug("%s: dropping an empty choice", at)
        scores = {k: v for k, v in scores.items() if k != ""}
        if len(scores) < 2:
            raise TaskFormatError(f"{at}: fewer than 2 non-empty choices in 'target_scores'")
    return {str(k): float(v) for k, v in scores.items()}


def _targets(raw: Mapping[str, Any], at: str) -> tuple[str, ...]:
    target = raw["target"]
    targets = [target] if isinstance(target, str) else target
    if not isinstance(targets, list) or not targets or not all(isinstance(t, str) for t in targets):
        raise TaskFormatError(f"{at}: 'target' must be a string or a non-empty list of strings")
    return tuple(targets)
