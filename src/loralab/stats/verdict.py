"""Verdicts on claims ("A beats B") and one-line effect summaries for reports.

A claim says the effect (A - B) has a sign, `claimed_direction` = +1 (A better) or -1. Its verdict:

- "supported": the interval lies strictly on the claimed side of 0 AND the test rejects, i.e. its
  p-value <= alpha, where with a family of claims the p-value is Holm-adjusted over the family;
- "contradicted": the same on the other side;
- "inconclusive": otherwise. The verdict carries the MDE so that a report can give the smallest
  effect this design could detect (`mde`; with a family also `mde_family`, at the strictest Holm
  step alpha / m, the level the family's smallest p-value has to meet).

How the interval and Holm combine: Holm adjusts the p-values only; the intervals stay the
per-claim (1 - alpha) intervals of the results, which are not simultaneous over the family and
are reported as such. Requiring both the interval and the (adjusted) test makes a verdict never more
lenient than either alone: over a family, the chance that any claim with no true effect gets
"supported" or "contradicted" stays at most alpha (Holm's guarantee; these verdicts are a subset
of Holm's rejections). When
the two disagree near the boundary (the exact test and the bootstrap are different procedures) the
verdict is "inconclusive" and `reason` says why. Every test here is about the mean difference, so
its direction is the interval's.

alpha must be 1 - the results' confidence (default: taken from the result), so the interval and the
test use the same level.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from loralab.errors import UserInputError
from loralab.stats._checks import check_count
from loralab.stats._resample import mde_factor
from loralab.stats.multiple import holm
from loralab.stats.paired import PairedEffect
from loralab.stats.pooled import PooledEffect

__all__ = ["Effect", "Verdict", "format_effect", "verdict", "verdict_family"]

Effect = PairedEffect | PooledEffect
Label = Literal["supported", "contradicted", "inconclusive"]


@dataclass(frozen=True)
class Verdict:
    """The verdict on one claim and what it rests on. p_adjusted, mde_family: None without a family."""

    label: Label
    claimed_direction: int
    diff: float
    ci_low: float
    ci_high: float
    confidence: float
    p_value: float
    p_adjusted: float | None
    alpha: float
    family_size: int
    mde: float
    mde_family: float | None
    reason: str


def _check_direction(value: object, name: str) -> int:
    if isinstance(value, bool) or value not in (1, -1):
        raise UserInputError(f"{name} must be +1 (A better) or -1 (B better), got {value!r}")
    return int(value)


def _alpha_for(effect: Effect, alpha: float | None) -> float:
    expected = round(1.0 - effect.confidence, 12)  # 0.05, not 0.050000000000000044
    if alpha is None:
        return expected
    valid = isinstance(alpha, numbers.Real) and not isinstance(alpha, bool)
    if not valid or not math.isclose(alpha, expected, abs_tol=1e-9):
        raise UserInputError(
            f"alpha={alpha!r} does not match the result's confidence {effect.confidence:g}: alpha must be "
            f"1 - confidence = {expected:g} (or recompute the result with confidence = 1 - alpha)"
        )
    return expected


def _family_p_values(family: Sequence[Effect | float]) -> list[float]:
    p_values = []
    for i, item in enumerate(family):
        if isinstance(item, (PairedEffect, PooledEffect)):
            p_values.append(item.p_value)
        elif isinstance(item, numbers.Real) and not isinstance(item, bool):
            p_values.append(float(item))
        else:
            raise UserInputError(f"family[{i}] must be a result or a p-value, got {type(item).__name__}")
    return p_values


def _decide(effect: Effect, direction: int, p_used: float, alpha: float, mde: float) -> tuple[Label, str]:
    interval = f"the {effect.confidence:.0%} interval [{effect.ci_low:+.3f}, {effect.ci_high:+.3f}]"
    side = 1 if effect.ci_low > 0 else -1 if effect.ci_high < 0 else 0
    power = f"the smallest effect this design detects with 80% power is about {mde:.3f}"
    if side == 0:
        return "inconclusive", f"{interval} contains 0; {power}"
    if p_used > alpha:
        return "inconclusive", f"{interval} excludes 0 but p={p_used:.3g} > alpha={alpha:g}; {power}"
    label: Label = "supported" if side == direction else "contradicted"
    return label, f"{interval} excludes 0 and p={p_used:.3g} <= alpha={alpha:g}"


def _family_mde(mde: float, alpha: float, m: int) -> float:
    return mde * mde_factor(alpha / m) / mde_factor(alpha)


def verdict(
    result: Effect, claimed_direction: int = 1, *, alpha: float | None = None,
    family: Sequence[Effect | float] | None = None,
) -> Verdict:
    """The verdict on the claim that `result`'s effect has sign `claimed_direction`.

    Args:
        family: the whole family of claims tested together (results or their p-values), including
            this one; this result's p-value is then Holm-adjusted over it.

    Raises:
        UserInputError: claimed_direction not +1/-1, alpha that is not 1 - confidence, or a family
            with an item that is neither a result nor a p-value in [0, 1], or without this result.
    """
    direction = _check_direction(claimed_direction, "claimed_direction")
    alpha = _alpha_for(result, alpha)
    if family is None:
        label, reason = _decide(result, direction, result.p_value, alpha, result.mde)
        return Verdict(label, direction, result.diff, result.ci_low, result.ci_high, result.confidence,
                       result.p_value, None, alpha, 1, result.mde, None, reason)
    p_values = _family_p_values(family)
    if result.p_value not in p_values:
        raise UserInputError(f"family must include this result (p={result.p_value:g}); it holds {len(p_values)} "
                             "p-values, none equal to it")
    adjusted = holm(p_values, alpha).adjusted[p_values.index(result.p_value)]  # equal p's adjust equally
    mde_family = _family_mde(result.mde, alpha, len(p_values))
    label, reason = _decide(result, direction, adjusted, alpha, mde_family)
    return Verdict(label, direction, result.diff, result.ci_low, result.ci_high, result.confidence,
                   result.p_value, adjusted, alpha, len(p_values), result.mde, mde_family, reason)


def verdict_family(
    results: Mapping[str, Effect], claimed_direction: int | Mapping[str, int] = 1, *, alpha: float | None = None,
) -> dict[str, Verdict]:
    """Verdicts on a family of claims (one headline table), Holm-adjusted over all of them.

    claimed_direction: one sign for every claim, or name -> sign covering every name in `results`.
    All results must share one confidence level (Holm runs at one alpha).
    """
    levels = {r.confidence for r in results.values()}
    if len(levels) > 1:
        raise UserInputError(f"results mix confidence levels {sorted(levels)}; recompute them at one level")
    if isinstance(claimed_direction, Mapping):
        missing = [name for name in results if name not in claimed_direction]
        if missing:
            raise UserInputError(f"claimed_direction has no sign for {', '.join(map(repr, missing))}")
        directions = {name: claimed_direction[name] for name in results}
    else:
        directions = dict.fromkeys(results, claimed_direction)
    family = list(results.values())
    return {name: verdict(r, directions[name], alpha=alpha, family=family) for name, r in results.items()}


def _p_text(p: float, digits: int) -> str:
    floor = 10.0**-digits
    return f"p<{floor:.{digits}f}" if p < floor else f"p={p:.{digits}f}"


def format_effect(result: Effect, digits: int = 3) -> str:
    """One line for a report, e.g. "+0.034 [+0.010, +0.058], p=0.004 (McNemar, n=400)"."""
    d = check_count(digits, "digits", 1)
    where = f"n={result.n}"
    if isinstance(result, PooledEffect):
        where = f"{result.n_targets} targets, {where}"
    elif result.method != "examples":
        where = f"{where}, seeds {result.n_seeds_a} vs {result.n_seeds_b}, {result.method.replace('_', '-')}"
    return (f"{result.diff:+.{d}f} [{result.ci_low:+.{d}f}, {result.ci_high:+.{d}f}], "
            f"{_p_text(result.p_value, d)} ({result.test_name}, {where})")
