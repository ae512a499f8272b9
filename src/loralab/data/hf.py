"""Hugging Face datasets (hub id or local directory) mapped into the unified format by a column mapping.

    load_hf_task("allenai/openbookqa", subset="main", prompt="{question_stem}\\nAnswer:",
                 choices="choices.text", answer="answerKey", answer_labels="choices.label",
                 choice_format=" {}")

Column references may use dots to reach into nested columns (`choices.text`). `prompt` is a
`str.format` template over the row's columns. The dataset's own splits are kept when it has
them (mapped by `splits`); a dataset with a single split is re-split deterministically like BIG-bench.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from loralab.data.schema import Example, GenerationSpec, Task
from loralab.data.split import assign_split, content_id
from loralab.errors import DataUnavailableError, TaskFormatError

logger = logging.getLogger(__name__)

DEFAULT_SPLITS = {"train": "train", "validation": "validation", "test": "test"}


def load_hf_task(
    path: str,
    *,
    prompt: str,
    choices: str | Sequence[str] | None = None,
    answer: str | None = None,
    answer_labels: str | None = None,
    targets: str | None = None,
    choice_format: str = "{}",
    subset: str | None = None,
    splits: Mapping[str, str] | None = None,
    name: str | None = None,
    generation: GenerationSpec | None = None,
    trust_remote_code: bool = False,
    where: str = "hf task",
) -> Task:
    """Load a dataset and map its columns to unified examples.

    Args:
        path: Hub id or local directory (`save_to_disk` output or data files).
        prompt: `str.format` template over the columns, e.g. "Question: {question}\\nAnswer:".
        choices: Column holding the list of choices, or a fixed list of choice strings.
        answer: Column with the correct choice (an index, a label from `answer_labels`, or the choice text).
        answer_labels: Column listing the labels that `answer` refers to (e.g. "A".."D").
        targets: Column with the reference string(s) of a generation task.
        choice_format: Template applied to each choice (e.g. " {}" to put a space before it).
        splits: loralab split -> dataset split; defaults to same names, missing ones re-split by hash.
        where: What errors name (the task YAML file).
    """
    if (choices is None) == (targets is None):
        raise TaskFormatError(f"{where}: give exactly one of 'choices' (multiple choice) or 'targets' (generation)")
    if choices is not None and answer is None:
        raise TaskFormatError(f"{where}: multiple choice needs 'answer' (the column with the correct choice)")
    _check_choice_format(choice_format, where)
    dataset = _load(path, subset, trust_remote_code)
    mapping = dict(DEFAULT_SPLITS, **(splits or {}))
    available = {k: v for k, v in mapping.items() if v in dataset}
    kind = "multiple_choice" if choices is not None else "generation"
    examples: list[Example] = []
    rows = [(split, row) for split, ds_split in available.items() for row in dataset[ds_split]]
    if not available or len(list(dataset)) == 1:
        only = list(dataset)
        logger.info("%s has no %s splits; splitting its %s deterministically", path, list(mapping.values()), only)
        rows = [(None, row) for ds_split in only for row in dataset[ds_split]]
    for i, (split, row) in enumerate(rows):
        where = f"{path}[{i}]"
        body = _render(prompt, row, where)
        if kind == "multiple_choice":
            opts = [choice_format.format(c) for c in _choice_list(choices, row, where)]
            ans = (_answer_index(row, answer, answer_labels, opts, choice_format, where),)
            tgts: tuple[str, ...] = ()
        else:
            opts, ans, tgts = [], (), _targets(row, targets, where)  # type: ignore[arg-type]
        ex_id = content_id({"prompt": body, "choices": opts, "answers": list(ans), "targets": list(tgts)})
        examples.append(Example(id=ex_id, body=body, choices=tuple(opts), answers=ans, targets=tgts,
                                split=split or assign_split(ex_id)))
    unique = list({ex.id: ex for ex in examples}.values())
    return Task(name=name or Path(path).name, kind=kind, examples=unique,  # type: ignore[arg-type]
                metric="acc" if kind == "multiple_choice" else "exact_match",
                generation=generation or GenerationSpec(), source=f"hf:{path}")


def _check_choice_format(template: str, where: str) -> None:
    """Before the dataset loads: `choice_format` must format one choice (a bad template fails on every row)."""
    try:
        template.format("choice")
    except (IndexError, KeyError, ValueError) as exc:
        raise TaskFormatError(f"{where}: choice_format: not a template of one choice (got {template!r:.60}; "
                              f"allowed: a str.format template with one {{}} field, e.g. ' {{}}'; {exc!r})") from None


def _load(path: str, subset: str | None, trust_remote_code: bool) -> Any:
    from loralab.utils.extras import require_extra

    datasets = require_extra("datasets", "a Hugging Face dataset task (source: hf)")

    try:
        if Path(path).is_dir() and any((Path(path) / f).exists() for f in ("dataset_dict.json", "state.json")):
            ds = datasets.load_from_disk(path)
        else:
            kwargs = {"trust_remote_code": True} if trust_remote_code else {}
            ds = datasets.load_dataset(path, subset, **kwargs)
    except (FileNotFoundError, ConnectionError, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataUnavailableError(f"cannot load Hugging Face dataset {path!r}: {first}") from None
    return ds if isinstance(ds, Mapping) or hasattr(ds, "keys") else {"train": ds}


def _get(row: Mapping[str, Any], column: str, where: str) -> Any:
    value: Any = row
    for part in column.split("."):
        if not isinstance(value, Mapping) or part not in value:
            raise TaskFormatError(f"{where}: no column {column!r}; columns: {sorted(row)}")
        value = value[part]
    return value


def _render(template: str, row: Mapping[str, Any], where: str) -> str:
    try:
        text = template.format(**row)
    except KeyError as exc:
        raise TaskFormatError(f"{where}: prompt template uses {{{exc.args[0]}}}, not a column; columns: {sorted(row)}") from None
    except (IndexError, ValueError, AttributeError) as exc:
        raise TaskFormatError(f"{where}: prompt template {template!r:.60} is not a valid format template ({exc})") \
            from None
    if not text.strip():
        raise TaskFormatError(f"{where}: prompt renders empty")
    return text


def _choice_list(choices: str | Sequence[str] | None, row: Mapping[str, Any], where: str) -> list[str]:
    values = _get(row, choices, where) if isinstance(choices, str) else list(choices or [])
    if not isinstance(values, list) or len(values) < 2:
        raise TaskFormatError(f"{where}: choices must be a list of at least 2 strings, got {values!r:.60}")
    return [str(v) for v in values]


def _answer_index(row: Mapping[str, Any], answer: str | None, labels: str | None, opts: list[str],
                  choice_format: str, where: str) -> int:
    value = _get(row, answer or "", where)
    if labels is not None:
        names = [str(x) for x in _get(row, labels, where)]
        if str(value) not in names:
            raise TaskFormatError(f"{where}: answer {value!r} is not one of the labels {names}")
        return names.index(str(value))
    if isinstance(value, int) and not isinstance(value, bool):
        if not 0 <= value < len(opts):
            raise TaskFormatError(f"{where}: answer index {value} out of range 0..{len(opts) - 1}")
        return value
    formatted = choice_format.format(value)
    if formatted not in opts:
        raise TaskFormatError(f"{where}: answer {value!r} is neither an index nor one of the choices")
    return opts.index(formatted)


def _targets(row: Mapping[str, Any], column: str, where: str) -> tuple[str, ...]:
    value = _get(row, column, where)
    values = [value] if isinstance(value, (str, int, float)) else value
    if not isinstance(values, list) or not values:
        raise TaskFormatError(f"{where}: targets column {column!r} must hold a string or a list, got {value!r:.60}")
    return tuple(str(v) for v in values)


