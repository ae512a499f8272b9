"""A benchmark folder rebuilt from its compact export, so that `loralab bench` resumes it on another machine.

    loralab bench restore results/more.jsonl.gz --out runs/more     # then: loralab bench GRID --out runs/more

    from loralab.bench import restore_bench
    restore_bench("results/more.jsonl.gz", "runs/more")

The export (`loralab bench export`) holds what deciding which cells to run reads: every finished cell's
row, keyed by its cell id, with its per-example outcomes, the failures and the meta table (config,
plan). So a long grid run in chunks on machines that do not last loses nothing but time when each
chunk's export is committed: restore it where the next chunk runs and the runner skips the finished
cells. Adapters and checkpoints are not in an export, so a restored folder has none of them (kept
checkpoints of finished cells stay on the machine that trained them).

`out` must be absent or an empty folder: a restore never merges into or replaces a database. The new
database is written beside its final name, read back and compared with the export (rows, outcomes,
failures, meta) and only then renamed into place; a mismatch is an error and leaves nothing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from loralab.bench.driver import BENCH_OUTPUT, DB_NAME
from loralab.bench.export import BenchData, from_store, read_export
from loralab.bench.store import Store
from loralab.errors import UserInputError
from loralab.utils.io import atomic_path, check_output_path, mark_output

# the new database records its own schema version (the current one), not the exported database's
_OWN_META = frozenset({"schema_version"})


def restore_bench(export: str | os.PathLike[str], out: str | os.PathLike[str]) -> Path:
    """Write `out`/bench.sqlite from the export `export` and mark `out` a benchmark folder; return the database."""
    data = read_export(Path(export))  # a file that is not an export is one error line, before anything is written
    folder = check_output_path(out, kind="dir", option="out")
    names = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    if names:
        raise UserInputError(f"out {str(folder)!r} is not empty (it holds {', '.join(names[:5])}"
                             f"{', ...' if len(names) > 5 else ''}); a restore writes only into a new or empty "
                             "folder, never over a database: give another path", param="out")
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    db = folder / DB_NAME
    try:
        with atomic_path(db) as tmp:
            with Store(tmp) as store:
                _write(store, data)
                _check_same(from_store(store), data, export)
    except BaseException:
        if created:
            folder.rmdir()  # nothing of the restore stays behind (the temporary database is already gone)
        raise
    mark_output(folder, BENCH_OUTPUT.kind)
    return db


def _write(store: Store, data: BenchData) -> None:
    for key, value in data.meta.items():
        if key not in _OWN_META:
            store.set_meta(key, value)
    store.put_many([{**row, "outcomes": data.outcomes.get(str(row["cell_id"])) or ()} for row in data.rows])
    for failure in data.failures:  # after the cells: `put_many` clears a cell's failure, as a run does
        store.put_failure(failure["cell_id"], failure["bench"], failure["config"], failure["error"],
                          failed_at=failure["failed_at"])


def _check_same(written: BenchData, data: BenchData, export: Any) -> None:
    """The written database reads back as the export did (a row's columns that the export has, every outcome)."""
    rows = [{k: r.get(k) for k in e} for r, e in zip(written.rows, data.rows, strict=False)]
    meta = {k: v for k, v in written.meta.items() if k not in _OWN_META}
    want_meta = {k: v for k, v in data.meta.items() if k not in _OWN_META}
    if (len(written.rows) != len(data.rows) or rows != data.rows or dict(written.outcomes) != dict(data.outcomes)
            or written.failures != data.failures or meta != want_meta):
        raise UserInputError(f"{export}: the restored database does not read back as the export (duplicate cell "
                             "ids or a malformed row?); nothing was written")
