"""The results database: SQLite, one row per finished cell, keyed by the cell id (a hash of its config).

Why SQLite: one file that any tool reads, transactions for free, and no server. A row is written in
one transaction, and only once the cell has finished (train, evaluate, done), so a killed run leaves
either a complete row or none: re-running skips exactly the finished cells. Only the driver writes
(the Ray executor returns results to it), so there is never more than one writer.

Columns fall in two groups: what the cell *is* and what it *measured* (a function of its config,
so equal across re-runs and executors), and how long it took and where it ran (`VOLATILE_COLUMNS`),
which a comparison of two runs leaves out.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
JSON_COLUMNS = ("config", "metrics", "experts", "selection", "train", "versions")
VOLATILE_COLUMNS = ("seconds", "seconds_select", "seconds_train", "seconds_eval", "started_at", "finished_at",
                    "host", "executor", "device")
_CELLS = """
CREATE TABLE IF NOT EXISTS cells (
    cell_id TEXT PRIMARY KEY,
    bench TEXT NOT NULL,
    model TEXT NOT NULL,
    method TEXT NOT NULL,
    strategy TEXT,
    k INTEGER,
    target TEXT NOT NULL,
    seed INTEGER,
    config TEXT NOT NULL,
    primary_metric TEXT NOT NULL,
    score REAL NOT NULL,
    n INTEGER NOT NULL,
    split TEXT NOT NULL,
    metrics TEXT NOT NULL,
    experts TEXT NOT NULL,
    selection TEXT,
    own_lora TEXT,
    train TEXT,
    versions TEXT NOT NULL,
    git_hash TEXT,
    seconds REAL, seconds_select REAL, seconds_train REAL, seconds_eval REAL,
    started_at TEXT, finished_at TEXT, host TEXT, executor TEXT, device TEXT
)"""
_FAILURES = """
CREATE TABLE IF NOT EXISTS failures (
    cell_id TEXT PRIMARY KEY, bench TEXT, config TEXT NOT NULL, error TEXT NOT NULL, failed_at TEXT NOT NULL
)"""
_META = "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"


class Store:
    """The benchmark database at `path` (created with its tables on first use)."""

    def __init__(self, path: str | Path, *, create: bool = True) -> None:
        self.path = Path(path)
        if not create and not self.path.is_file():
            from loralab.errors import UserInputError

            raise UserInputError(f"benchmark database does not exist: {self.path}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(self.path), timeout=60)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA synchronous=FULL")
        with self._transaction() as conn:
            for ddl in (_CELLS, _FAILURES, _META):
                conn.execute(ddl)
            conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        self._check_schema()

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One transaction: committed as a whole on success, rolled back on any error."""
        with self._conn:
            yield self._conn

    def _check_schema(self) -> None:
        version = self.get_meta("schema_version")
        if str(version) != str(SCHEMA_VERSION):
            from loralab.errors import UserInputError

            raise UserInputError(f"{self.path}: database schema version {version}, this loralab reads "
                                 f"{SCHEMA_VERSION}")

    # ------------------------------------------------------------ cells

    def done_ids(self) -> set[str]:
        return {row[0] for row in self._conn.execute("SELECT cell_id FROM cells")}

    def put(self, row: Mapping[str, Any]) -> None:
        """Write one finished cell (and clear an earlier failure of it) in one transaction."""
        values = {k: json.dumps(v, sort_keys=True) if k in JSON_COLUMNS and v is not None else v
                  for k, v in row.items()}
        columns = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        with self._transaction() as conn:
            conn.execute(f"INSERT OR REPLACE INTO cells ({columns}) VALUES ({marks})", tuple(values.values()))
            conn.execute("DELETE FROM failures WHERE cell_id = ?", (row["cell_id"],))

    def put_failure(self, cell_id: str, bench: str, config: Mapping[str, Any], error: str) -> None:
        with self._transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO failures VALUES (?, ?, ?, ?, ?)",
                         (cell_id, bench, json.dumps(config, sort_keys=True), error, now()))

    def rows(self, *, volatile: bool = True) -> list[dict[str, Any]]:
        """Every finished cell as a dict (JSON columns decoded), ordered by cell id; `volatile=False` drops timing."""
        out = []
        for row in self._conn.execute("SELECT * FROM cells ORDER BY cell_id"):
            record = {k: json.loads(v) if k in JSON_COLUMNS and v is not None else v for k, v in dict(row).items()}
            if not volatile:
                for key in VOLATILE_COLUMNS:
                    record.pop(key, None)
            out.append(record)
        return out

    def failures(self) -> list[dict[str, Any]]:
        return [{**dict(r), "config": json.loads(r["config"])}
                for r in self._conn.execute("SELECT * FROM failures ORDER BY failed_at")]

    # ------------------------------------------------------------ metadata

    def set_meta(self, key: str, value: Any) -> None:
        with self._transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value, sort_keys=True)))

    def get_meta(self, key: str) -> Any:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        try:
            return json.loads(row[0])
        except json.JSONDecodeError:
            return row[0]


def now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
