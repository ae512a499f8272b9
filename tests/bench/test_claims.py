"""Per-example outcomes in the database and the claims tested on them, on hand-made rows whose answers are known:
pairing, averaging, pooling, McNemar's p, verdicts in the report, old databases."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest
from scipy.stats import binomtest

from loralab.bench import Store, write_report
from loralab.bench.claims import Claim, evaluate_claims
from loralab.bench.store import _CELLS, _FAILURES, _META

from .synthetic import CLAIM, N, base_and_flipped, row, synthetic_db

def claim(a, b, **kw) -> Claim:
    return Claim(kw.pop("id", "c"), kw.pop("text", "a scores higher than b"), "test", a, b, **kw)


def test_outcomes_are_stored_with_their_row_and_read_back_in_order(tmp_path):
    a, _ = base_and_flipped(3, 1)
    ids = [f"z{N - i:03d}" for i in range(N)]  # not sorted: the evaluation's order is kept
    with Store(tmp_path / "db.sqlite") as db:
        db.put(row("moe", "t", 0, a, ids=ids))
        got = db.outcomes()["m-moe-None-None-t-0"]
        assert [o["id"] for o in got] == ids and [o["correct"] for o in got] == list(a)
        assert got[0] == {"id": ids[0], "correct": a[0], "score": a[0] - 0.5, "metrics": {"acc": a[0]}}
        db.put(row("moe", "t", 0, a[:10], ids=ids[:10]))  # a replaced row replaces its outcomes
        assert len(db.outcomes()["m-moe-None-None-t-0"]) == 10
        broken = row("base", "t", None, a)
        broken["outcomes"][5] = {"id": "q005"}  # no "correct": the transaction writes neither row nor outcomes
        with pytest.raises(KeyError):
            db.put(broken)
        assert db.done_ids() == {"m-moe-None-None-t-0"} and set(db.outcomes()) == {"m-moe-None-None-t-0"}


def test_known_flips_give_the_known_difference_and_mcnemar_p():
    a, b = base_and_flipped(gains=10, losses=2)
    rows = [row("moe", "t", 0, a), row("base", "t", None, b)]
    store = {r["cell_id"]: r["outcomes"] for r in rows}
    (result,) = evaluate_claims([claim({"method": ("moe",)}, {"method": ("base",)})], rows, store)
    e = result.effect
    assert e.diff == pytest.approx(0.08) and (e.n10, e.n01, e.n) == (10, 2, N) and e.test == "mcnemar"
    assert e.p_value == pytest.approx(binomtest(2, 12, 0.5).pvalue)
    assert result.verdict.label == "supported" and result.verdict.family_size == 1  # p = 0.039, CI above 0
    assert (result.verdict.p_adjusted, result.n_targets, result.seeds_a, result.seeds_b) == (e.p_value, 1, 1, 1)


def test_unnamed_fields_pair_and_average_and_targets_pool():
    """manual vs ppl: paired within each method (an unnamed field both sides have); base has no strategy, so
    moe vs base averages moe's strategies; two targets pool as the mean of per-target differences."""
    rng = np.random.default_rng(0)
    cells = {}
    rows = []
    for target in ("t1", "t2"):
        for method, shift in (("moe", 0.2), ("mix", 0.0)):
            for strategy, p in (("manual", 0.6), ("ppl", 0.4)):
                cells[target, method, strategy] = (rng.random(N) < p + shift).astype(float)
                rows.append(row(method, target, 0, cells[target, method, strategy], strategy, 2))
        cells[target, "base"] = (rng.random(N) < 0.3).astype(float)
        rows.append(row("base", target, None, cells[target, "base"]))
    store = {r["cell_id"]: r["outcomes"] for r in rows}
    manual, versus_base = evaluate_claims(
        [claim({"strategy": ("manual",)}, {"strategy": ("ppl",)}, id="s"),
         claim({"method": ("moe",)}, {"method": ("base",)}, id="m")], rows, store)
    per_target = {t: np.mean([cells[t, m, "manual"].mean() - cells[t, m, "ppl"].mean() for m in ("moe", "mix")])
                  for t in ("t1", "t2")}
    assert manual.effect.diff == pytest.approx(np.mean(list(per_target.values())))
    assert {t: e.diff for t, e in manual.effect.per_target.items()} == pytest.approx(per_target)
    moe = {t: (cells[t, "moe", "manual"] + cells[t, "moe", "ppl"]).mean() / 2 - cells[t, "base"].mean()
           for t in ("t1", "t2")}
    assert versus_base.effect.diff == pytest.approx(np.mean(list(moe.values())))
    assert manual.n_targets == 2 and manual.effect.test == "sign_flip" and manual.effect.n == 2 * N
    assert manual.verdict.family_size == versus_base.verdict.family_size == 2  # one headline family, Holm over 2
    assert manual.verdict.label == versus_base.verdict.label == "supported"


