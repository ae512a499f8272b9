"""Paired comparison of two configurations A and B scored on the same examples.

Convention: a[i] and b[i] are the outcomes (0/1 for accuracy, or a real score) of A and B on
example i, in the same order; d[i] = a[i] - b[i]. Every result is about mean(d) = acc_A - acc_B:
positive means A is better.

- Interval: paired percentile bootstrap over examples (the same resampled indices for A and B),
  `n_boot` replicates from `numpy.random.default_rng(seed)`; the seed is recorded in the result.
- Test: for 0/1 outcomes McNemar's exact test, the two-sided binomial test of n10 against
  n10 + n01 with p = 1/2 (ties carry no information about the sign). Otherwise (real-valued scores,
  or 0/1 outcomes averaged over seeds) the sign-flip test of mean(d) (`sign_flip_p_value`: exact
  up to 12 non-zero differences, else `n_perm` random flips). It has the same null as McNemar's
  (A and B exchangeable on each example) and, unlike the sign test on #{d > 0} vs #{d < 0}, it tests
  the mean, the quantity the interval is about: averaged over 3 seeds, 0/1 outcomes give
  differences such as +1/3 and -2/3, and counting signs throws that size away.
- SE: sd(d, ddof=1) / sqrt(n).
- MDE: the effect detectable with 80% power by a two-sided test at alpha = 1 - confidence,
  (z_(1-alpha/2) + z_0.8) * SE_0 (2.80 * SE_0 at 95%), where SE_0 = sqrt(sum(d_i^2)) / n is the SE of
  mean(d) under the null (each d_i equally likely +d_i or -d_i). For 0/1 outcomes that is
  sqrt((n10 + n01) / n^2); unlike sd(d) it does not vanish when every difference has the same sign.
  Two-level results add the seed terms var_s(per-seed mean) / n_seeds of A and of B to SE^2 and
  SE_0^2 (an approximation that counts some example noise twice, so it errs on the large side).

Seeds (`paired_difference_seeds`): outcomes as (n_seeds, n), one row per trained model. With
method="seed_mean" (default) d_i is averaged over seeds first (mean of A's seeds minus mean of B's),
then the examples are bootstrapped and the sign-flip test applied to the averaged d_i: the
interval treats the trained models as fixed and is about these seeds. method="two_level" also
resamples seeds (A's and B's independently: seed s of A and seed s of B are unrelated models), so
the interval includes seed-to-seed variation; its p-value is then the bootstrap's (see
`loralab.stats._resample.bootstrap_p_value`). With 2 seeds the seed spread cannot be estimated
well (resampling 2 seeds sees about half of it): results say so in `notes`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike

from loralab.errors import UserInputError
from loralab.stats._checks import (
    as_outcomes,
    as_outcomes_by_seed,
    check_confidence,
    check_count,
    check_same_n,
    check_seed,
)
from loralab.stats._resample import (
    bootstrap_means,
    bootstrap_p_value,
    mcnemar_p_value,
    mde_factor,
    percentile_interval,
    sign_flip_p_value,
    two_level_means,
)

__all__ = ["PairedEffect", "paired_difference", "paired_difference_seeds"]

SeedMethod = Literal["seed_mean", "two_level"]
TEST_NAMES = {"mcnemar": "McNemar", "sign_flip": "sign-flip", "bootstrap": "bootstrap"}


@dataclass(frozen=True)
class PairedEffect:
    """mean(a) - mean(b) on the same examples, with its interval, test and power.

    Attributes:
        mean_a, mean_b: mean outcome of A and of B (over seeds and examples).
        diff: mean(d), d_i = a_i - b_i (seed-averaged per example when there are seeds).
        se: standard error of `diff` (see the module docstring; two-level adds the seed terms).
        ci_low, ci_high: percentile bootstrap interval at `confidence`.
        p_value: two-sided p-value of the test named by `test` ("mcnemar", "sign_flip" or "bootstrap").
        mde: minimal detectable effect at 80% power, two-sided alpha = 1 - confidence.
        n: number of examples. n10, n01: for 0/1 outcomes the discordant counts (A right and B
            wrong, and the reverse); in general the numbers of examples with d_i > 0 and d_i < 0.
        n_seeds_a, n_seeds_b: seeds behind A and B (1 for a single run or a seed-free baseline).
        method: "examples" (one run each), "seed_mean" or "two_level".
        seed, n_boot, n_perm: the RNG seed, bootstrap replicates and sign-flip draws (n_perm is
            recorded but unused when the test is McNemar's or the bootstrap's).
        notes: caveats a report should repeat (for example "2 seeds: ...").
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
    n10: int
    n01: int
    n_seeds_a: int
    n_seeds_b: int
    method: str
    seed: int
    n_boot: int
    n_perm: int
    notes: tuple[str, ...] = ()

    @property
    def test_name(self) -> str:
        """The test's display name ("McNemar", "sign-flip", "bootstrap")."""
        return TEST_NAMES.get(self.test, self.test)


def paired_difference(
    a: ArrayLike, b: ArrayLike, *, n_boot: int = 10_000, n_perm: int = 10_000, seed: int = 0,
    confidence: float = 0.95,
) -> PairedEffect:
    """Compare A and B scored on the same n examples, in the same order. a, b: shape (n,), n >= 2.

    Raises:
        UserInputError: a or b not 1-D numbers, non-finite, fewer than 2 examples or of different
            lengths; n_boot or n_perm < 100; a negative seed; confidence outside (0, 1).
    """
    a_arr, b_arr = as_outcomes(a, "a"), as_outcomes(b, "b")
    check_same_n(a_arr.size, b_arr.size, "a", "b")
    return summarise(
        a_arr[None, :], b_arr[None, :], method="examples", n_boot=check_count(n_boot, "n_boot", 100),
        n_perm=check_count(n_perm, "n_perm", 100), seed=check_seed(seed), confidence=check_confidence(confidence),
    )


