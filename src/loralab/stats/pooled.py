"""Pooled comparison over several target tasks: the mean over targets of per-target differences.

The claim "A beats B on average" is about D = (1/T) * sum_t D_t, D_t = mean_i(a_ti - b_ti): every
target weighs the same whatever its size (questions are never pooled across targets as one task).

- Interval: stratified percentile bootstrap. Each replicate resamples examples within each target
  (independent streams spawned from `seed`) and averages the T per-target means. With
  method="two_level", a target with several seeds on either side is resampled as in
  `paired_difference_seeds(..., method="two_level")` (examples shared by both sides, each side's seeds
  drawn independently), so the interval also covers seed-to-seed variation; the test is then the
  bootstrap test of those replicates and the SE/MDE include the seed terms.
- Test: a stratified sign-flip test (`loralab.stats._resample.sign_flip_p_value`) of the pooled
  statistic, under the null that on every example of every target A and B are exchangeable (each
  d_ti as likely to be +d_ti as -d_ti). It is the natural pooled version of McNemar's test: with
  one 0/1 target it is McNemar's exact test up to Monte Carlo error, and with several it weighs
  each target's discordant pairs by 1/n_t. p = (1 + #{|T*| >= |T|}) / (1 + n_perm) >= 1 / (n_perm + 1).
- SE: sqrt(sum_t se_t^2) / T (targets are independent); MDE: (z_(1-alpha/2) + z_0.8) times
  sqrt(sum_t SE0_t^2) / T, SE0_t the per-target null SE (see `loralab.stats.paired`).
- Per-target results are exactly `paired_difference(a_t, b_t, seed=seed, ...)` (or the seed-mean
  version when a target has seeds), so each can be reproduced on its own.
- `without_target[t]`: the pooled difference with target t left out. When leaving one target out
  moves the pooled effect to less than half its size (or flips its sign), `notes` says the pooled
  effect is driven by that target.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from loralab.errors import UserInputError
from loralab.stats._checks import as_outcomes_by_seed, check_confidence, check_count, check_same_n, check_seed
from loralab.stats._resample import (bootstrap_means, bootstrap_p_value, mde_factor, percentile_interval,
                                     sign_flip_p_value, two_level_means)
from loralab.stats.paired import TEST_NAMES, PairedEffect, SeedMethod, summarise

__all__ = ["PooledEffect", "pooled_difference"]


@dataclass(frozen=True)
class PooledEffect:
    """Mean over targets of per-target mean differences (A - B), with interval, test and power.

    Attributes:
        diff: (1/T) * sum_t per_target[t].diff. mean_a, mean_b: the same average of per-target means.
        se, ci_low, ci_high, confidence, p_value, mde: as in `PairedEffect`, for the pooled effect.
        test: "sign_flip", or "bootstrap" when seeds were resampled (method="two_level"). n: examples over
            all targets. n_targets: T.
        per_target: target -> its own `PairedEffect`, in the input order.
        without_target: target -> pooled diff without that target (empty with one target).
        seed, n_boot, n_perm: RNG seed, bootstrap replicates and sign-flip draws (per-target results
            use the same three).
        notes: caveats (a pooled effect driven by one target).
    """

    mean_a: float
    mean_b: float
    diff: float
    se: float
    ci_low: float
    ci_high: float
    confidence: float
    p_value: float
    test: str
    mde: float
    n: int
    n_targets: int
    per_target: dict[str, PairedEffect] = field(compare=False)
    without_target: dict[str, float] = field(compare=False)
    seed: int
    n_boot: int
    n_perm: int
    notes: tuple[str, ...] = ()

    @property
    def test_name(self) -> str:
        return TEST_NAMES.get(self.test, self.test)


def _target_pair(name: str, pair: Any) -> tuple[np.ndarray, np.ndarray]:
    where = f"targets[{name!r}]"
    if not isinstance(pair, Sequence) or isinstance(pair, (str, bytes)) or len(pair) != 2:
        raise UserInputError(f"{where} must be a pair (a, b) of per-example outcomes, got {type(pair).__name__}")
    a, b = as_outcomes_by_seed(pair[0], f"{where}.a"), as_outcomes_by_seed(pair[1], f"{where}.b")
    check_same_n(a.shape[1], b.shape[1], f"{where}.a", f"{where}.b")
    return a, b


def _driven_by(diff: float, without: dict[str, float]) -> tuple[str, ...]:
    if diff == 0 or not without:
        return ()
    # The target whose removal shrinks the effect most; a note only if it halves or flips it.
    name = min(without, key=lambda t: without[t] * math.copysign(1.0, diff))
    if without[name] * math.copysign(1.0, diff) < abs(diff) / 2:
        note = (f"the pooled effect is driven by {name!r}: without it the mean difference is "
                f"{without[name]:+.3f} (with it {diff:+.3f})")
        return (note,)
    return ()


def pooled_difference(
    targets: Mapping[str, tuple[ArrayLike, ArrayLike]],
    *,
    method: SeedMethod = "seed_mean",
    n_boot: int = 10_000,
    n_perm: int = 10_000,
    seed: int = 0,
    confidence: float = 0.95,
) -> PooledEffect:
    """Compare A and B over several targets. targets: name -> (a, b), each (n_t,) or (n_seeds, n_t).

    A target given with seeds is seed-averaged per example (method "seed_mean" of
    `paired_difference_seeds`), or with method="two_level" resampled over its seeds too; a seed-free
    side is used with every seed of the other.

    Raises:
        UserInputError: an empty mapping, a value that is not a pair, bad outcomes (as
            `paired_difference`), an unknown method, n_boot or n_perm < 100, a negative seed, confidence
            outside (0, 1).
    """
    if not isinstance(targets, Mapping) or not targets:
        raise UserInputError("targets must be a non-empty mapping target name -> (a, b)")
    if method not in ("seed_mean", "two_level"):
        raise UserInputError(f"method must be 'seed_mean' or 'two_level', got {method!r}")
    n_boot, n_perm = check_count(n_boot, "n_boot", 100), check_count(n_perm, "n_perm", 100)
    seed, confidence = check_seed(seed), check_confidence(confidence)
    pairs = {str(name): _target_pair(str(name), pair) for name, pair in targets.items()}
    # the targets whose seeds are resampled: several seeds on either side, and two_level asked for
    resampled = {name: method == "two_level" and max(a.shape[0], b.shape[0]) > 1 for name, (a, b) in pairs.items()}

    per_target = {
        name: summarise(a, b, method="two_level" if resampled[name] else
                        "examples" if a.shape[0] == b.shape[0] == 1 else "seed_mean",
                        n_boot=n_boot, n_perm=n_perm, seed=seed, confidence=confidence)
        for name, (a, b) in pairs.items()
    }
    diffs = {name: a.mean(axis=0) - b.mean(axis=0) for name, (a, b) in pairs.items()}  # name -> (n_t,)
    n_targets = len(pairs)
    boot_seq, flip_seq = np.random.SeedSequence(seed).spawn(2)
    replicates = np.zeros(n_boot)
    for (name, (a, b)), stream in zip(pairs.items(), boot_seq.spawn(n_targets), strict=True):
        rng = np.random.default_rng(stream)
        draw = two_level_means(a, b, n_boot, rng) if resampled[name] else bootstrap_means(diffs[name], n_boot, rng)
        replicates += draw / n_targets
    if any(resampled.values()):
        p_value, test = bootstrap_p_value(replicates), "bootstrap"
    else:
        p_value = sign_flip_p_value(list(diffs.values()), [1.0 / (n_targets * d.size) for d in diffs.values()],
                                    n_perm, np.random.default_rng(flip_seq))
        test = "sign_flip"

    effects = list(per_target.values())
    diff = float(np.mean([e.diff for e in effects])) + 0.0
    without = {} if n_targets == 1 else {
        name: (n_targets * diff - e.diff) / (n_targets - 1) for name, e in per_target.items()
    }
    factor = mde_factor(1.0 - confidence)
    # each target's null SE is its MDE over the same factor (seed terms included where resampled)
    se_null = math.sqrt(sum((e.mde / factor) ** 2 for e in effects)) / n_targets
    low, high = percentile_interval(replicates, confidence)
    return PooledEffect(
        mean_a=float(np.mean([e.mean_a for e in effects])), mean_b=float(np.mean([e.mean_b for e in effects])),
        diff=diff, se=math.sqrt(sum(e.se**2 for e in effects)) / n_targets, ci_low=low, ci_high=high,
        confidence=confidence, p_value=p_value, test=test, mde=factor * se_null,
        n=sum(e.n for e in effects), n_targets=n_targets, per_target=per_target, without_target=without,
        seed=seed, n_boot=n_boot, n_perm=n_perm, notes=_driven_by(diff, without),
    )
