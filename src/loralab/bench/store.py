"""The results database: SQLite, one row per finished cell, keyed by the cell id (a hash of its config).

Why SQLite: one file that any tool reads, transactions for free, and no server. A row is written in
one transaction, and only once the cell has finished (train, evaluate, done), so a killed run leaves
either a complete row or none: re-running skips exactly the finished cells. Only the driver writes
(the Ray executor returns results to it), so there is never more than one writer.

Columns fall in two groups: what the cell *is* and what it *measured* (a function of its config,
so equal across re-runs and executors), and how long it took and where it ran (`VOLATILE_COLUMNS`),
which a comparison of two runs leaves out. `precision` is the resolved precision record with the
hardware reason (the name itself is in the config, in the protocol, for every non-fp32 cell); a
database written before it gains the column (NULL in its old rows) when opened for writing.

Reading (`create=False`, as `loralab report` does) opens the file read-only, so it is never modified,
and anything that is not a loralab bench database (another SQLite file, an empty or a text file) is
one error line. Writing refuses an existing database that is not one of ours instead of adding tables
to it. JSON columns hold strict JSON (NaN -> null).

Schema version 2 adds the table `outcomes`: one row per (cell, test example) with the example's id, its
position in the cell's evaluation, the primary metric's value (`correct`, 0/1 for accuracy), a
continuous `score` (multiple choice: the log-likelihood margin of the correct answer; see
`loralab.eval.EvalOutput`) and every per-example metric (JSON). A cell's outcomes are written in the
transaction that writes its row, so a cell has all of them or none. A version-1 database is read as it
is (its cells have no outcomes, which the findings say); opened for writing, it gains the table and
becomes version 2, its old cells keeping no outcomes.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

from loralab.errors import UserInputError
from loralab.utils.io import dumps_json, loads_json

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 2
READABLE_VERSIONS = frozenset({"1", "2"})  # 1: before per-example outcomes (read as cells without outcomes)
JSON_COLUMNS = ("config", "metrics", "experts", "selection", "train", "versions", "precision")
VOLATILE_COLUMNS = ("seconds", "seconds_select", "seconds_train", "seconds_eval", "started_at", "finished_at",
                    "host", "executor", "device", "precision")
ADDED_COLUMNS = {"precision": "TEXT"}  # columns newer than SCHEMA_VERSION 1: added to older databases in place
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
    started_at TEXT, finished_at TEXT, host TEXT, executor TEXT, device TEXT,
    precision TEXT
)"""
_FAILURES = """
CREATE TABLE IF NOT EXISTS failures (
    cell_id TEXT PRIMARY KEY, bench TEXT, config TEXT NOT NULL, error TEXT NOT NULL, failed_at TEXT NOT NULL
)"""
_META = "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
_OUTCOMES = """
CREATE TABLE IF NOT EXISTS outcomes (
    cell_id TEXT NOT NULL, position INTEGER NOT NULL, example_id TEXT NOT NULL, correct REAL NOT NULL,
    score REAL, metrics TEXT NOT NULL, PRIMARY KEY (cell_id, example_id)
)"""
TABLES = frozenset({"cells", "failures", "meta"})  # what every version has (`outcomes` is new in version 2)


def _read_only(path: Path) -> sqlite3.Connection:
    """A connection that cannot write the file (SQLite's read-only mode; the URI form quotes any path)."""
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=60)


def is_bench_database(path: str | Path) -> bool:
    """Whether `path` is a loralab bench database: SQLite with its tables and a schema version (read-only check)."""
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        return False
    try:
        conn = _read_only(path)
        try:
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            version = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() \
                if "meta" in tables else None
        finally:
            conn.close()
    except sqlite3.Error:
        return False
    return TABLES <= tables and version is not None


