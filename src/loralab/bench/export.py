"""What a report is built from (`BenchData`), read from a database or from its compact export.

    loralab bench export bench-quickstart/bench.sqlite quickstart.jsonl.gz
    loralab report quickstart.jsonl.gz --out report/       # the same report as from the database

    from loralab.bench import export_bench, load_bench_data
    export_bench("bench-quickstart/bench.sqlite", "quickstart.jsonl.gz")

The export is one gzipped JSON-lines file (plain JSON lines when the name ends in `.jsonl`): a header
line (format, version, the database's schema version and its whole `meta` table: config, plan,
seeds), then one line per finished cell (its database row: metrics, timing, selection, versions, ...
and its per-example outcomes, column-wise: `{"id": [...], "correct": [...], "score": [...],
"metrics": {name: [...]}}`, or null for a cell stored without them), then one line per failed cell.
It holds no adapters or checkpoints: what the report needs, small enough to commit beside a published
report. The order is fixed (cells by id, failures by time and id), keys are sorted and the gzip header
carries no time or name, so exporting the same database twice gives the same bytes.

Reading never modifies the input. A file that is neither a loralab bench database nor an export is
one error line.
"""

from __future__ import annotations

import gzip
import json
import os
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loralab.bench.store import READABLE_VERSIONS, Store, is_bench_database
from loralab.errors import UserInputError
from loralab.utils.io import atomic_path, check_output_file, dumps_json, loads_json

FORMAT = "loralab-bench-export"
VERSION = 1
SUFFIXES = (".jsonl.gz", ".jsonl")


@dataclass(frozen=True)
class BenchData:
    """Everything of a benchmark the report reads: meta (key -> value), cell rows ordered by cell id (JSON
    columns decoded), failures, and cell id -> per-example outcomes (as `Store.outcomes`)."""

    path: Path
    meta: Mapping[str, Any]
    rows: list[dict[str, Any]]
    failures: list[dict[str, Any]]
    outcomes: Mapping[str, list[dict[str, Any]]] = field(default_factory=dict)
    schema_version: int = 2


def from_store(store: Store) -> BenchData:
    return BenchData(store.path, store.meta(), store.rows(), store.failures(), store.outcomes(), store.schema_version)


def load_bench_data(path: str | os.PathLike[str]) -> BenchData:
    """A benchmark database or an export, read without modifying it; anything else is one error line."""
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"benchmark database or export does not exist: {path}")
    if is_bench_export(path):
        return read_export(path)
    if not is_bench_database(path):
        raise UserInputError(f"{path} is not a loralab benchmark database or bench export: give the "
                             "bench.sqlite that `loralab bench` wrote or a file of `loralab bench export`")
    with Store(path, create=False) as store:
        return from_store(store)


def export_bench(db: str | os.PathLike[str] | Store, out: str | os.PathLike[str]) -> Path:
    """Write the database's compact export to `out` (`.jsonl.gz` or `.jsonl`); return its path.

    An existing `out` is replaced only when it is empty or an export itself (written atomically).
    """
    target = Path(out)
    if not target.name.endswith(SUFFIXES):
        raise UserInputError(f"out {str(target)!r} must end in .jsonl.gz (or .jsonl for plain text)", param="out")
    check_output_file(target, what="bench export", recognise=is_bench_export)
    data = from_store(db) if isinstance(db, Store) else _database(Path(db))
    lines = [{"format": FORMAT, "version": VERSION, "schema_version": data.schema_version, "meta": dict(data.meta)}]
    lines += [{"kind": "cell", "row": row, "outcomes": _columns(data.outcomes.get(row["cell_id"]))}
              for row in data.rows]
    lines += [{"kind": "failure", "failure": f} for f in data.failures]
    text = "".join(dumps_json(line, sort_keys=True) + "\n" for line in lines).encode("utf-8")
    with atomic_path(target) as tmp:
        if target.name.endswith(".gz"):
            with open(tmp, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
                gz.write(text)  # no name and no time in the header: the same database gives the same bytes
        else:
            tmp.write_bytes(text)
    return target


def _database(path: Path) -> BenchData:
    if not path.is_file() or not is_bench_database(path):
        raise UserInputError(f"{path} is not a loralab benchmark database; give the bench.sqlite that "
                             "`loralab bench` wrote")
    with Store(path, create=False) as store:
        return from_store(store)


def _columns(outcomes: list[dict[str, Any]] | None) -> dict[str, Any] | None:
    if outcomes is None:
        return None
    names = sorted({k for o in outcomes for k in o["metrics"]})
    return {"id": [o["id"] for o in outcomes], "correct": [o["correct"] for o in outcomes],
            "score": [o["score"] for o in outcomes],
            "metrics": {k: [o["metrics"].get(k) for o in outcomes] for k in names}}


def _records(columns: Mapping[str, Any], where: str) -> list[dict[str, Any]]:
    try:
        ids, correct, score, metrics = columns["id"], columns["correct"], columns["score"], columns["metrics"]
        if not len(ids) == len(correct) == len(score) or any(len(v) != len(ids) for v in metrics.values()):
            raise ValueError("columns of different lengths")
        return [{"id": ids[i], "correct": correct[i], "score": score[i],
                 "metrics": {k: v[i] for k, v in metrics.items() if v[i] is not None}} for i in range(len(ids))]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise UserInputError(f"{where}: malformed outcomes ({exc})") from None


def _lines(path: Path) -> Iterator[str]:
    """The export's lines; a file that is not gzip (for a .gz name) or UTF-8 is one error line."""
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:
            for raw in fh:
                yield raw.decode("utf-8")
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as exc:
        raise UserInputError(f"{path}: not a readable bench export ({exc})") from None


def is_bench_export(path: Path) -> bool:
    """Whether `path` starts with an export's header line (read-only; False for anything unreadable)."""
    if not path.is_file() or not path.name.endswith(SUFFIXES):
        return False
    try:
        first = next(_lines(path), "")
        header = json.loads(first)
    except (UserInputError, ValueError):
        return False
    return isinstance(header, dict) and header.get("format") == FORMAT


def read_export(path: str | os.PathLike[str]) -> BenchData:
    """The `BenchData` of an export (see the module docstring); a malformed line is one error line."""
    path = Path(path)
    rows, failures, outcomes = [], [], {}
    header: dict[str, Any] | None = None
    for number, line in enumerate(_lines(path), start=1):
        where = f"{path}: line {number}"
        item = loads_json(line, what=where)
        if header is None:
            if not isinstance(item, dict) or item.get("format") != FORMAT:
                raise UserInputError(f"{path} is not a loralab bench export (no {FORMAT!r} header line)")
            if item.get("version") != VERSION or str(item.get("schema_version")) not in READABLE_VERSIONS:
                raise UserInputError(f"{path}: export version {item.get('version')} (database schema "
                                     f"{item.get('schema_version')}); this loralab reads export version {VERSION}")
            header = item
        elif isinstance(item, dict) and item.get("kind") == "cell" and isinstance(item.get("row"), dict):
            rows.append(item["row"])
            if item.get("outcomes") is not None:
                outcomes[str(item["row"].get("cell_id"))] = _records(item["outcomes"], where)
        elif isinstance(item, dict) and item.get("kind") == "failure" and isinstance(item.get("failure"), dict):
            failures.append(item["failure"])
        else:
            raise UserInputError(f"{where}: not a cell or failure line of a bench export")
    if header is None:
        raise UserInputError(f"{path} is an empty file, not a loralab bench export")
    meta = header.get("meta")
    return BenchData(path, meta if isinstance(meta, dict) else {}, rows, failures, outcomes,
                     int(header["schema_version"]))
