"""The report's findings: the claims (declared in the config, or the default family), each with its effect,
95% interval, Holm-adjusted p-value, verdict and the smallest effect the design could detect.

Every sentence is generated from a verdict (`loralab.stats.verdict`), never templated with a fixed
conclusion: a claim is "supported" only when its interval excludes 0 in the claimed direction and the
Holm-adjusted test rejects, "contradicted" when both say the other direction, and otherwise
"inconclusive", with the minimal detectable effect. No sentence ranks methods by their means; the
mean tables (`tables`) show the means without words or bold.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from loralab.bench.claims import (Claim, ClaimResult, baseline_pairs, baseline_strategies, declared_claims,
                                  default_claims, describe, evaluate_claims, relevance_strategies,
                                  untrained_methods)
from loralab.bench.tables import Table
from loralab.stats import PooledEffect

__all__ = ["baseline_pairs", "baseline_strategies", "claim_results", "claim_sentences", "claim_table",
           "claims_of", "noise", "relevance_strategies", "untrained_methods"]


def claims_of(config: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> tuple[list[Claim], bool]:
    """The config's claims, or the default family when it declares none; and whether they were declared."""
    declared = declared_claims(config)
    return (declared, True) if declared else (default_claims(config, rows), False)


def claim_results(config: Mapping[str, Any], rows: Sequence[Mapping[str, Any]],
                  outcomes: Mapping[str, Sequence[Mapping[str, Any]]]) -> tuple[list[ClaimResult], bool]:
    claims, declared = claims_of(config, rows)
    return evaluate_claims(claims, rows, outcomes), declared


def _num(value: float) -> str:
    return f"{value:+.3f}"


def _p(value: float | None) -> str:
    if value is None:
        return ""
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def _p_is(value: float) -> str:
    return "p<0.001" if value < 0.001 else f"p={value:.3f}"


def _interval(r: ClaimResult) -> str:
    e = r.effect
    return "" if e is None else f"{_num(e.diff)} [{_num(e.ci_low)}, {_num(e.ci_high)}]"


def _mde(r: ClaimResult) -> float | None:
    if r.verdict is None:
        return None
    return r.verdict.mde_family if r.verdict.mde_family is not None else r.verdict.mde


def _sizes(r: ClaimResult) -> str:
    if r.effect is None:
        return ""
    return f"{r.n_targets} / {r.effect.n} / {r.seeds_a}, {r.seeds_b}"


def family_sizes(results: Sequence[ClaimResult]) -> dict[str, int]:
    """How many claims of each family were tested together (those that could be tested)."""
    sizes: dict[str, int] = {}
    for r in results:
        if r.verdict is not None:
            sizes[r.claim.family] = r.verdict.family_size
    return sizes


def claim_table(results: Sequence[ClaimResult], declared: bool) -> Table:
    sizes = family_sizes(results)
    where = "declared in the config" if declared else "of the default family (the config declares none)"
    counts = "; ".join(f"{n} {family} claim(s) tested together" for family, n in sizes.items()) or "none testable"
    note = (f"Claims {where}; {counts}. Effect: mean per-example difference a - b of the primary metric on the "
            "same test examples (several seeds: averaged per example; several targets: the mean of per-target differences) "
            "with its 95% paired bootstrap interval (over examples, within targets; 10,000 replicates, seed 0; where "
            "a side has several seeds, each side's seeds are resampled too, so the interval covers seed-to-seed "
            "variation). p: McNemar's exact test (one target, one seed a side), the (stratified) sign-flip test, or "
            "the bootstrap test where seeds were resampled, Holm-adjusted "
            "within the family, so the chance of any false verdict in a family stays below 5%; the intervals are "
            "per claim, not simultaneous. Supported: the interval excludes 0 in the claimed direction and the "
            "adjusted p <= 0.05; contradicted: both in the other direction; otherwise inconclusive. MDE: the "
            "smallest effect detectable with 80% power at the family's strictest Holm level. n: targets / "
            "examples / seeds of a, b.")
    table = Table("Claims", ["claim", "family", "source", "a - b [95% CI]", "p (Holm)", "verdict", "MDE", "n"],
                  note=note)
    for r in results:
        mde = _mde(r)
        label = r.verdict.label if r.verdict is not None else "not testable"
        cells = [r.claim.id, r.claim.family, r.claim.source, _interval(r),
                 _p(r.verdict.p_adjusted if r.verdict else None), label, "" if mde is None else f"{mde:.3f}",
                 _sizes(r)]
        table.rows.append([(c, False) for c in cells])
    return table


def claim_sentences(results: Sequence[ClaimResult]) -> list[str]:
    """One sentence per claim, worded from its verdict."""
    return [_sentence(r) for r in results]


def _sentence(r: ClaimResult) -> str:
    c = r.claim
    sides = f"a = {describe(c.a)}, b = {describe(c.b)}, claimed {'a > b' if c.direction > 0 else 'a < b'}"
    head = f"“{c.text}” ({c.source}; `{c.id}`: {sides})"
    if r.verdict is None or r.effect is None:
        return f"not testable: {head}: {r.reason}."
    v, e = r.verdict, r.effect
    p = v.p_adjusted if v.p_adjusted is not None else v.p_value
    numbers = (f"a - b = {_interval(r)}, {_p_is(p)} Holm-adjusted over {v.family_size} {c.family} claim(s) "
               f"({e.test_name}, {_where(r)})")
    notes = f" Notes: {'; '.join(r.notes)}." if r.notes else ""
    if v.label == "supported":
        return f"**supported**: {head}: {numbers}; the interval excludes 0 in the claimed direction.{notes}"
    if v.label == "contradicted":
        return f"contradicted: {head}: {numbers}; the interval excludes 0 opposite to the claimed direction.{notes}"
    excludes = " the interval excludes 0 but the adjusted test does not reject;" if (e.ci_low > 0 or e.ci_high < 0) \
        else ""
    return (f"inconclusive: {head}: {numbers};{excludes} the design could detect effects of about "
            f"±{_mde(r):.3f} (80% power).{notes}")


def _where(r: ClaimResult) -> str:
    e = r.effect
    assert e is not None
    if isinstance(e, PooledEffect):
        return f"{e.n_targets} targets, n={e.n}"
    return f"n={e.n}" + (f", seeds {r.seeds_a} vs {r.seeds_b}" if max(r.seeds_a, r.seeds_b) > 1 else "")


def noise(rows: Sequence[dict[str, Any]]) -> str:
    """How many examples a cell has and how noisy one cell's score is."""
    errs = [r["metrics"].get(f"{r['primary_metric']}_stderr") for r in rows]
    errs = [e for e in errs if isinstance(e, (int, float))]
    n = sorted({r["n"] for r in rows})
    if not errs:
        return f"Evaluation size: n={', '.join(map(str, n))} examples per cell."
    return (f"Evaluation noise: n={', '.join(map(str, n))} examples per cell, mean standard error of one cell's "
            f"score {statistics.fmean(errs):.3f}.")