class Store:
    """The benchmark database at `path` (created with its tables on first use)."""

    def __init__(self, path: str | Path, *, create: bool = True) -> None:
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise UserInputError(f"benchmark database does not exist: {self.path}")
        # an empty file becomes a new database only when writing; anything else must be ours already
        exists = self.path.exists()
        if exists and not is_bench_database(self.path) and (not create or self.path.stat().st_size > 0):
            raise UserInputError(f"{self.path} is not a loralab benchmark database (no tables "
                                 f"{', '.join(sorted(TABLES))} with a schema version); give the bench.sqlite that "
                                 "`loralab bench` wrote")
        try:
            if create:
                self._conn = self._open_for_writing()
            else:
                self._conn = _read_only(self.path)
        except sqlite3.Error as exc:
            raise UserInputError(f"benchmark database {self.path} cannot be opened: {exc}") from None
        self._conn.row_factory = sqlite3.Row
        self._check_schema()

    def _open_for_writing(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():  # created here, so its mode follows the umask (SQLite would make it 0644)
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o666))
        conn = sqlite3.connect(str(self.path), timeout=60)
        conn.execute("PRAGMA synchronous=FULL")
        with conn:
            conn.execute(_META)
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is not None and str(row[0]) not in READABLE_VERSIONS:  # a newer loralab's: leave it alone
                return conn  # (`_check_schema` refuses it)
            for ddl in (_CELLS, _FAILURES, _OUTCOMES):
                conn.execute(ddl)
            have = {row[1] for row in conn.execute("PRAGMA table_info(cells)")}
            for column, kind in ADDED_COLUMNS.items():
                if column not in have:
                    conn.execute(f"ALTER TABLE cells ADD COLUMN {column} {kind}")
            # new, or migrated from version 1 (the outcomes table was just created)
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        return conn

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
        if str(version) not in READABLE_VERSIONS:
            raise UserInputError(f"{self.path}: database schema version {version}, this loralab reads "
                                 f"{', '.join(sorted(READABLE_VERSIONS))}")
        self.schema_version = int(str(version))

    # ------------------------------------------------------------ cells

    def done_ids(self) -> set[str]:
        return {row[0] for row in self._conn.execute("SELECT cell_id FROM cells")}

    def put(self, row: Mapping[str, Any]) -> None:
        """Write one finished cell (and clear an earlier failure of it) in one transaction."""
        self.put_many([row])

    def put_many(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Write the rows of one job, their per-example outcomes (a row's "outcomes": records as
        `EvalOutput.outcomes` has them) and clear earlier failures of them, in one transaction: all or none."""
        with self._transaction() as conn:
            for row in rows:
                values = {k: dumps_json(v, sort_keys=True) if k in JSON_COLUMNS and v is not None else v
                          for k, v in row.items() if k != "outcomes"}
                columns = ", ".join(values)
                marks = ", ".join("?" for _ in values)
                conn.execute(f"INSERT OR REPLACE INTO cells ({columns}) VALUES ({marks})", tuple(values.values()))
                conn.execute("DELETE FROM outcomes WHERE cell_id = ?", (row["cell_id"],))  # a replaced row's
                conn.executemany("INSERT INTO outcomes VALUES (?, ?, ?, ?, ?, ?)",
                                 [(row["cell_id"], i, str(o["id"]), float(o["correct"]),
                                   None if o.get("score") is None else float(o["score"]),
                                   dumps_json(o.get("metrics") or {}, sort_keys=True))
                                  for i, o in enumerate(row.get("outcomes") or ())])
                conn.execute("DELETE FROM failures WHERE cell_id = ?", (row["cell_id"],))

    def put_failure(self, cell_id: str, bench: str, config: Mapping[str, Any], error: str, *,
                    failed_at: str | None = None) -> None:
        """Record a failed cell (`failed_at`: now, unless a restore copies a recorded time)."""
        with self._transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO failures VALUES (?, ?, ?, ?, ?)",
                         (cell_id, bench, dumps_json(config, sort_keys=True), error, failed_at or now()))

    def rows(self, *, volatile: bool = True) -> list[dict[str, Any]]:
        """Every finished cell as a dict (JSON columns decoded), ordered by cell id; `volatile=False` drops timing."""
        out = []
        for row in self._conn.execute("SELECT * FROM cells ORDER BY cell_id"):
            record = {k: self._decode(k, v) if k in JSON_COLUMNS and v is not None else v
                      for k, v in dict(row).items()}
            if not volatile:
                for key in VOLATILE_COLUMNS:
                    record.pop(key, None)
            out.append(record)
        return out

    def failures(self) -> list[dict[str, Any]]:
        return [{**dict(r), "config": self._decode("config", r["config"])}
                for r in self._conn.execute("SELECT * FROM failures ORDER BY failed_at, cell_id")]

    def outcomes(self) -> dict[str, list[dict[str, Any]]]:
        """cell id -> its per-example outcomes in evaluation order, `{"id", "correct", "score", "metrics"}`.

        Cells without outcomes (written by a loralab before version 2) are absent; so is everything of a
        version-1 database opened read-only (it has no such table).
        """
        if self.schema_version < 2:
            return {}
        out: dict[str, list[dict[str, Any]]] = {}
        query = "SELECT cell_id, example_id, correct, score, metrics FROM outcomes ORDER BY cell_id, position"
        for cell_id, example_id, correct, score, metrics in self._conn.execute(query):
            out.setdefault(cell_id, []).append({"id": example_id, "correct": correct, "score": score,
                                                "metrics": self._decode("metrics", metrics)})
        return out

    def _decode(self, column: str, value: Any) -> Any:
        """A JSON column, read with the guarded parser: a database from elsewhere is one error line, not a crash."""
        return loads_json(str(value), what=f"{self.path}: column {column!r}")

    # ------------------------------------------------------------ metadata

    def set_meta(self, key: str, value: Any) -> None:
        with self._transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, dumps_json(value, sort_keys=True)))

    def meta(self) -> dict[str, Any]:
        """The whole meta table (key -> value, as `get_meta` reads each), ordered by key."""
        keys = [row[0] for row in self._conn.execute("SELECT key FROM meta ORDER BY key")]
        return {key: self.get_meta(key) for key in keys}

    def get_meta(self, key: str) -> Any:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        try:
            return loads_json(str(row[0]), what=f"{self.path}: meta {key!r}")
        except UserInputError:  # a plain string value
            return row[0]


def now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
