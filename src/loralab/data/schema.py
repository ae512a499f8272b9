"""The unified task format: every source (BIG-bench, JSONL/CSV, Hugging Face datasets) becomes these types.

An `Example` is either multiple choice (`choices` + the indices of the correct ones) or generation
(`targets`). What is scored is exactly `prompt + choice` (multiple choice) or the model's continuation
of `prompt` (generation): nothing is inserted between them, so an exported example can be scored by
any other harness with the same strings.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from loralab.errors import EmptySplitError, TaskFormatError

TaskKind = Literal["multiple_choice", "generation"]
SPLITS = ("train", "validation", "test")
TASK_KINDS: tuple[str, ...] = ("multiple_choice", "generation")
MAX_TEXT_CHARS = 200_000  # longest prompt/choice/target/id accepted from a task file: longer is a broken file


@dataclass(frozen=True)
class Example:
    """One unified example.

    Args:
        id: Stable identifier (content hash when the source has none); decides the split.
        body: The per-example prompt text (BIG-bench: input prefix + input + appended choices + output prefix).
        choices: Multiple-choice continuations, scored as `prompt + choice`.
        answers: Indices into `choices` of the correct choices (BIG-bench allows several).
        targets: Reference strings for generation (any one counts as correct).
        prefix: Task-level text before the body (BIG-bench `task_prefix`); kept apart so few-shot
            prompts can put demonstrations between it and the body.
        split: "train", "validation" or "test".
        metadata: Free-form source fields (subtask, original input, ...).
    """

    id: str
    body: str
    choices: tuple[str, ...] = ()
    answers: tuple[int, ...] = ()
    targets: tuple[str, ...] = ()
    prefix: str = ""
    split: str = "test"
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @property
    def prompt(self) -> str:
        """The zero-shot prompt, exactly as scored."""
        return self.prefix + self.body

    @property
    def is_multiple_choice(self) -> bool:
        return bool(self.choices)

    @property
    def answer_index(self) -> int:
        """The first correct choice (for single-answer consumers)."""
        return self.answers[0]

    def demonstration_answer(self) -> str:
        """Text that completes this example when it is used as a few-shot demonstration.

        `metadata["demonstration"]` overrides the default (the correct choice, or the first target),
        e.g. GSM8K demonstrates the whole rationale, not only the final number.
        """
        if "demonstration" in self.metadata:
            return str(self.metadata["demonstration"])
        return self.choices[self.answers[0]] if self.choices else self.targets[0]

    def replace(self, **changes: Any) -> Example:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class GenerationSpec:
    """How a generation task decodes and extracts its answer.

    Args:
        max_new_tokens: Greedy decoding budget.
        stop: Strings that end the generation; the text is cut at the first one.
        answer_regex: Applied to the cut text; the first (or last, see `answer_pick`) match is the answer.
            A regex with a capturing group yields the group. None keeps the whole text.
        answer_pick: "first" (BIG-bench `output_regex`) or "last" (GSM8K's last number).
        normalize: "strip" (compare stripped strings) or "number" (also drop `$`, `,` and a trailing `.`).
        strict_regex: An extra, stricter extraction reported as `exact_match_strict` (GSM8K `#### N`).
    """

    max_new_tokens: int = 32
    stop: tuple[str, ...] = ("\n",)
    answer_regex: str | None = None
    answer_pick: Literal["first", "last"] = "first"
    normalize: Literal["strip", "number"] = "strip"
    strict_regex: str | None = None

    def __post_init__(self) -> None:
        tokens = self.max_new_tokens
        if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1:
            raise TaskFormatError(f"generation.max_new_tokens must be an integer >= 1, got {self.max_new_tokens!r}")
        if self.answer_pick not in ("first", "last"):
            raise TaskFormatError(f"generation.answer_pick must be 'first' or 'last', got {self.answer_pick!r}")
        if self.normalize not in ("strip", "number"):
            raise TaskFormatError(f"generation.normalize must be 'strip' or 'number', got {self.normalize!r}")
        for name in ("answer_regex", "strict_regex"):
            _check_regex(f"generation.{name}", getattr(self, name))

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["stop"] = list(self.stop)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "generation") -> GenerationSpec:
        allowed = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - allowed
        if unknown:
            raise TaskFormatError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
        kwargs = dict(data)
        if "stop" in kwargs:
            stop = kwargs["stop"]
            if isinstance(stop, str) or not all(isinstance(s, str) for s in stop):
                raise TaskFormatError(f"{where}.stop must be a list of strings, got {stop!r}")
            kwargs["stop"] = tuple(stop)
        return cls(**kwargs)


def _check_regex(name: str, pattern: str | None) -> None:
    import re

    if pattern is None:
        return
    if not isinstance(pattern, str):
        raise TaskFormatError(f"{name} must be a string, got {pattern!r:.60}")
    try:
        re.compile(pattern)
    except re.error as exc:
        raise TaskFormatError(f"{name} is not a valid regular expression ({exc}): {pattern!r}") from None


@dataclass(repr=False)  # the generated repr would print every example: `__repr__`/`__str__` are one line
class Task:
    """A named task: its examples (all splits), how it is scored and where it came from.

    `str(task)` (and `print(task)`) is a one-line summary: name, kind, metric, split sizes, source.

    Args:
        name: Registry or file name.
        kind: "multiple_choice" or "generation".
        examples: All examples; `split()` selects one split, ordered by id (so a re-read or reordered
            file gives the same order).
        metric: The primary metric ("acc" for multiple choice, "exact_match" for generation).
        generation: Decoding and answer extraction (generation tasks).
        fewshot_separator: Text between few-shot demonstrations (BIG-bench `few_shot_example_separator`).
        description: One line.
        domain: Domain tag (feeds manual LoRA selection).
        source: Where the examples were read from.
    """

    name: str
    kind: TaskKind
    examples: list[Example]
    metric: str = "acc"
    generation: GenerationSpec = field(default_factory=GenerationSpec)
    fewshot_separator: str = "\n"
    description: str = ""
    domain: str = "general"
    source: str = ""

    def __post_init__(self) -> None:
        if self.kind not in TASK_KINDS:
            raise TaskFormatError(f"task {self.name!r}: kind must be one of {TASK_KINDS}, got {self.kind!r}")
        for ex in self.examples:
            validate_example(ex, self.kind, where=f"task {self.name!r}")

    def split_sizes(self) -> dict[str, int]:
        """Examples per split, every split listed (0 where it has none)."""
        return {name: sum(ex.split == name for ex in self.examples) for name in SPLITS}

    def __str__(self) -> str:
        sizes = ", ".join(f"{name} {n}" for name, n in self.split_sizes().items())
        return (f"{self.name}: {self.kind}, metric {self.metric}, {len(self.examples)} examples ({sizes}), "
                f"source {self.source or 'unknown'}")

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, kind={self.kind!r}, metric={self.metric!r}, "
                f"examples={len(self.examples)}, source={self.source!r})")

    def split(self, split: str, limit: int | None = None) -> list[Example]:
        """Examples of one split ("all" for every example), sorted by id, the first `limit` of them."""
        if split not in (*SPLITS, "all"):
            raise TaskFormatError(f"split must be one of {(*SPLITS, 'all')}, got {split!r}", param="split")
        if limit is not None and limit < 1:
            raise EmptySplitError(f"limit must be >= 1, got {limit}", param="limit")
        chosen = sorted((ex for ex in self.examples if split == "all" or ex.split == split), key=lambda e: e.id)
        if not chosen:
            raise EmptySplitError(f"task {self.name!r} has no examples in split {split!r}")
        return chosen[:limit] if limit is not None else chosen

    def prompt(self, example: Example, shots: Sequence[Example] = ()) -> str:
        """The prompt for `example`, with `shots` as demonstrations (BIG-bench few-shot layout)."""
        if not shots:
            return example.prompt
        demos = [shot.body + shot.demonstration_answer() for shot in shots]
        return example.prefix + self.fewshot_separator.join([*demos, example.body])

    def fewshot_examples(self, example: Example, k: int) -> list[Example]:
        """k demonstrations from the train split, fixed per example (seeded by its id)."""
        if k <= 0:
            return []
        import hashlib
        import random

        pool = [ex for ex in self.split("train") if ex.id != example.id]
        rng = random.Random(int(hashlib.sha256(example.id.encode()).hexdigest()[:16], 16))
        return rng.sample(pool, min(k, len(pool)))


def validate_example(ex: Example, kind: str, where: str) -> None:
    """Raise TaskFormatError (one line) if `ex` does not fit a task of this kind."""
    at = f"{where}, example {ex.id!r}"
    if not isinstance(ex.body, str) or not ex.prompt.strip():
        raise TaskFormatError(f"{at}: prompt must be a non-empty string")
    # json.loads accepts an escaped lone surrogate ("\\ud800"); such text cannot be tokenized or written as UTF-8.
    for what, texts in (("id", (ex.id,)), ("prompt", (ex.prompt,)), ("choice", ex.choices), ("target", ex.targets)):
        if any(isinstance(t, str) and not _is_unicode(t) for t in texts):
            raise TaskFormatError(f"{at}: the {what} contains a lone surrogate (\\uD800-\\uDFFF), not valid Unicode")
    for what, texts in (("id", (ex.id,)), ("choice", ex.choices), ("target", ex.targets)):
        longest = max((len(t) for t in texts if isinstance(t, str)), default=0)
        if longest > MAX_TEXT_CHARS:
            raise TaskFormatError(f"{at}: a {what} has {longest} characters; the limit is {MAX_TEXT_CHARS}")
    if ex.split not in SPLITS:
        raise TaskFormatError(f"{at}: split must be one of {SPLITS}, got {ex.split!r}")
    if kind == "multiple_choice":
        if len(ex.choices) < 2:
            raise TaskFormatError(f"{at}: multiple choice needs at least 2 choices, got {len(ex.choices)}")
        if any(not isinstance(c, str) or c == "" for c in ex.choices):
            raise TaskFormatError(f"{at}: choices must be non-empty strings")
        if not ex.answers:
            raise TaskFormatError(f"{at}: no correct answer among the choices")
        bad = [a for a in ex.answers if not 0 <= a < len(ex.choices)]
        if bad:
            raise TaskFormatError(f"{at}: answer index {bad[0]} out of range 0..{len(ex.choices) - 1}")
    elif not ex.targets or any(not isinstance(t, str) for t in ex.targets):
        raise TaskFormatError(f"{at}: a generation example needs at least one target string")


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
