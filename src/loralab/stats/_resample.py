"""Resampling and test primitives shared by the paired and pooled estimators.

All take a `numpy.random.Generator` so that the caller owns the seed. The bootstraps draw in chunks
of at most `_CHUNK_ELEMENTS` index entries, so memory stays bounded (tens of MB) for any n and n_boot;
the chunk size depends only on the shapes, so a seed gives the same replicates on any machine
(with the same numpy version: numpy keeps its random streams stable only within a version).
"""

from __future__ import annotations

from statistics import NormalDist

import numpy as np
from scipy.special import bdtr

__all__ = [
    "bootstrap_means",
    "bootstrap_p_value",
    "mcnemar_p_value",
    "mde_factor",
    "percentile_interval",
    "sign_flip_p_value",
    "two_level_means",
]

_CHUNK_ELEMENTS = 1 << 22
DEFAULT_POWER = 0.8


def _chunks(total: int, per_item: int) -> list[tuple[int, int]]:
    step = max(1, _CHUNK_ELEMENTS // max(1, per_item))
    return [(start, min(start + step, total)) for start in range(0, total, step)]


def _resampled_row_means(x: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Each row's mean over `n_boot` resamples (with replacement) of the columns. x: (m, n) -> (n_boot, m).

    A column is one example (its outcomes under every seed), so all rows share each resample. When
    few columns are distinct (0/1 outcomes give at most 3 distinct differences), resampling n
    examples is drawing how many copies of each distinct column are picked, Multinomial(n, share of
    each): the same distribution, at a cost that does not grow with n. Otherwise explicit indices.
    """
    m, n = x.shape
    columns, counts = np.unique(x, axis=1, return_counts=True)  # (m, k), (k,)
    out = np.empty((n_boot, m))
    if columns.shape[1] * 8 <= n:
        for start, stop in _chunks(n_boot, columns.shape[1]):
            picked = rng.multinomial(n, counts / n, size=stop - start)  # (chunk, k)
            out[start:stop] = picked @ columns.T / n
        return out
    for start, stop in _chunks(n_boot, n * m):
        idx = rng.integers(0, n, size=(stop - start, n))  # (chunk, n): one row of example indices per replicate
        out[start:stop] = x[:, idx].mean(axis=2).T
    return out


def bootstrap_means(d: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Means of `n_boot` resamples (with replacement) of the examples. d: (n,) -> (n_boot,)."""
    return _resampled_row_means(d[None, :], n_boot, rng)[:, 0]


def _seed_weighted(means: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Average over a resample (with replacement) of the seeds. means: (n_boot, n_seeds) -> (n_boot,)."""
    n_boot, n_seeds = means.shape
    if n_seeds == 1:
        return means[:, 0]
    counts = rng.multinomial(n_seeds, np.full(n_seeds, 1.0 / n_seeds), size=n_boot)  # (n_boot, n_seeds)
    return (counts * means).sum(axis=1) / n_seeds


def two_level_means(a: np.ndarray, b: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Two-level bootstrap of mean(a) - mean(b): examples and seeds both resampled. a: (S_a, n), b: (S_b, n).

    Each replicate draws one resample of the examples, shared by A and B (the pairing), and,
    independently, a resample of A's seeds and of B's seeds (A's seed s and B's seed s are different
    models with nothing in common, so they are not paired). Returns (n_boot,).
    """
    means = _resampled_row_means(np.vstack([a, b]), n_boot, rng)  # (n_boot, S_a + S_b): per-seed means
    return _seed_weighted(means[:, : a.shape[0]], rng) - _seed_weighted(means[:, a.shape[0] :], rng)


def percentile_interval(replicates: np.ndarray, confidence: float) -> tuple[float, float]:
    low, high = np.quantile(replicates, [(1.0 - confidence) / 2.0, (1.0 + confidence) / 2.0])
    return float(low) + 0.0, float(high) + 0.0  # + 0.0 turns -0.0 into 0.0 for printing


def bootstrap_p_value(replicates: np.ndarray) -> float:
    """Two-sided p-value dual to the percentile interval: twice the smaller tail share of replicates beyond 0.

    Counted as (k + 1) / (n_boot + 1), so it is never 0 and its resolution is 1 / n_boot.
    """
    tail = min(int((replicates <= 0).sum()), int((replicates >= 0).sum()))
    return min(1.0, 2.0 * (tail + 1) / (replicates.size + 1))


def mcnemar_p_value(n10: int, n01: int) -> float:
    """McNemar's exact test: the two-sided binomial test of n10 successes in n10 + n01 trials with p = 1/2.

    Binomial(m, 1/2) is symmetric, so the two-sided p-value (`scipy.stats.binomtest`'s) is twice the
    smaller tail, capped at 1; `bdtr` computes that tail directly, about 100 times faster than binomtest.
    """
    m = n10 + n01
    if m == 0:
        return 1.0  # all ties: nothing speaks for either side
    return min(1.0, 2.0 * float(bdtr(min(n10, n01), m, 0.5)))


_EXACT_FLIPS = 12  # up to 2**12 sign patterns are enumerated exactly


def sign_flip_p_value(strata: list[np.ndarray], weights: list[float], n_perm: int, rng: np.random.Generator) -> float:
    """Two-sided sign-flip test of T = sum_t weights[t] * sum_i strata[t][i].

    Null hypothesis: on every example, the labels A and B are exchangeable, so each difference d_i is
    as likely to be +d_i as -d_i, independently. Flipping signs gives T's null distribution. With at
    most 12 non-zero differences in all, every sign pattern is enumerated and p = #{|T*| >= |T|} / 2^k
    is exact; otherwise p = (1 + #{|T*| >= |T|}) / (1 + n_perm) over random flips, a valid p-value for
    any n_perm. Within a stratum the flips of the c differences that share an absolute value v add up
    to v * (2 * Binomial(c, 1/2) - c), which is drawn directly: for 0/1 outcomes that is one binomial
    per stratum, and the test is the (stratified) McNemar test.
    """
    observed = sum(w * float(d.sum()) for d, w in zip(strata, weights, strict=True))
    scale = sum(w * float(np.abs(d).sum()) for d, w in zip(strata, weights, strict=True))
    tolerance = 1e-12 * scale  # equal |T*| and |T| can differ in the last bits (sums in another order)
    nonzero = np.concatenate([w * d[d != 0] for d, w in zip(strata, weights, strict=True)])  # (k,)
    if nonzero.size <= _EXACT_FLIPS:
        patterns = np.arange(2**nonzero.size)[:, None] >> np.arange(nonzero.size) & 1  # (2^k, k) of 0/1
        null = (2 * patterns - 1) @ nonzero
        return float(np.mean(np.abs(null) >= abs(observed) - tolerance))
    null = np.zeros(n_perm)
    for d, w in zip(strata, weights, strict=True):
        values, counts = np.unique(np.abs(d[d != 0]), return_counts=True)  # (k,), (k,)
        repeated, single = counts > 1, values[counts == 1]
        for start, stop in _chunks(int(repeated.sum()), n_perm):
            c, v = counts[repeated][start:stop], values[repeated][start:stop]
            heads = rng.binomial(c, 0.5, size=(n_perm, stop - start))  # (n_perm, block)
            null += w * ((2 * heads - c) @ v)
        # A value that occurs once (the usual case for real scores) needs one random bit, not a binomial.
        for start, stop in _chunks(single.size, n_perm):
            bits = rng.integers(0, 2, size=(n_perm, stop - start), dtype=np.int8)  # (n_perm, block)
            null += w * (2.0 * (bits @ single[start:stop]) - single[start:stop].sum())
    hits = int((np.abs(null) >= abs(observed) - tolerance).sum())
    return (1 + hits) / (1 + n_perm)


def mde_factor(alpha: float, power: float = DEFAULT_POWER) -> float:
    """z_(1 - alpha/2) + z_power: the minimal detectable effect is this times the SE (2.80 at 0.05 and 80%)."""
    normal = NormalDist()
    return normal.inv_cdf(1.0 - alpha / 2.0) + normal.inv_cdf(power)
