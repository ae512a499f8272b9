"""loralab.stats: hand cases, brute-force enumerations, argument errors, determinism, Holm, verdicts."""

from __future__ import annotations

import itertools
import math
from collections import Counter
from statistics import NormalDist

import numpy as np
import pytest

from loralab.errors import UserInputError
from loralab.stats import (
    format_effect,
    holm,
    paired_difference,
    paired_difference_seeds,
    pooled_difference,
    verdict,
    verdict_family,
)
from loralab.stats._resample import bootstrap_means, mcnemar_p_value, sign_flip_p_value, two_level_means

Z_SUM = NormalDist().inv_cdf(0.975) + NormalDist().inv_cdf(0.8)  # 2.8016


def binary(n10: int, n01: int, n11: int = 0, n00: int = 0) -> tuple[list[int], list[int]]:
    """Outcomes with the given cell counts of the 2x2 table (A right/wrong x B right/wrong)."""
    a = [1] * n10 + [0] * n01 + [1] * n11 + [0] * n00
    b = [0] * n10 + [1] * n01 + [1] * n11 + [0] * n00
    return a, b


def binom_two_sided(k: int, m: int) -> float:
    """Independent reference: sum of the Binomial(m, 1/2) probabilities no larger than that of k."""
    probs = [math.comb(m, i) / 2**m for i in range(m + 1)]
    return min(1.0, sum(p for p in probs if p <= probs[k] * (1 + 1e-9)))


# --- paired_difference: hand cases ---------------------------------------------------------------


def test_all_ties_give_a_zero_interval_and_p_one() -> None:
    e = paired_difference([1, 0, 1, 1, 0], [1, 0, 1, 1, 0])
    assert (e.ci_low, e.ci_high, e.diff, e.p_value) == (0.0, 0.0, 0.0, 1.0)
    assert (e.n10, e.n01, e.test, e.n) == (0, 0, "mcnemar", 5)


def test_ten_discordant_pairs_one_way() -> None:
    e = paired_difference(*binary(10, 0, n11=3, n00=7))
    assert e.p_value == pytest.approx(2 * 0.5**10, rel=1e-12)
    assert (e.n10, e.n01, e.n) == (10, 0, 20)
    assert e.diff == pytest.approx(0.5)


def test_all_discordant_same_way() -> None:
    e = paired_difference([1] * 10, [0] * 10)
    assert (e.ci_low, e.ci_high, e.diff, e.se) == (1.0, 1.0, 1.0, 0.0)
    # The MDE uses the null SE sqrt(n10 + n01) / n, which does not vanish with sd(d).
    assert e.mde == pytest.approx(Z_SUM * math.sqrt(10) / 10)


def test_means_se_and_mde_by_hand() -> None:
    e = paired_difference([1, 0, 1, 1], [0, 0, 1, 0])  # d = [1, 0, 0, 1]
    assert (e.mean_a, e.mean_b, e.diff) == (0.75, 0.25, 0.5)
    assert e.se == pytest.approx(math.sqrt(1 / 3) / 2)  # sd(d, ddof=1) = sqrt(1/3), n = 4
    assert e.mde == pytest.approx(Z_SUM * math.sqrt(2) / 4)
    assert e.p_value == pytest.approx(0.5)  # n10 = 2, n01 = 0


@pytest.mark.parametrize("n10, n01", [(0, 1), (3, 3), (7, 2), (2, 7), (15, 4), (40, 25), (1, 60)])
def test_mcnemar_matches_an_enumeration(n10: int, n01: int) -> None:
    assert mcnemar_p_value(n10, n01) == pytest.approx(binom_two_sided(n10, n10 + n01), rel=1e-9)
    assert paired_difference(*binary(n10, n01, n11=5)).p_value == pytest.approx(binom_two_sided(n10, n10 + n01))


def test_mcnemar_matches_scipy_binomtest() -> None:
    binomtest = pytest.importorskip("scipy.stats").binomtest
    for n10, n01 in [(4, 9), (120, 80), (500, 530), (0, 17)]:
        assert mcnemar_p_value(n10, n01) == pytest.approx(binomtest(n10, n10 + n01, 0.5).pvalue, rel=1e-9)


def test_real_scores_use_an_exact_sign_flip_for_few_differences() -> None:
    # d = [0.5, -0.2, 0.3], T = 0.6; of the 8 patterns, |±0.5 ±0.2 ±0.3| >= 0.6 for 1.0, 0.6, -0.6, -1.0.
    e = paired_difference([0.5, 0.0, 0.3], [0.0, 0.2, 0.0])
    assert e.test == "sign_flip"
    assert e.p_value == pytest.approx(0.5)
    assert (e.n10, e.n01) == (2, 1)


