"""Unified-format task files: JSONL (one example per line) and CSV (one per row).

A record has:

    prompt        string, required: exactly what is scored (choices are appended to it as they are)
    choices       list of strings            } multiple choice
    answer_index  int, or a list of ints     }   (several correct choices allowed)
    targets       string or list of strings  } generation (`target` is accepted too)
    id            string, optional (default: hash of the content); must be unique
    split         "train" | "validation" | "test", optional (default: the deterministic hash split)
    metadata      object, optional
    generation    object, optional: decoding/extraction (`GenerationSpec` fields), same on every line

In CSV, `choices`, list-valued `answer_index`/`targets` and `metadata`/`generation` are JSON strings;
an empty cell means the field is absent. `loralab data export` writes this format, so an exported file
is itself a task that scores the same.

One rule for reading and writing: what the readers accept is decided by the record checks below (text
fields of at most `MAX_FIELD_CHARS` characters, strict JSON: no NaN/Infinity), not by the file format,
so the csv module's own cell limit (131072 characters) is lifted to the size of the file; and
`write_jsonl` passes every line it writes through the same checks, so an export the reader would
refuse (a few-shot prompt over the limit, say) is refused when written, not when read back.
"""

from __future__ import annotations

import contextlib
import csv
import difflib
import io
import json
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from loralab.data.schema import MAX_TEXT_CHARS, SPLITS, Example, GenerationSpec, Task, validate_example
from loralab.data.split import assign_split, content_id
from loralab.errors import TaskFormatError
from loralab.utils.io import atomic_path, dumps_json

RECORD_KEYS = ("id", "prompt", "choices", "answer_index", "targets", "target", "split", "metadata", "generation")
MAX_FIELD_CHARS = MAX_TEXT_CHARS  # a prompt longer than this is a broken file, not a task


def load_jsonl_task(path: str | Path, *, name: str | None = None) -> Task:
    path = Path(path)
    records = []
    # Split on "\n" only: str.splitlines() also breaks at U+2028, U+0085, ..., which JSON leaves unescaped.
    for lineno, line in enumerate(_read_text(path).split("\n"), start=1):
        if not line.strip():
            continue
        records.append((f"{path}:{lineno}", _parse_line(line, f"{path}:{lineno}")))
    return records_to_task(records, name=name or path.stem, source=str(path))


