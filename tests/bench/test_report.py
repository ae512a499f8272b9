"""The database and the report, on synthetic rows: exact numbers, spread over seeds, no ranking bold, CLI rebuild.

These rows carry no per-example outcomes (as cells written before loralab stored them): the claims are
listed as not testable. Claims on outcomes are in `test_claims.py`."""

from __future__ import annotations

import sqlite3
import statistics

import pytest
from helpers import run_cli

from loralab.bench import Store, write_report
from loralab.bench import tables as T


def _row(method, target, seed, score, strategy=None, k=None, model="m"):
    cell_id = f"{model}-{method}-{strategy}-{k}-{target}-{seed}"
    return {"cell_id": cell_id, "bench": "synthetic", "model": model, "method": method, "strategy": strategy, "k": k,
            "target": target, "seed": seed, "config": {"id": cell_id}, "primary_metric": "acc", "score": score,
            "n": 100, "split": "test", "metrics": {"acc": score, "acc_stderr": 0.05}, "experts": [],
            "selection": None, "own_lora": None, "train": None, "versions": {"loralab": "0"}, "git_hash": "abc",
            "seconds": 1.0, "host": "h", "executor": "local", "device": "cpu"}


# moe beats mix by 0.1 on every cell; manual beats ppl by 0.05 and random by 0.1; base is seed-free
SCORES = {"random": 0.4, "ppl": 0.45, "manual": 0.5}


def _rows():
    rows = [_row("base", t, None, 0.3) for t in ("t1", "t2")]
    for seed, jitter in ((0, 0.0), (1, 0.02)):
        for t in ("t1", "t2"):
            for strategy, s in SCORES.items():
                rows.append(_row("moe", t, seed, s + jitter + 0.1, strategy, 2))
                rows.append(_row("mix", t, seed, s + jitter, strategy, 2))
    return rows


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "bench.sqlite") as db:
        for row in _rows():
            db.put(row)
        db.set_meta("bench", {"name": "synthetic", "plan": [r["cell_id"] for r in _rows()], "seeds": [0, 1],
                              "config": {"models": ["m"], "methods": ["base", "mix", "moe"], "k": [2], "seeds": [0, 1],
                                         "strategies": ["random", "ppl", "manual"]}})
        yield db


def test_store_roundtrip_failures_and_volatile_columns(tmp_path):
    with Store(tmp_path / "db.sqlite") as db:
        row = _row("moe", "t1", 0, 0.5, "ppl", 2)
        db.put_failure(row["cell_id"], "b", row["config"], "RuntimeError: boom")
        assert db.failures()[0]["error"] == "RuntimeError: boom" and db.done_ids() == set()
        db.put(row)
        assert db.failures() == [] and db.done_ids() == {row["cell_id"]}  # success clears the failure
        assert db.rows()[0]["metrics"] == row["metrics"] and db.rows()[0]["seconds"] == 1.0
        assert "seconds" not in db.rows(volatile=False)[0] and "host" not in db.rows(volatile=False)[0]
        with pytest.raises(sqlite3.IntegrityError):
            db.put({**row, "cell_id": "x", "score": None})  # NOT NULL: the transaction writes nothing
        assert db.done_ids() == {row["cell_id"]}


def test_tables_mean_and_spread_over_seeds():
    recs = T.records(_rows(), [0, 1])
    assert sum(r.method == "base" for r in recs) == 4  # seed-free rows count once per seed
    table = T.method_strategy_table(recs, ["random", "ppl", "manual"], 2)
    rows = {r[0][0]: r[1:] for r in table.rows}
    std = statistics.stdev([0.6, 0.62])
    assert rows["moe"][2] == (f"0.610 ± {std:.3f}", True)  # manual column: best
    assert rows["mix"][0] == (f"0.410 ± {std:.3f}", False)
    assert rows["base"][:3] == [("n/a", False)] * 3 and rows["base"][3] == ("0.300 ± 0.000", True)
    assert rows["moe"][3] == ("n/a", False)
    per_strategy = {r[0][0]: r for r in T.strategy_table(recs, ["random", "ppl", "manual"], 2).rows}
    assert set(per_strategy) == {"random", "ppl", "manual"} and per_strategy["manual"][-1][1]