def test_monte_carlo_sign_flip_agrees_with_enumeration() -> None:
    d = np.random.default_rng(3).normal(0.3, 1.0, 14)  # 14 > 12 non-zero: Monte Carlo
    observed = abs(d.sum())
    exact = np.mean([abs(np.dot(s, d)) >= observed - 1e-12 for s in itertools.product((-1, 1), repeat=d.size)])
    approx = sign_flip_p_value([d], [1.0], 40_000, np.random.default_rng(0))
    assert approx == pytest.approx(exact, abs=0.01)


def test_bootstrap_resamples_examples_with_replacement() -> None:
    # Every one of the 3^3 index triples is equally likely: compare the replicate frequencies.
    d = np.array([0.0, 1.0, 3.0])
    exact = Counter(round(float(np.mean(d[list(t)])), 9) for t in itertools.product(range(3), repeat=3))
    replicates = bootstrap_means(d, 54_000, np.random.default_rng(1))
    seen = Counter(np.round(replicates, 9).tolist())
    assert set(seen) == set(exact)
    for value, count in exact.items():
        assert seen[value] / replicates.size == pytest.approx(count / 27, abs=0.01)


def test_few_distinct_values_take_the_multinomial_path_with_the_same_distribution() -> None:
    d = np.array([1.0] * 30 + [-1.0] * 10 + [0.0] * 60)  # 3 values in 100 examples
    replicates = bootstrap_means(d, 20_000, np.random.default_rng(2))
    assert replicates.mean() == pytest.approx(0.2, abs=0.005)
    assert replicates.std() == pytest.approx(d.std() / 10, rel=0.03)  # bootstrap SE: sd(d, ddof=0) / sqrt(n)


def test_a_and_b_share_the_resampled_indices() -> None:
    a = np.random.default_rng(5).normal(size=300)
    e = paired_difference(a, a - 0.1)  # every d_i = 0.1: only unpaired resampling would widen it
    assert e.ci_low == pytest.approx(0.1) and e.ci_high == pytest.approx(0.1)


# --- seeds ----------------------------------------------------------------------------------------


def test_one_seed_equals_the_plain_comparison() -> None:
    a, b = binary(12, 5, n11=20, n00=13)
    plain = paired_difference(a, b, seed=4)
    seeded = paired_difference_seeds([a], b, seed=4)
    assert (seeded.ci_low, seeded.ci_high, seeded.p_value, seeded.test) == (
        plain.ci_low, plain.ci_high, plain.p_value, plain.test)


def test_seed_free_side_is_broadcast_and_mappings_equal_arrays() -> None:
    rng = np.random.default_rng(0)
    a = (rng.random((3, 40)) < 0.6).astype(int)
    b = (rng.random(40) < 0.5).astype(int)
    e = paired_difference_seeds(a, b)
    assert e.diff == pytest.approx(a.mean() - b.mean())
    assert (e.n_seeds_a, e.n_seeds_b, e.method, e.test) == (3, 1, "seed_mean", "sign_flip")
    assert paired_difference_seeds({10: a[0], 11: a[1], 12: a[2]}, b) == e
    assert any("two_level" in note for note in e.notes)


def test_two_level_bootstrap_matches_an_enumeration() -> None:
    a = np.array([[1.0, 0.0], [1.0, 1.0]])  # 2 seeds x 2 examples
    b = np.zeros((1, 2))
    exact = Counter()
    for idx in itertools.product(range(2), repeat=2):
        for seeds in itertools.product(range(2), repeat=2):
            exact[round(float(a[list(seeds)][:, list(idx)].mean()), 9)] += 1
    replicates = two_level_means(a, b, 48_000, np.random.default_rng(0))
    seen = Counter(np.round(replicates, 9).tolist())
    assert set(seen) == set(exact)
    for value, count in exact.items():
        assert seen[value] / replicates.size == pytest.approx(count / 16, abs=0.01)


