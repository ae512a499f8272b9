"""Paired statistics for comparing configurations on the same test examples.

A bottom-layer component (numpy and scipy only, no other part of loralab besides `loralab.errors`):
paired differences with bootstrap intervals and exact tests, seeds, pooling over targets, Holm's
correction and verdicts. Conventions and choices (which test, which interval, how Holm and the
interval combine) are in each module's docstring.

    effect = paired_difference(correct_a, correct_b)        # 0/1 per question, same order
    format_effect(effect)  # "+0.034 [+0.010, +0.058], p=0.004 (McNemar, n=400)"
    verdict(effect, claimed_direction=+1).label              # "supported" / "contradicted" / "inconclusive"
"""

from loralab.stats.multiple import HolmResult, holm
from loralab.stats.paired import PairedEffect, paired_difference, paired_difference_seeds
from loralab.stats.pooled import PooledEffect, pooled_difference
from loralab.stats.verdict import Effect, Verdict, format_effect, verdict, verdict_family

__all__ = [
    "Effect",
    "HolmResult",
    "PairedEffect",
    "PooledEffect",
    "Verdict",
    "format_effect",
    "holm",
    "paired_difference",
    "paired_difference_seeds",
    "pooled_difference",
    "verdict",
    "verdict_family",
]
