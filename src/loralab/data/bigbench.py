"""Read BIG-bench JSON tasks (`task.json`, with subtasks) into the unified format.

Every field of the format that changes the prompt or the scoring is honoured, with BIG-bench's own
defaults (BIG-bench 1.0.0, `bigbench/api/json_task.py`):

| field | default | effect |
|---|---|---|
| `task_prefix` | "" | text before the prompt (and before few-shot demonstrations) |
| `example_input_prefix` | "\\nQ: " | before each input |
| `example_output_prefix` | "\\nA: " | after each input; choices and targets follow it directly |
| `choice_prefix` | "\\n  choice: " | before each choice appended to the input |
| `append_choices_to_input` | true | list the choices in the prompt (truthiness, as BIG-bench: the string "false" appends) |
| `few_shot_example_separator` | "\\n" | between few-shot demonstrations (each subtask its own) |
| `output_regex` / `stop_string` | `[^\\.\\?\\!\\;\\n]+` if neither | generation: keep up to and including the first stop string (unless it is at index 0), then the first regex match |
| `target` (string or list) | | generation references (any one counts); the few-shot demonstration (also for multiple choice) |
| `target_scores` | | choices; the highest-scoring ones (score > 0) are correct (several allowed) |
| `preferred_score` | | picks the kind: `multiple_choice_grade` -> multiple choice, else generation |

As in BIG-bench: the appended choices are the sorted choices in the order of
`numpy.random.RandomState(42).permutation`, a fresh generator for every example (so the order
depends only on the choices, never on the file order); a few-shot demonstration completes its
example with `target` when the example has one, else with the first highest-scoring choice in file
order (`bigbench_demonstration`; training still uses the first correct choice,
`Example.demonstration_answer`); a directory with subtask directories is the union of its subtasks,
and each subtask keeps its own prefixes, separator, `output_regex`/`stop_string` and few-shot pool
(`metadata["subtask"]` says which). `metadata["bigbench"]` holds what the task-level fields cannot
say: the separator and stop/regex rule of union members and of `stop_string` tasks, and the
demonstration where it is not the first correct choice; an exported file keeps it and scores the
same. A union of generation and multiple-choice subtasks is refused unless a kind is given.
Generation reports `exact_match` (BIG-bench's postprocessing, then both sides whitespace-stripped;
the primary metric) and BIG-bench's own `exact_str_match` (no stripping).

Deviations from BIG-bench:

| what | BIG-bench | loralab | why |
|---|---|---|---|
| empty choice string | listed and scored | neither listed nor scored; the other choices keep BIG-bench's order | no tokens to score by likelihood (parsinlu_qa has 24, all wrong answers) |
| duplicate examples | every copy kept and scored | one example per distinct (subtask, input, target_scores, target): 141 of the suite's BIG-bench examples dropped (48 identical, 93 differ only in `id`, `comment` or key order) | ids and splits come from the content; two copies would put one question in train and test |
| ties between choices | first in file order | first in the appended order | the scored choices are kept in the listed order |
| demonstration with a list `target` | random element (the evaluation's RNG) | the first element | few-shot draws use loralab's per-example seed, not BIG-bench's RNG stream |
| few-shot draws | random examples of the (sub)task, BIG-bench's RNG | train-split examples of the same (sub)task, seeded by the query's id | no test example is ever a demonstration; fixed per example |
| train/validation/test | none | content-hash split (`data/split.py`) | the library trains on train |
| the string "false" in `append_choices_to_input` | truthy | truthy (kept, with a warning) | what BIG-bench scored |
| NaN, Infinity or non-numeric `target_scores` | accepted by Python's json | refused (one line: file, example, choice, value) | no meaningful correct answer |
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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
_CHOICE_SEED = 42  # BIG-bench's seed for the order of the appended choices
# Keys of metadata["bigbench"]: what an example needs to be rendered and scored as its own (sub)task.
# "demonstration" is BIG-bench's few-shot answer where it is not the first correct choice; it is kept
# apart from metadata["demonstration"], which is also the library's training answer.
BIGBENCH_METADATA_KEYS = ("few_shot_example_separator", "stop_string", "output_regex", "demonstration")


@dataclass(frozen=True)
class BigBenchRule:
    """BIG-bench's postprocessing of a generation: `stop_string` (kept, not cut at index 0), then `output_regex`."""

    stop_string: str | None
    output_regex: str | None