def test_two_level_multinomial_path_matches_the_exact_distribution() -> None:
    # 16 examples of two kinds (8 each): resampling picks K ~ Binomial(16, 1/2) of the first kind.
    first, second = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])  # (seed 0 of A, seed 1 of A, B)
    x = np.repeat(np.stack([first, second], axis=1), 8, axis=1)  # (3, 16)
    exact: Counter[float] = Counter()
    for k in range(17):
        per_seed = (k * first + (16 - k) * second) / 16
        for seeds in itertools.product(range(2), repeat=2):
            value = per_seed[list(seeds)].mean() - per_seed[2]
            exact[round(float(value), 9)] += math.comb(16, k) / 2**16 / 4
    replicates = two_level_means(x[:2], x[2:], 40_000, np.random.default_rng(3))
    seen = Counter(np.round(replicates, 9).tolist())
    assert set(seen) <= set(exact)
    for value, prob in exact.items():
        assert seen[value] / replicates.size == pytest.approx(prob, abs=0.01)


def test_two_level_with_two_seeds_says_the_spread_is_poorly_estimated() -> None:
    rng = np.random.default_rng(1)
    e = paired_difference_seeds(rng.random((2, 50)) < 0.6, rng.random(50) < 0.5, method="two_level", n_boot=500)
    assert e.test == "bootstrap" and e.method == "two_level"
    assert any("2 seeds" in note for note in e.notes)
    assert 1 / 501 <= e.p_value <= 1.0


# --- pooled ---------------------------------------------------------------------------------------


def test_pooled_is_the_mean_of_per_target_differences() -> None:
    big = binary(0, 0, n11=50, n00=50)  # diff 0 on 100 examples
    small = binary(6, 1, n11=2, n00=1)  # diff 0.5 on 10 examples
    p = pooled_difference({"big": big, "small": small}, n_boot=500, n_perm=500)
    assert p.diff == pytest.approx(0.25)  # pooling the 110 questions as one task would give 5/110
    assert (p.n, p.n_targets) == (110, 2)
    assert p.per_target["small"] == paired_difference(*small, n_boot=500, n_perm=500)
    assert p.without_target == pytest.approx({"big": 0.5, "small": 0.0})
    assert any("driven by 'small'" in note for note in p.notes)


def test_pooled_bootstrap_is_stratified() -> None:
    # Target x: every d = 1; target y: every d = 0. Within-target resampling always gives 0.5.
    p = pooled_difference({"x": ([1] * 5, [0] * 5), "y": ([1] * 9, [1] * 9)}, n_boot=500, n_perm=500)
    assert (p.ci_low, p.ci_high) == (0.5, 0.5)


def test_pooled_all_ties() -> None:
    p = pooled_difference({"x": ([1, 0, 1], [1, 0, 1]), "y": ([0, 0], [0, 0])}, n_boot=200, n_perm=200)
    assert (p.diff, p.ci_low, p.ci_high, p.p_value) == (0.0, 0.0, 0.0, 1.0)


def test_pooled_exact_sign_flip_weighs_targets_by_their_size() -> None:
    x, y = ([1, 1, 0, 1], [0, 0, 0, 1]), ([0, 1, 1, 1, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0, 0, 0])
    d = [1 / (2 * 4)] * 2 + [-1 / (2 * 8)] + [1 / (2 * 8)] * 4  # non-zero d_ti / (T * n_t)
    exact = np.mean([abs(np.dot(s, d)) >= abs(sum(d)) - 1e-12 for s in itertools.product((-1, 1), repeat=7)])
    assert pooled_difference({"x": x, "y": y}, n_boot=200, n_perm=200).p_value == pytest.approx(exact)


def test_pooled_with_one_target_is_mcnemar() -> None:
    a, b = binary(30, 14, n11=40, n00=16)
    p = pooled_difference({"only": (a, b)}, n_boot=500, n_perm=40_000)
    assert p.p_value == pytest.approx(binom_two_sided(30, 44), abs=0.005)
    assert p.without_target == {} and p.notes == ()