def _parse_line(line: str, where: str) -> Any:
    """One JSONL line as strict JSON (NaN and Infinity are not JSON: `write_jsonl` writes them as null)."""
    try:
        return json.loads(line, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise TaskFormatError(f"{where}: invalid JSON ({exc.msg} at column {exc.colno})") from None
    except RecursionError:
        raise TaskFormatError(f"{where}: JSON nested too deeply to be a record") from None
    except ValueError as exc:
        raise TaskFormatError(f"{where}: invalid JSON ({exc})") from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON; use null for a missing number")


def load_csv_task(path: str | Path, *, name: str | None = None) -> Task:
    path = Path(path)
    text = _read_text(path)
    # newline="": the csv module must see the line endings itself, or quoted cells with newlines break.
    reader = csv.DictReader(io.StringIO(text, newline=""))
    records = []
    with _cell_limit(len(text) + 1):
        for rowno, row in _csv_rows(reader, path):
            where = f"{path}:{rowno}"
            if None in row:
                raise TaskFormatError(f"{where}: more cells than header columns")
            rec = {k: _csv_cell(k, v, where) for k, v in row.items() if v not in (None, "")}
            records.append((where, rec))
    return records_to_task(records, name=name or path.stem, source=str(path))


@contextlib.contextmanager
def _cell_limit(chars: int) -> Iterator[None]:
    """Lift the csv module's cell limit (process-wide, 131072 characters by default) while one file is read.

    A cell cannot be longer than the file, so with the limit at the file's length the record checks alone
    decide, as they do for JSONL: a 150000-character prompt reads from CSV exactly when it does from JSONL.
    """
    previous = csv.field_size_limit()
    csv.field_size_limit(max(previous, chars))
    try:
        yield
    finally:
        csv.field_size_limit(previous)


def _csv_rows(reader: csv.DictReader, path: Path) -> Iterable[tuple[int, dict[str, Any]]]:
    """(row number, row) with the header as row 1; the csv module's own errors become one-line TaskFormatErrors."""
    rowno = 1
    while True:
        rowno += 1
        try:
            yield rowno, next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise TaskFormatError(f"{path}:{rowno}: unreadable CSV ({exc})") from None


def _read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise TaskFormatError(f"task file does not exist: {path}") from None
    except UnicodeDecodeError as exc:
        raise TaskFormatError(f"{path}: not valid UTF-8 (byte {exc.start})") from None
    except OSError as exc:  # a directory, no permission, ...
        raise TaskFormatError(f"{path}: cannot read the task file ({exc.strerror or exc})") from None


def _csv_cell(key: str, value: str, where: str) -> Any:
    if key in ("choices", "metadata", "generation") or (key in ("answer_index", "targets") and value[:1] == "["):
        try:
            return json.loads(value, parse_constant=_reject_constant)
        except (ValueError, RecursionError):  # JSONDecodeError is a ValueError, as is NaN
            raise TaskFormatError(f"{where}: column {key!r} must hold JSON, got {value!r:.60}") from None
    if key == "answer_index":
        try:
            return int(value)
        except ValueError:
            raise TaskFormatError(f"{where}: answer_index must be an integer, got {value!r}") from None
    return value


def records_to_task(records: Iterable[tuple[str, Any]], *, name: str, source: str) -> Task:
    """Build a task from (location, record) pairs, validating every record."""
    examples: list[Example] = []
    ids: dict[str, str] = {}
    generation: dict[str, Any] | None = None
    kind = None
    for where, rec in records:
        ex, rec_kind, gen = _record_to_example(rec, where)
        if kind is not None and rec_kind != kind:
            raise TaskFormatError(f"{where}: mixes {rec_kind} and {kind} records in one task")
        kind = rec_kind
        if gen is not None:
            if generation is not None and gen != generation:
                raise TaskFormatError(f"{where}: 'generation' differs from earlier lines; it must be the same")
            generation = gen
        if ex.id in ids:
            raise TaskFormatError(f"{where}: duplicate id {ex.id!r} (first at {ids[ex.id]})")
        ids[ex.id] = where
        examples.append(ex)
    if not examples:
        raise TaskFormatError(f"{source}: no examples")
    spec = GenerationSpec.from_dict(generation, where=f"{source}: generation") if generation else GenerationSpec()
    metric = "acc" if kind == "multiple_choice" else "exact_match"
    return Task(name=name, kind=kind, examples=examples, metric=metric, generation=spec, source=source)  # type: ignore[arg-type]


def _record_to_example(rec: Any, where: str) -> tuple[Example, str, dict[str, Any] | None]:
    if not isinstance(rec, dict):
        raise TaskFormatError(f"{where}: a record must be a JSON object, got {type(rec).__name__}")
    for key in rec:
        if key not in RECORD_KEYS:
            close = difflib.get_close_matches(key, RECORD_KEYS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise TaskFormatError(f"{where}: unknown field {key!r}{hint}; allowed: {', '.join(RECORD_KEYS)}")
    prompt = rec.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise TaskFormatError(f"{where}: 'prompt' must be a non-empty string, got {prompt!r:.60}")
    if len(prompt) > MAX_FIELD_CHARS:
        raise TaskFormatError(f"{where}: 'prompt' has {len(prompt)} characters; the limit is {MAX_FIELD_CHARS}")
    if "choices" in rec:
        kind, choices, answers, targets = "multiple_choice", _choices(rec, where), _answers(rec, where), ()
    elif "targets" in rec or "target" in rec:
        kind, choices, answers, targets = "generation", (), (), _target_list(rec, where)
    else:
        raise TaskFormatError(f"{where}: needs 'choices' + 'answer_index' (multiple choice) or 'targets' (generation)")
    if answers and max(answers) >= len(choices):
        raise TaskFormatError(f"{where}: answer_index {max(answers)} out of range 0..{len(choices) - 1}")
    metadata = rec.get("metadata", {})
    if not isinstance(metadata, dict):
        raise TaskFormatError(f"{where}: 'metadata' must be an object, got {metadata!r:.60}")
    ex_id = rec.get("id")
    if ex_id is None:
        ex_id = content_id({"prompt": prompt, "choices": list(choices), "answers": list(answers), "targets": list(targets)})
    elif not isinstance(ex_id, (str, int)) or isinstance(ex_id, bool) or str(ex_id) == "":
        raise TaskFormatError(f"{where}: 'id' must be a non-empty string, got {ex_id!r}")
    ex_id = str(ex_id)
    split = rec.get("split", assign_split(ex_id))
    if split not in SPLITS:
        raise TaskFormatError(f"{where}: 'split' must be one of {SPLITS}, got {split!r}")
    generation = rec.get("generation")
    if generation is not None and not isinstance(generation, dict):
        raise TaskFormatError(f"{where}: 'generation' must be an object, got {generation!r:.60}")
    ex = Example(id=ex_id, body=prompt, choices=choices, answers=answers, targets=targets, split=split, metadata=metadata)
    return ex, kind, generation


def _choices(rec: Mapping[str, Any], where: str) -> tuple[str, ...]:
    choices = rec["choices"]
    if not isinstance(choices, list) or len(choices) < 2:
        raise TaskFormatError(f"{where}: 'choices' must be a list of at least 2 strings, got {choices!r:.60}")
    if not all(isinstance(c, str) and c != "" for c in choices):
        raise TaskFormatError(f"{where}: every choice must be a non-empty string")
    return tuple(choices)


def _answers(rec: Mapping[str, Any], where: str) -> tuple[int, ...]:
    if "answer_index" not in rec:
        raise TaskFormatError(f"{where}: multiple choice needs 'answer_index' (the correct choice's index)")
    raw = rec["answer_index"]
    answers = raw if isinstance(raw, list) else [raw]
    if not answers or not all(isinstance(a, int) and not isinstance(a, bool) and a >= 0 for a in answers):
        raise TaskFormatError(f"{where}: 'answer_index' must be a non-negative int or a non-empty list of them, got {raw!r}")
    return tuple(sorted(set(answers)))


def _target_list(rec: Mapping[str, Any], where: str) -> tuple[str, ...]:
    raw = rec.get("targets", rec.get("target"))
    targets = [raw] if isinstance(raw, str) else raw
    if not isinstance(targets, list) or not targets or not all(isinstance(t, str) for t in targets):
        raise TaskFormatError(f"{where}: 'targets' must be a string or a non-empty list of strings, got {raw!r:.60}")
    return tuple(targets)


def example_record(task: Task, ex: Example, prompt: str | None = None) -> dict[str, Any]:
    """The unified-format record of `ex` (as exported): `prompt` is exactly what is scored."""
    rec: dict[str, Any] = {"id": ex.id, "prompt": ex.prompt if prompt is None else prompt}
    if task.kind == "multiple_choice":
        rec["choices"] = list(ex.choices)
        rec["answer_index"] = ex.answers[0] if len(ex.answers) == 1 else list(ex.answers)
    else:
        rec["targets"] = list(ex.targets)
        rec["generation"] = task.generation.to_dict()
    rec["split"] = ex.split
    if ex.metadata:
        rec["metadata"] = dict(ex.metadata)
    return rec


def write_jsonl(path: str | Path, records: Iterable[Mapping[str, Any]]) -> int:
    """Write records atomically; returns how many were written.

    Each line is read back with the reader's own checks before it is written, so a file this writes
    always loads: a record the reader would refuse (a prompt over `MAX_FIELD_CHARS` characters, text that
    is not valid Unicode) is one `TaskFormatError` naming it, and nothing is written.
    """
    n = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        for n, rec in enumerate(records, start=1):
            fh.write(_checked_line(rec, f"cannot export to {path}: record {n}") + "\n")
    return n


def _checked_line(rec: Mapping[str, Any], where: str) -> str:
    """`rec` as the JSONL line the reader will see, after the reader's checks passed on that very line."""
    if isinstance(rec, Mapping) and "id" in rec:
        where = f"{where} (id {rec['id']!r:.40})"
    try:
        line = dumps_json(rec)
        line.encode("utf-8")
    except UnicodeEncodeError:
        raise TaskFormatError(f"{where}: text with a lone surrogate (\\uD800-\\uDFFF) is not valid Unicode and "
                              "cannot be written as UTF-8") from None
    except (TypeError, ValueError, RecursionError) as exc:
        raise TaskFormatError(f"{where}: not writable as JSON ({exc})") from None
    try:  # what load_jsonl_task does with one line (records_to_task adds only checks across lines)
        ex, kind, generation = _record_to_example(_parse_line(line, where), where)
        validate_example(ex, kind, where)
        if generation:
            GenerationSpec.from_dict(generation, where=f"{where}: generation")
    except TaskFormatError as exc:
        raise TaskFormatError(f"{exc} (a file with it could not be read back)") from None
    return line