@dataclass(repr=False)  # Task's one-line repr, not one listing every example
class BigBenchTask(Task):
    """A task read from BIG-bench `task.json` files: few-shot prompts and scoring follow each example's (sub)task.

    Demonstrations come from the train split of the query's own subtask and are joined with that
    subtask's `few_shot_example_separator`. A `generation` assigned after loading (a task YAML's
    `generation:`) overrides the BIG-bench stop/regex rule for every example.
    """

    def __post_init__(self) -> None:
        super().__post_init__()
        # The spec built from the task.json; any other object in `generation` later is a user override.
        self._loaded_generation = self.generation

    @property
    def generation_overridden(self) -> bool:
        return self.generation is not self._loaded_generation

    def prompt(self, example: Example, shots: Sequence[Example] = ()) -> str:
        """The prompt for `example`, with `shots` joined by the example's own subtask separator."""
        if not shots:
            return example.prompt
        separator = fewshot_separator(example, self.fewshot_separator)
        demos = [shot.body + bigbench_demonstration(shot) for shot in shots]
        return example.prefix + separator.join([*demos, example.body])

    def fewshot_examples(self, example: Example, k: int) -> list[Example]:
        """k train-split demonstrations from the example's own subtask, fixed per example (seeded by its id)."""
        if k <= 0:
            return []
        subtask = example.metadata.get("subtask")
        pool = [ex for ex in self.split("train") if ex.id != example.id and ex.metadata.get("subtask") == subtask]
        # The same draw as Task.fewshot_examples, so a task without subtasks keeps its demonstrations.
        rng = random.Random(int(hashlib.sha256(example.id.encode()).hexdigest()[:16], 16))
        return rng.sample(pool, min(k, len(pool)))


def fewshot_separator(example: Example, default: str) -> str:
    """The few-shot separator of the example's own (sub)task (from `metadata["bigbench"]`), else `default`."""
    settings = _metadata_settings(example)
    sep = settings.get("few_shot_example_separator") if settings else None
    return default if sep is None else sep


def bigbench_demonstration(example: Example) -> str:
    """What completes `example` as a BIG-bench few-shot demonstration: its `target` for multiple choice
    when it has one, else the first highest-scoring choice in file order, else its first target."""
    settings = _metadata_settings(example)
    demo = settings.get("demonstration") if settings else None
    return example.demonstration_answer() if demo is None else demo


def bigbench_rule(task: Task, example: Example) -> BigBenchRule | None:
    """How `example`'s generation is postprocessed: BIG-bench's rule, or None for the task's `GenerationSpec`.

    BIG-bench examples (a `BigBenchTask`, or `metadata["bigbench"]` as kept by an export) follow
    BIG-bench, each with its own subtask's `stop_string`/`output_regex`; an overridden `generation`
    and every other task follow `task.generation`.
    """
    if isinstance(task, BigBenchTask) and task.generation_overridden:
        return None
    settings = _metadata_settings(example)
    if settings is not None and ("stop_string" in settings or "output_regex" in settings):
        return BigBenchRule(settings.get("stop_string"), settings.get("output_regex"))
    if isinstance(task, BigBenchTask):
        # No stop string and no subtasks: task.generation is exactly the file's rule.
        stop = task.generation.stop[0] if task.generation.stop else None
        return BigBenchRule(stop, task.generation.answer_regex)
    return None


def _metadata_settings(example: Example) -> dict[str, str | None] | None:
    """`metadata["bigbench"]`, checked: it can come from a user's JSONL file, not only from this reader."""
    raw = example.metadata.get("bigbench") if isinstance(example.metadata, Mapping) else None
    if raw is None:
        return None
    at = f"example {example.id!r}: metadata.bigbench"
    if not isinstance(raw, Mapping):
        raise TaskFormatError(f"{at} must be an object with keys {list(BIGBENCH_METADATA_KEYS)}, got {raw!r:.60}")
    unknown = sorted(set(raw) - set(BIGBENCH_METADATA_KEYS))
    if unknown:
        raise TaskFormatError(f"{at}: unknown key(s) {unknown}; allowed: {list(BIGBENCH_METADATA_KEYS)}")
    for key, value in raw.items():
        if value is not None and not isinstance(value, str):
            raise TaskFormatError(f"{at}.{key} must be a string or null, got {value!r:.60}")
    regex = raw.get("output_regex")
    if regex is not None:
        _compile(regex, f"{at}.output_regex")
    return dict(raw)