# --- argument errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, needle",
    [
        (lambda: paired_difference([1, 0, 1], [1, 0]), "b has 2 examples but a has 3"),
        (lambda: paired_difference([], []), "a has 0 example"),
        (lambda: paired_difference([1, float("nan"), 0], [1, 1, 0]), "a[1] is nan"),
        (lambda: paired_difference([1, 0], [1, float("inf")]), "b[1] is inf"),
        (lambda: paired_difference(["x", 1], [1, 0]), "a must be a sequence of numbers"),
        (lambda: paired_difference("10", [1, 0]), "a must be a sequence of numbers"),
        (lambda: paired_difference([[1, 0]], [1, 0]), "a must be one value per example"),
        (lambda: paired_difference([1, 0], [1, 0], n_boot=10), "n_boot must be an integer >= 100"),
        (lambda: paired_difference([1, 0], [1, 0], n_boot=True), "n_boot must be"),
        (lambda: paired_difference([1, 0], [1, 0], n_perm=5), "n_perm must be"),
        (lambda: paired_difference([1, 0], [1, 0], seed=-1), "seed must be a non-negative integer"),
        (lambda: paired_difference([1, 0], [1, 0], confidence=1.0), "confidence must be"),
        (lambda: paired_difference([1, 0], [1, 0], confidence=float("nan")), "confidence must be"),
        (lambda: paired_difference_seeds({0: [1, 0, 1], 1: [1, 0]}, [1, 0, 1]), "a_by_seed[1] has 2 values"),
        (lambda: paired_difference_seeds({}, [1, 0]), "a_by_seed is an empty mapping"),
        (lambda: paired_difference_seeds([[1, 0]], [[1, 0, 1]]), "b_by_seed has 3 examples but a_by_seed has 2"),
        (lambda: paired_difference_seeds([[1, 0]], [1, 0], method="mean"), "method must be"),
        (lambda: paired_difference_seeds([[1, 0]], [1, 0], method="two_level"), "1 seed each"),
        (lambda: pooled_difference({}), "targets must be a non-empty mapping"),
        (lambda: pooled_difference({"x": [1, 0, 1]}), "targets['x'] must be a pair"),
        (lambda: pooled_difference({"x": ([1, 0], [1, 0, 1])}), "targets['x'].b has 3 examples"),
        (lambda: holm([0.1, 1.5]), "p_values[1] must be a number in [0, 1]"),
        (lambda: holm([float("nan")]), "p_values[0]"),
        (lambda: holm([0.1], alpha=0), "alpha must be"),
    ],
)
def test_bad_arguments_are_one_line_errors(call, needle: str) -> None:
    with pytest.raises(UserInputError) as info:
        call()
    assert needle in str(info.value) and "\n" not in str(info.value)


# --- determinism ----------------------------------------------------------------------------------


def test_same_seed_same_result_and_the_seed_is_recorded() -> None:
    rng = np.random.default_rng(9)
    a, b = rng.normal(size=(2, 80))
    first, again = paired_difference(a, b, seed=7, n_boot=2000), paired_difference(a, b, seed=7, n_boot=2000)
    assert first == again and (first.seed, first.n_boot) == (7, 2000)
    assert paired_difference(a, b, seed=8, n_boot=2000).ci_low != first.ci_low
    targets = {"x": (a, b), "y": (b, a[::-1])}
    assert pooled_difference(targets, seed=3, n_boot=500) == pooled_difference(targets, seed=3, n_boot=500)


# --- Holm -----------------------------------------------------------------------------------------


def test_holm_hand_case() -> None:
    # Sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 -> max(0.06, 0.04) = 0.06.
    result = holm([0.01, 0.04, 0.03, 0.005], alpha=0.05)
    assert result.adjusted == pytest.approx((0.03, 0.06, 0.06, 0.02))
    assert result.reject == (True, False, False, True)
    assert holm([]).adjusted == ()


def test_holm_equals_closed_testing_with_bonferroni() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        p = rng.uniform(0, 0.2, size=int(rng.integers(1, 7))).tolist()
        m = len(p)
        closed = [
            max(min(1.0, len(s) * min(p[j] for j in s))
                for r in range(1, m + 1) for s in itertools.combinations(range(m), r) if i in s)
            for i in range(m)
        ]
        assert holm(p).adjusted == pytest.approx(closed)


def test_holm_matches_statsmodels() -> None:
    multipletests = pytest.importorskip("statsmodels.stats.multitest").multipletests
    p = [0.001, 0.2, 0.011, 0.03, 0.04, 0.5]
    reject, adjusted, _, _ = multipletests(p, alpha=0.05, method="holm")
    assert holm(p).adjusted == pytest.approx(tuple(adjusted)) and holm(p).reject == tuple(reject)


# --- verdicts and formatting ----------------------------------------------------------------------


def test_verdict_labels() -> None:
    better = paired_difference(*binary(30, 5, n11=50, n00=15))
    assert verdict(better, +1).label == "supported"
    assert verdict(better, -1).label == "contradicted"
    unclear = paired_difference(*binary(12, 10, n11=50, n00=28))
    v = verdict(unclear, +1)
    assert v.label == "inconclusive" and v.mde == unclear.mde and "contains 0" in v.reason
    assert v.p_adjusted is None and v.family_size == 1 and v.alpha == 0.05


def test_interval_excluding_zero_without_a_significant_test_is_inconclusive() -> None:
    e = paired_difference([1] * 5, [0] * 5)  # interval [1, 1], McNemar p = 2 / 32 = 0.0625
    v = verdict(e, +1)
    assert v.label == "inconclusive" and "excludes 0 but p=0.0625" in v.reason