def test_rows_without_outcomes_make_every_claim_not_testable(store, tmp_path):
    md = write_report(store, tmp_path / "report").read_text()
    findings = md.split("## Findings")[1].split("## Results")[0]
    for claim in ("moe-vs-base", "mix-vs-base", "manual-vs-ppl", "manual-vs-random", "ppl-vs-random"):
        assert f"| {claim} |" in findings and f"`{claim}`" in findings
    assert findings.count("not testable:") == 5 and "no per-example outcomes" in findings
    assert "Evaluation noise: n=100 examples per cell" in findings
    assert not (tmp_path / "report" / "claims.png").exists()  # nothing to plot


def test_report_files_and_cli_rebuild(store, tmp_path, monkeypatch, capsys):
    path = write_report(store, tmp_path / "report")
    md = path.read_text()
    for title in ("## Findings", "### Claims", "### Method x task", "### Method x selection strategy",
                  "### Selection strategy x method", "### Selection strategies, paired", "## Provenance"):
        assert title in md
    assert "| moe | 0.510 ± 0.014 | 0.560 ± 0.014 | 0.610 ± 0.014 | n/a |" in md  # means, no "best" in bold
    assert "**" not in md and "best" not in md.lower() and "beats" not in md.lower()
    html = (tmp_path / "report" / "report.html").read_text()
    assert "<table>" in html and "<td>0.610 ± 0.014</td>" in html and "<b>" not in html
    assert "<img src='strategies.png'" in html
    for png in ("methods.png", "strategies.png", "tasks.png"):
        assert (tmp_path / "report" / png).read_bytes()[:4] == b"\x89PNG"
    store.close()
    code, stdout, _ = run_cli(monkeypatch, capsys, "report", str(tmp_path / "bench.sqlite"), "--out",
                              str(tmp_path / "again"))
    assert code == 0 and "report:" in stdout
    assert (tmp_path / "again" / "report.md").read_text() == md


def test_report_covers_the_plan_only(store, tmp_path):
    store.put(_row("stale", "t1", 0, 0.9))  # a row of an earlier config sharing the database
    md = write_report(store, tmp_path / "r").read_text()
    assert "stale" not in md and "26 of 26 cells done" in md


def test_rows_of_two_precisions_get_a_section_each_and_are_never_pooled(tmp_path):
    rows = []
    for precision, score in (("fp32", 0.5), ("bf16", 0.7)):
        for seed in (0, 1):
            row = _row("moe", "t1", seed, score)
            row["cell_id"] += f"-{precision}"  # bf16 cells have ids of their own; fp32 protocols do not name it
            row["config"] = {"protocol": {} if precision == "fp32" else {"precision": precision}}
            rows.append(row)
    assert [T.row_precision(r) for r in rows] == ["fp32", "fp32", "bf16", "bf16"]
    assert {r.precision for r in T.records(rows, [0, 1])} == {"fp32", "bf16"}
    with Store(tmp_path / "bench.sqlite") as db:
        for row in rows:
            db.put(row)
        db.set_meta("bench", {"name": "mixed", "plan": [r["cell_id"] for r in rows], "seeds": [0, 1],
                              "config": {"models": ["m"], "methods": ["moe"], "seeds": [0, 1], "precision": "auto"}})
        md = write_report(db, tmp_path / "report").read_text()
    assert "Precisions: fp32 (2 cells), bf16 (2 cells) (requested: auto); each has its own section" in md
    fp32, bf16 = md.split("## Results (precision fp32)")[1].split("## Results (precision bf16)")
    assert "| moe | 0.500 ± 0.000 |" in fp32 and "0.700" not in fp32
    assert "| moe | 0.700 ± 0.000 |" in bf16.split("## Provenance")[0]
    assert "0.600" not in md  # the pooled mean of the two precisions appears nowhere
    for png in ("fp32-methods.png", "bf16-methods.png"):
        assert (tmp_path / "report" / png).is_file()


def test_one_precision_is_named_once_in_the_summary_and_the_heading(store, tmp_path):
    md = write_report(store, tmp_path / "r").read_text()  # synthetic rows from before precisions: fp32
    assert "Precision: fp32." in md and md.count("## Results (precision fp32)") == 1
    assert (tmp_path / "r" / "methods.png").is_file()  # one precision: file names as before