def read_json_file(path: Path) -> Any:
    """Parse a JSON file with one-line errors for bad UTF-8 and bad JSON.

    `NaN`/`Infinity` parse (Python's json, which BIG-bench uses, accepts them) so that the example
    holding one can be named when its scores are checked.
    """
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
) -> BigBenchTask:
    """Load a BIG-bench task from a `task.json` file or a task directory (with or without subtasks).

    `format_overrides` replaces prompt-format fields of the file (keys of the table above, e.g.
    `{"append_choices_to_input": False}`) in every subtask; example ids and splits do not depend on it.
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
    union = len(parts) > 1
    task_kind = kind or _union_kind(path, parts)
    examples: list[Example] = []
    seen: set[str] = set()
    specs: list[GenerationSpec] = []
    separators: list[str] = []
    for f, data in parts:
        fields = {**data, **overrides}
        fmt = {key: _fmt(fields, key, f) for key in _DEFAULTS}
        spec = _generation_spec(data, f)
        specs.append(spec)
        separators.append(fmt["few_shot_example_separator"])
        subtask = str(data.get("name", f.parent.name)) if union else None
        for ex in _read_examples(f, data, fmt, spec, task_kind, subtask):
            if ex.id not in seen:
                seen.add(ex.id)
                examples.append(ex)
    n_raw = sum(len(d.get("examples", [])) for _, d in parts)
    if n_raw != len(examples):
        logger.debug("%s: dropped %d duplicate examples", path, n_raw - len(examples))
    first = parts[0][1]
    return BigBenchTask(
        name=name or str(first.get("name", path.stem)),
        kind=task_kind,  # type: ignore[arg-type]
        examples=examples,
        metric="acc" if task_kind == "multiple_choice" else "exact_match",
        # For a union these are the first subtask's; every example carries its own in metadata["bigbench"].
        generation=specs[0],
        fewshot_separator=separators[0],
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


def _union_kind(path: Path, parts: Sequence[tuple[Path, Mapping[str, Any]]]) -> str:
    """The one kind of every (sub)task; a union of generation and multiple choice is refused."""
    kinds: dict[str, list[str]] = {}
    for f, data in parts:
        kinds.setdefault(_infer_kind(data, f), []).append(f.parent.name)
    if len(kinds) > 1:
        shown = "; ".join(f"{k}: {', '.join(names)}" for k, names in sorted(kinds.items()))
        raise TaskFormatError(
            f"{path}: its subtasks mix kinds ({shown}); load one subtask (<task>/<subtask>) or give a kind"
        )
    return next(iter(kinds))


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


def _compile(regex: str, what: str) -> None:
    try:
        re.compile(regex)
    except re.error as exc:
        raise TaskFormatError(f"{what} is not a valid regular expression ({exc}): {regex!r}") from None


def _generation_spec(data: Mapping[str, Any], where: Path) -> GenerationSpec:
    regex = data.get("output_regex")
    stop = data.get("stop_string")
    for key, value in (("output_regex", regex), ("stop_string", stop)):
        if value is not None and not isinstance(value, str):
            raise TaskFormatError(f"{where}: {key} must be a string, got {value!r:.60}")
    if regex is not None:
        _compile(regex, f"{where}: output_regex")
    if regex is None and stop is None:
        regex = DEFAULT_OUTPUT_REGEX
    # `stop` lets decoding end early; where the text is cut (BIG-bench keeps the stop string) is
    # BigBenchRule's business, see loralab.eval.metrics.bigbench_postprocess.
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


def _read_examples(
    f: Path, data: Mapping[str, Any], fmt: Mapping[str, Any], spec: GenerationSpec, kind: str, subtask: str | None
) -> list[Example]:
    raw = data.get("examples")
    if not isinstance(raw, list) or not raw:
        raise TaskFormatError(f"{f}: 'examples' must be a non-empty list")
    task_name = str(data.get("name", f.parent.name))
    settings: dict[str, str | None] | None = None
    if subtask is not None or spec.stop:
        # Only where the task-level fields cannot say it: in a union each subtask has its own; with a
        # stop_string the BIG-bench cut (keep it, not at index 0) differs from GenerationSpec's.
        settings = {
            "few_shot_example_separator": fmt["few_shot_example_separator"],
            "stop_string": spec.stop[0] if spec.stop else None,
            "output_regex": spec.answer_regex,
        }
    return [_example(f, i, ex, kind, fmt, task_name, subtask, settings) for i, ex in enumerate(raw)]


@functools.lru_cache(maxsize=256)
def _choice_permutation(n: int) -> tuple[int, ...]:
    """BIG-bench's order of n sorted choices: `numpy.random.RandomState(42).permutation`, fresh per example."""
    import numpy as np

    # Permuting indices draws the same numbers as permuting the strings (numpy's legacy shuffle), and
    # avoids numpy's fixed-width string arrays, which drop trailing NUL characters.
    return tuple(int(i) for i in np.random.RandomState(_CHOICE_SEED).permutation(n))