def test_seeds_mismatched_examples_and_missing_cells_are_said():
    a, b = base_and_flipped(20, 0)
    ids = [f"q{i:03d}" for i in range(N)]
    rows = [row("moe", "t", 0, a), row("moe", "t", 1, a[1:], ids=ids[1:]), row("base", "t", None, b)]
    store = {r["cell_id"]: r["outcomes"] for r in rows}
    found, missing, wrong_way = evaluate_claims(
        [claim({"method": ("moe",)}, {"method": ("base",)}, id="x"),
         claim({"method": ("lora",)}, {"method": ("base",)}, id="y"),
         claim({"method": ("moe",)}, {"method": ("base",)}, id="z", direction=-1, family="secondary")], rows, store)
    assert found.seeds_a == 2 and found.effect.n == N - 1 and found.effect.method == "two_level"  # seeds resampled
    assert any("99 examples scored by every cell" in n for n in found.notes)
    assert missing.effect is None and missing.verdict is None and "no finished cell matches a" in missing.reason
    assert wrong_way.verdict.label == "contradicted" and wrong_way.verdict.family_size == 1


def test_report_says_supported_for_a_clear_effect(tmp_path):
    a, b = base_and_flipped(gains=30, losses=0)
    db = synthetic_db(tmp_path / "bench.sqlite", [row("moe", "t", 0, a), row("base", "t", None, b)], [CLAIM])
    md = write_report(db).read_text()
    assert "| moe-gain | headline | Paper (2025) | +0.300 [+0.210, +0.390] | <0.001 | supported |" in md
    assert "- **supported**: “MoE improves on the base model” (Paper (2025); `moe-gain`" in md
    assert "1 headline claim(s) tested together" in md and "![claims.png](claims.png)" in md
    assert (tmp_path / "report" / "claims.png").read_bytes()[:4] == b"\x89PNG"


def test_report_says_inconclusive_without_an_effect_and_never_ranks(tmp_path):
    a, b = base_and_flipped(gains=3, losses=3)  # a different on 6 examples, no difference on average
    db = synthetic_db(tmp_path / "bench.sqlite", [row("moe", "t", 0, a), row("base", "t", None, b)], [CLAIM])
    md = write_report(db).read_text()
    assert "| inconclusive |" in md and "- inconclusive: “MoE improves on the base model”" in md
    assert "a - b = +0.000 [-0.050, +0.050], p=1.000" in md
    assert "the design could detect effects of about ±0.069 (80% power)" in md  # 2.80 * sqrt(6) / 100
    lowered = md.lower()
    assert "beats" not in lowered and "best" not in lowered and "**" not in md


def test_old_schema_database_still_reports_and_migrates(tmp_path):
    """A version-1 database (no outcomes table) reads as cells without outcomes; writing migrates it."""
    path = tmp_path / "bench.sqlite"
    a, b = base_and_flipped(5, 0)
    rows = [row("moe", "t", 0, a), row("base", "t", None, b)]
    with sqlite3.connect(path) as conn:
        for ddl in (_CELLS, _FAILURES, _META):
            conn.execute(ddl)
        conn.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    with Store(path) as db:  # the migration: the table appears, the version becomes 2, old cells have no outcomes
        assert db.schema_version == 2
        db.put_many([{k: v for k, v in r.items() if k != "outcomes"} for r in rows])
    with sqlite3.connect(path) as conn:  # back to what version 1 was, for the read-only path
        conn.execute("DROP TABLE outcomes")
        conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    _db_meta = {"name": "old", "plan": [r["cell_id"] for r in rows], "seeds": [0],
                "config": {"models": ["m"], "methods": ["base", "moe"], "seeds": [0]}}
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO meta VALUES ('bench', ?)", (json.dumps(_db_meta),))
    before = path.read_bytes()
    with Store(path, create=False) as db:
        assert db.schema_version == 1 and db.outcomes() == {} and len(db.rows()) == 2
    md = write_report(path, tmp_path / "report").read_text()
    assert path.read_bytes() == before  # reading never modifies it
    assert "not testable: “moe scores higher than base”" in md and "no per-example outcomes" in md
    assert "| moe-vs-base | headline | default family of this grid |  |  | not testable |" in md
