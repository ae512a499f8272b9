"""A benchmark folder restored from its export resumes where the export stopped, and a restore writes nothing
over anything (a non-empty folder, a database) and nothing at all for a file that is not an export."""

from __future__ import annotations

import gzip
import json

import pytest
from helpers import run_cli

from loralab.bench import bench_from_mapping, export_bench, load_bench_data, restore_bench, run_bench


@pytest.fixture(scope="module")
def one_target_run(make_grid, toy_tasks, tmp_path_factory):
    """The base model on one toy target (8 test questions): the first chunk of a two-target grid."""
    bench = bench_from_mapping(make_grid(methods=["base"], strategies=[], selection=None, seeds=[0],
                                         library={"tasks": []}, targets=[toy_tasks["parity"]]))
    return run_bench(bench, tmp_path_factory.mktemp("chunk-1"))


def test_a_restored_folder_reads_as_the_export_and_resumes_with_the_missing_cells_only(
        one_target_run, make_grid, toy_tasks, tmp_path, monkeypatch, capsys):
    export = export_bench(one_target_run.db, tmp_path / "chunk-1.jsonl.gz")
    before = export.read_bytes()
    code, _, err = run_cli(monkeypatch, capsys, "bench", "restore", str(export), "--out", str(tmp_path / "next"))
    assert code == 0 and "wrote" in err and export.read_bytes() == before  # the export is only read
    restored, original = load_bench_data(tmp_path / "next" / "bench.sqlite"), load_bench_data(one_target_run.db)
    assert (restored.rows, restored.outcomes, restored.meta) == (original.rows, original.outcomes, original.meta)
    assert export_bench(tmp_path / "next" / "bench.sqlite", tmp_path / "again.jsonl.gz").read_bytes() == before

    # the next chunk: the same grid with a second target runs that target's cell only
    bench = bench_from_mapping(make_grid(methods=["base"], strategies=[], selection=None, seeds=[0],
                                         library={"tasks": []}, targets=[toy_tasks["parity"], toy_tasks["colour"]]))
    result = run_bench(bench, tmp_path / "next")
    assert (result.ran, result.skipped, result.failed) == (1, 1, [])
    rows = {r["target"]: r for r in load_bench_data(result.db).rows}
    assert rows["parity"] == original.rows[0] and set(rows) == {"parity", "colour"}


def test_restore_refuses_a_folder_with_anything_in_it(one_target_run, tmp_path, monkeypatch, capsys):
    export = export_bench(one_target_run.db, tmp_path / "x.jsonl.gz")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me\n")
    code, out, err = run_cli(monkeypatch, capsys, "bench", "restore", str(export), "--out", str(mine))
    assert code == 2 and out == "" and err.count("\n") == 1 and "is not empty (it holds notes.txt)" in err
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"] and (mine / "notes.txt").read_text() == "keep me\n"
    # nor over a database, even loralab's own: a restore never replaces or merges results
    code, _, err = run_cli(monkeypatch, capsys, "bench", "restore", str(export), "--out", str(one_target_run.db.parent))
    assert code == 2 and "never over a database" in err


def test_restore_of_what_is_not_an_export_is_one_line_and_writes_nothing(one_target_run, tmp_path, monkeypatch,
                                                                        capsys):
    for bad in (one_target_run.db, tmp_path / "absent.jsonl.gz"):  # a database, a missing file
        code, out, err = run_cli(monkeypatch, capsys, "bench", "restore", str(bad), "--out", str(tmp_path / "o"))
        assert code == 2 and out == "" and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_an_export_that_does_not_read_back_is_refused_and_leaves_no_database(one_target_run, tmp_path):
    export = export_bench(one_target_run.db, tmp_path / "x.jsonl.gz")
    lines = gzip.open(export, "rt").read().splitlines()
    twice = tmp_path / "twice.jsonl"  # the one cell listed twice: the database keeps one row, so they differ
    twice.write_text("\n".join([*lines, lines[1]]) + "\n")
    assert json.loads(lines[1])["kind"] == "cell"
    with pytest.raises(Exception, match="does not read back as the export"):
        restore_bench(twice, tmp_path / "o")
    assert not (tmp_path / "o").exists()  # no database, no leftover of the temporary one, no folder
