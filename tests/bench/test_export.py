"""Per-example outcomes from a real run, the compact export (deterministic bytes, the same report as the
database), refusals of foreign files, and claim declarations checked before anything runs."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
from helpers import run_cli

from loralab.bench import bench_from_mapping, export_bench, load_bench_data, run_bench, write_report
from loralab.bench.export import read_export
from loralab.data import load_task

from .synthetic import CLAIM, base_and_flipped, row, synthetic_db


@pytest.fixture(scope="module")
def tiny_run(make_grid, toy_tasks, tmp_path_factory):
    """Two cells (the base model on two toy targets, 8 test questions each), no library."""
    bench = bench_from_mapping(make_grid(methods=["base"], strategies=[], selection=None, seeds=[0],
                                         library={"tasks": []}))
    return run_bench(bench, tmp_path_factory.mktemp("tiny-run"))


def test_a_run_stores_every_cells_outcomes(tiny_run, toy_tasks):
    data = load_bench_data(tiny_run.db)
    assert len(data.rows) == 2 and data.schema_version == 2
    for r in data.rows:
        got = data.outcomes[r["cell_id"]]
        ids = [ex.id for ex in load_task(toy_tasks[r["target"]]).split("test", 8)]
        assert [o["id"] for o in got] == ids  # the evaluated examples, in order
        assert np.mean([o["correct"] for o in got]) == pytest.approx(r["score"])
        assert all(o["metrics"]["acc"] == o["correct"] and set(o["metrics"]) == {"acc", "acc_norm", "acc_ppl"}
                   for o in got)
        # the score is the log-likelihood margin of the right answer: positive exactly when acc is right
        assert all((o["score"] > 0) == (o["correct"] == 1.0) for o in got if o["score"] != 0)


def test_export_round_trip_gives_the_same_report_byte_for_byte(tiny_run, tmp_path, monkeypatch, capsys):
    before = tiny_run.db.read_bytes()
    code, _, err = run_cli(monkeypatch, capsys, "bench", "export", str(tiny_run.db), str(tmp_path / "a.jsonl.gz"))
    assert code == 0 and "wrote" in err
    export_bench(tiny_run.db, tmp_path / "b.jsonl.gz")
    assert (tmp_path / "a.jsonl.gz").read_bytes() == (tmp_path / "b.jsonl.gz").read_bytes()  # deterministic
    assert tiny_run.db.read_bytes() == before  # the database is only read
    lines = [json.loads(line) for line in gzip.open(tmp_path / "a.jsonl.gz", "rt")]
    assert lines[0]["format"] == "loralab-bench-export" and lines[0]["meta"]["bench"]["plan"]
    assert [line["kind"] for line in lines[1:]] == ["cell", "cell"] and len(lines[1]["outcomes"]["id"]) == 8
    exported, direct = read_export(tmp_path / "a.jsonl.gz"), load_bench_data(tiny_run.db)
    assert (exported.rows, exported.outcomes, exported.meta) == (direct.rows, direct.outcomes, direct.meta)

    write_report(tiny_run.db, tmp_path / "from-db")
    code, _, err = run_cli(monkeypatch, capsys, "report", str(tmp_path / "a.jsonl.gz"), "--out",
                           str(tmp_path / "from-export"))
    assert code == 0, err
    for name in ("report.md", "report.html"):
        assert (tmp_path / "from-db" / name).read_bytes() == (tmp_path / "from-export" / name).read_bytes()
    export_bench(tiny_run.db, tmp_path / "c.jsonl")  # plain JSON lines read the same
    assert read_export(tmp_path / "c.jsonl").rows == direct.rows


def test_synthetic_claims_survive_the_export(tmp_path):
    a, b = base_and_flipped(gains=30, losses=0)
    db = synthetic_db(tmp_path / "bench.sqlite", [row("moe", "t", 0, a), row("base", "t", None, b)], [CLAIM])
    export_bench(db, tmp_path / "x.jsonl.gz")
    md = write_report(db, tmp_path / "r1").read_text()
    assert "**supported**" in md and md == write_report(tmp_path / "x.jsonl.gz", tmp_path / "r2").read_text()


def test_foreign_files_are_refused_in_one_line(tmp_path, monkeypatch, capsys):
    text = tmp_path / "notes.jsonl.gz"
    text.write_text("hello\n")
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"format": "something else"}) + "\n")
    for path in (text, other):
        code, out, err = run_cli(monkeypatch, capsys, "report", str(path), "--out", str(tmp_path / "r"))
        assert code == 2 and out == "" and err.count("\n") == 1
        assert "is not a loralab benchmark database or bench export" in err
    code, _, err = run_cli(monkeypatch, capsys, "bench", "export", str(other), str(tmp_path / "e.jsonl.gz"))
    assert code == 2 and "is not a loralab benchmark database" in err and err.count("\n") == 1
    assert not (tmp_path / "e.jsonl.gz").exists() and not (tmp_path / "r").exists()


def test_export_replaces_only_its_own_files(tmp_path, monkeypatch, capsys):
    a, b = base_and_flipped(1, 0)
    db = synthetic_db(tmp_path / "bench.sqlite", [row("moe", "t", 0, a), row("base", "t", None, b)])
    mine = tmp_path / "keep.jsonl"
    mine.write_text('{"id": "q1"}\n')
    code, _, err = run_cli(monkeypatch, capsys, "bench", "export", str(db), str(mine))
    assert code == 2 and "not a loralab bench export" in err and mine.read_text() == '{"id": "q1"}\n'
    code, _, err = run_cli(monkeypatch, capsys, "bench", "export", str(db), str(tmp_path / "x.csv"))
    assert code == 2 and "must end in .jsonl.gz" in err
    export_bench(db, tmp_path / "x.jsonl.gz")
    export_bench(db, tmp_path / "x.jsonl.gz")  # an export is replaced


GOOD = {"id": "moe-vs-base", "text": "LoRAMoE improves on the base model", "a": {"method": "loramoe"},
        "b": {"method": "base"}}


@pytest.mark.parametrize("claims, needle", [
    ([{**GOOD, "a": {"method": "lorammoe"}}], "claims[0] (moe-vs-base).a.method: unknown method of this grid "
                                              "'lorammoe'. Did you mean 'loramoe'?"),
    ([{**GOOD, "a": {"metod": "loramoe"}}], "claims[0].a: unknown key 'metod' (did you mean 'method'?)"),
    ([{**GOOD, "b": {"strategy": "ppll"}}], "b.strategy: unknown strategy of this grid 'ppll'. Did you mean 'ppl'?"),
    ([{**GOOD, "targets": ["parityy"]}], "targets: unknown target of this grid 'parityy'. Did you mean 'parity'?"),
    ([{**GOOD, "direction": 2}], "claims[0].direction: not an allowed value (got 2; allowed: 1 (a scores higher"),
    ([{**GOOD, "b": {"method": "base", "strategy": "manual"}}], ".b: selects no cell of this grid"),
    ([{**GOOD, "b": {"strategy": "ppl"}}], "a and b both select 2 cell(s)"),
    ([{**GOOD, "b": {}}], ".b: name at least one of model, method, strategy, k"),
    ([GOOD, GOOD], "claims lists the id 'moe-vs-base' twice"),
])
def test_bad_claims_fail_at_check_time_in_one_line(make_grid, write_grid, monkeypatch, capsys, claims, needle):
    config = write_grid(make_grid(claims=claims, seeds=[0]))
    code, out, err = run_cli(monkeypatch, capsys, "bench", str(config), "--dry-run", "--out", "nowhere")
    assert code == 2 and out == "" and err.count("\n") == 1 and needle in err, err


def test_declared_claims_do_not_change_any_cell(make_grid):
    from loralab.bench import expand

    plain = [c.cell_id for c in expand(bench_from_mapping(make_grid()))]
    assert [c.cell_id for c in expand(bench_from_mapping(make_grid(claims=[GOOD])))] == plain