def test_holm_family_can_turn_supported_into_inconclusive() -> None:
    e = paired_difference(*binary(20, 7, n11=50, n00=23))
    assert e.p_value < 0.05 and e.ci_low > 0 and verdict(e).label == "supported"
    v = verdict(e, family=[e, 0.04, 0.03])
    assert v.p_adjusted == pytest.approx(min(1.0, 3 * e.p_value)) and v.label == "inconclusive"
    assert v.family_size == 3 and v.mde_family > v.mde
    table = verdict_family({"claim": e, "other": paired_difference(*binary(40, 2, n11=10))})
    assert table["claim"].family_size == 2 and table["other"].label == "supported"


def test_verdict_errors() -> None:
    e = paired_difference(*binary(20, 7, n11=50))
    for call, needle in [
        (lambda: verdict(e, 0), "claimed_direction must be +1"),
        (lambda: verdict(e, alpha=0.01), "alpha=0.01 does not match"),
        (lambda: verdict(e, family=[0.5, 0.2]), "family must include this result"),
        (lambda: verdict(e, family=[e, "x"]), "family[1] must be a result or a p-value"),
        (lambda: verdict_family({"a": e, "b": e}, {"a": 1}), "claimed_direction has no sign for 'b'"),
        (lambda: verdict_family({"a": e, "b": paired_difference([1, 0], [0, 0], confidence=0.9)}), "mix confidence"),
        (lambda: format_effect(e, digits=0), "digits must be an integer >= 1"),
    ]:
        with pytest.raises(UserInputError) as info:
            call()
        assert needle in str(info.value)


def test_format_effect() -> None:
    assert format_effect(paired_difference([1] * 10, [0] * 10)) == "+1.000 [+1.000, +1.000], p=0.002 (McNemar, n=10)"
    assert format_effect(paired_difference([1] * 12, [0] * 12)).endswith("p<0.001 (McNemar, n=12)")
    assert format_effect(paired_difference([0, 1], [0, 1])) == "+0.000 [+0.000, +0.000], p=1.000 (McNemar, n=2)"
    seeds = paired_difference_seeds([[1, 0, 1], [1, 1, 1]], [0, 0, 1])
    assert format_effect(seeds).endswith("(sign-flip, n=3, seeds 2 vs 1, seed-mean)")
    pooled = pooled_difference({"x": ([1, 0], [0, 0]), "y": ([1, 1, 0], [1, 0, 0])}, n_boot=200, n_perm=200)
    assert format_effect(pooled, digits=2).endswith("(sign-flip, 2 targets, n=5)")


def test_pooled_two_level_without_seeds_is_the_seed_mean_result() -> None:
    """Two-level resamples seeds only where a side has several; targets of one seed a side are unchanged."""
    targets = {"big": binary(3, 1, n11=50, n00=46), "small": binary(6, 1, n11=2, n00=1)}
    plain = pooled_difference(targets, n_boot=500, n_perm=500)
    assert pooled_difference(targets, method="two_level", n_boot=500, n_perm=500) == plain


def test_pooled_two_level_per_target_effects_and_a_wider_interval() -> None:
    rng = np.random.default_rng(3)
    a = {"x": (rng.random((2, 80)) < np.array([[0.9], [0.3]])).astype(float),  # two very different seeds
         "y": (rng.random((2, 60)) < 0.6).astype(float)}
    targets = {t: (a[t], (rng.random(a[t].shape[1]) < 0.5).astype(float)) for t in a}
    seed_mean = pooled_difference(targets, n_boot=2000, n_perm=500)
    two_level = pooled_difference(targets, method="two_level", n_boot=2000, n_perm=500)
    assert two_level.diff == seed_mean.diff and two_level.test == "bootstrap"
    for t, (ta, tb) in targets.items():
        assert two_level.per_target[t] == paired_difference_seeds(ta, tb, method="two_level", n_boot=2000,
                                                                  n_perm=500)
    assert two_level.ci_high - two_level.ci_low > seed_mean.ci_high - seed_mean.ci_low
    assert two_level.mde > seed_mean.mde


def test_pooled_unknown_method_is_one_line() -> None:
    with pytest.raises(UserInputError, match="method must be 'seed_mean' or 'two_level', got 'nope'"):
        pooled_difference({"x": binary(1, 1, n11=1, n00=1)}, method="nope")  # type: ignore[arg-type]