def bigbench_choice_order(choices: Sequence[str]) -> list[str]:
    """The choices in the order BIG-bench appends them to the input (sorted, then its fixed permutation)."""
    ordered = sorted(choices)
    return [ordered[i] for i in _choice_permutation(len(ordered))]


def _example(
    f: Path,
    i: int,
    raw: Any,
    kind: str,
    fmt: Mapping[str, Any],
    task_name: str,
    subtask: str | None,
    settings: Mapping[str, str | None] | None,
) -> Example:
    at = f"{f}: examples[{i}]"
    if not isinstance(raw, dict):
        raise TaskFormatError(f"{at}: must be an object, got {type(raw).__name__}")
    text = raw.get("input")
    if not isinstance(text, str):
        raise TaskFormatError(f"{at}: 'input' must be a string, got {text!r:.60}")
    all_scores = _target_scores(raw, at) if "target_scores" in raw else None
    scores = _scored_choices(all_scores, at) if all_scores is not None else None
    targets = _targets(raw, at) if "target" in raw else ()
    if kind == "multiple_choice" and scores is None:
        raise TaskFormatError(f"{at}: a multiple-choice task needs 'target_scores' in every example")
    if kind == "generation" and not targets:
        raise TaskFormatError(f"{at}: a generation task needs 'target' in every example")
    # The id hashes the scored content only (not the listing, not the format), so it never moved.
    ex_id = content_id({"task": task_name, "input": text, "target_scores": scores, "target": list(targets)})
    # BIG-bench's order of all choices, the empty one included, so the others keep BIG-bench's positions;
    # the empty one is then neither listed nor scored (see the deviation table).
    choices = tuple(c for c in bigbench_choice_order(list(all_scores or ())) if c != "")
    body = text
    if choices and fmt["append_choices_to_input"]:
        body += fmt["choice_prefix"] + fmt["choice_prefix"].join(choices)
    body = fmt["example_input_prefix"] + body + fmt["example_output_prefix"]
    metadata: dict[str, Any] = {"input": text}
    if subtask:
        metadata["subtask"] = subtask
    if "id" in raw:
        metadata["source_id"] = raw["id"]
    bigbench: dict[str, Any] = dict(settings or {})
    answers: tuple[int, ...] = ()
    if kind == "multiple_choice" and scores is not None and all_scores is not None:
        best = max(scores.values())
        answers = tuple(j for j, c in enumerate(choices) if scores[c] == best and best > 0)
        if not answers:
            raise TaskFormatError(f"{at}: no correct answer (no choice has a positive score)")
        # BIG-bench demonstrates `target` when the example has one (strategyqa: the answer with its
        # reason), else the first highest-scoring choice in file order.
        top = max(all_scores.values())
        demo = targets[0] if targets else next(c for c, s in all_scores.items() if s == top)
        if demo != choices[answers[0]]:
            bigbench["demonstration"] = demo
    if bigbench:
        metadata["bigbench"] = bigbench
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


def _literal(value: float) -> str:
    """A non-finite float as JSON-with-extensions spells it."""
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def _target_scores(raw: Mapping[str, Any], at: str) -> dict[str, float]:
    """Every choice of `target_scores` (the empty one too) with its score, in file order."""
    scores = raw["target_scores"]
    if not isinstance(scores, dict) or len(scores) < 2:
        raise TaskFormatError(f"{at}: 'target_scores' must map at least 2 choices to scores")
    for choice, score in scores.items():
        if isinstance(score, bool) or not isinstance(score, (int, float)):
            raise TaskFormatError(f"{at}: score of choice {choice!r} must be a number, got {score!r:.60}")
        if not math.isfinite(score):
            raise TaskFormatError(
                f"{at}: score of choice {choice!r} is {_literal(score)}; scores must be finite numbers"
            )
    return {str(k): float(v) for k, v in scores.items()}


def _scored_choices(scores: Mapping[str, float], at: str) -> dict[str, float]:
    if "" not in scores:
        return dict(scores)
    # An empty continuation has no tokens, so it cannot be scored by likelihood (parsinlu_qa has 24
    # such zero-score distractors); it stays in the listed choices but is not scored.
    logger.debug("%s: not scoring an empty choice", at)
    kept = {k: v for k, v in scores.items() if k != ""}
    if len(kept) < 2:
        raise TaskFormatError(f"{at}: fewer than 2 non-empty choices in 'target_scores'")
    return kept


def _targets(raw: Mapping[str, Any], at: str) -> tuple[str, ...]:
    target = raw["target"]
    targets = [target] if isinstance(target, str) else target
    if not isinstance(targets, list) or not targets or not all(isinstance(t, str) for t in targets):
        raise TaskFormatError(f"{at}: 'target' must be a string or a non-empty list of strings")
    return tuple(targets)