def paired_difference_seeds(
    a_by_seed: ArrayLike | Mapping[Any, ArrayLike],
    b_by_seed: ArrayLike | Mapping[Any, ArrayLike],
    *,
    method: SeedMethod = "seed_mean",
    n_boot: int = 10_000,
    n_perm: int = 10_000,
    seed: int = 0,
    confidence: float = 0.95,
) -> PairedEffect:
    """Compare A and B when either was trained with several seeds, all scored on the same n examples.

    Args:
        a_by_seed, b_by_seed: (n_seeds, n) arrays, mappings seed -> (n,) array, or a plain (n,) array
            for a seed-free configuration (the base model), which is used with every seed of the other.
        method: "seed_mean" (average d_i over seeds, bootstrap examples) or "two_level" (resample
            seeds and examples; needs 2 or more seeds on at least one side).

    Raises:
        UserInputError: bad shapes or values (as `paired_difference`), an unknown method, or
            method="two_level" without several seeds.
    """
    a_mat, b_mat = as_outcomes_by_seed(a_by_seed, "a_by_seed"), as_outcomes_by_seed(b_by_seed, "b_by_seed")
    check_same_n(a_mat.shape[1], b_mat.shape[1], "a_by_seed", "b_by_seed")
    if method not in ("seed_mean", "two_level"):
        raise UserInputError(f"method must be 'seed_mean' or 'two_level', got {method!r}")
    if method == "two_level" and a_mat.shape[0] == 1 and b_mat.shape[0] == 1:
        raise UserInputError("method='two_level' resamples seeds, but a_by_seed and b_by_seed have 1 seed each")
    return summarise(
        a_mat, b_mat, method=method, n_boot=check_count(n_boot, "n_boot", 100),
        n_perm=check_count(n_perm, "n_perm", 100), seed=check_seed(seed), confidence=check_confidence(confidence),
    )


def _is_binary(x: np.ndarray) -> bool:
    return bool(np.all((x == 0) | (x == 1)))


def _seed_variance(x: np.ndarray) -> float:
    """Variance of the mean over seeds of the per-seed accuracies: var_s(mean_i x[s, i]) / S (0 for one seed)."""
    return float(np.var(x.mean(axis=1), ddof=1) / x.shape[0]) if x.shape[0] > 1 else 0.0


def _seed_notes(a: np.ndarray, b: np.ndarray, method: str) -> tuple[str, ...]:
    notes = []
    for side, x in (("A", a), ("B", b)):
        if x.shape[0] == 2:
            notes.append(f"{side} has 2 seeds: the seed-to-seed spread is not estimated well")
    if method == "seed_mean" and max(a.shape[0], b.shape[0]) > 1:
        notes.append("seeds are averaged per example and only examples resampled: the interval is about these "
                     "trained models, not the spread between seeds (method='two_level' includes it)")
    return tuple(notes)


def summarise(
    a: np.ndarray, b: np.ndarray, *, method: str, n_boot: int, n_perm: int, seed: int, confidence: float
) -> PairedEffect:
    """The estimator behind both public functions, on checked inputs. a: (S_a, n), b: (S_b, n)."""
    d = a.mean(axis=0) - b.mean(axis=0)  # (n,): per-example difference, seed-averaged
    n = d.size
    n_pos, n_neg = int((d > 0).sum()), int((d < 0).sum())
    boot_seq, flip_seq = np.random.SeedSequence(seed).spawn(2)  # independent streams for the two draws
    rng = np.random.default_rng(boot_seq)
    se_null2 = float(np.sum(d * d)) / n**2
    se2 = float(np.var(d, ddof=1)) / n
    if method == "two_level":
        replicates = two_level_means(a, b, n_boot, rng)
        p_value, test = bootstrap_p_value(replicates), "bootstrap"
        seed_terms = _seed_variance(a) + _seed_variance(b)
        se2, se_null2 = se2 + seed_terms, se_null2 + seed_terms
    else:
        replicates = bootstrap_means(d, n_boot, rng)
        if a.shape[0] == 1 and b.shape[0] == 1 and _is_binary(a) and _is_binary(b):
            p_value, test = mcnemar_p_value(n_pos, n_neg), "mcnemar"
        else:
            p_value = sign_flip_p_value([d], [1.0 / n], n_perm, np.random.default_rng(flip_seq))
            test = "sign_flip"
    low, high = percentile_interval(replicates, confidence)
    return PairedEffect(
        mean_a=float(a.mean()), mean_b=float(b.mean()), diff=float(d.mean()) + 0.0, se=math.sqrt(se2),
        ci_low=low, ci_high=high, confidence=confidence, p_value=p_value, test=test,
        mde=mde_factor(1.0 - confidence) * math.sqrt(se_null2), n=n, n10=n_pos, n01=n_neg,
        n_seeds_a=a.shape[0], n_seeds_b=b.shape[0], method=method, seed=seed, n_boot=n_boot, n_perm=n_perm,
        notes=_seed_notes(a, b, method),
    )
