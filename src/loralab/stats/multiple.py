"""Family-wise error control for several claims: Holm's (1979) step-down procedure."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass

from loralab.errors import UserInputError
from loralab.stats._checks import check_confidence

__all__ = ["HolmResult", "holm"]


@dataclass(frozen=True)
class HolmResult:
    """Holm-adjusted p-values and decisions, both in the input order.

    `reject[i]` is `adjusted[i] <= alpha`, which is the step-down rule: sort the m p-values and reject
    p_(k) while p_(k) <= alpha / (m - k + 1).
    """

    adjusted: tuple[float, ...]
    reject: tuple[bool, ...]
    alpha: float


def holm(p_values: Sequence[float], alpha: float = 0.05) -> HolmResult:
    """Holm step-down adjustment of m p-values, controlling the family-wise error rate at `alpha`.

    adjusted p_(k) = max_{j <= k} min(1, (m - j + 1) * p_(j)) over the sorted p-values, so that equal
    p-values get equal adjusted values whatever their order. An empty family gives empty results.

    Raises:
        UserInputError: a p-value that is not a number in [0, 1]; alpha outside (0, 1).
    """
    alpha = check_confidence(alpha, "alpha")
    values: list[float] = []
    for i, p in enumerate(p_values):
        if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0.0 <= float(p) <= 1.0:
            raise UserInputError(f"p_values[{i}] must be a number in [0, 1], got {p!r}")
        values.append(float(p))
    m = len(values)
    order = sorted(range(m), key=values.__getitem__)
    adjusted = [0.0] * m
    running = 0.0
    for k, i in enumerate(order):  # k = 0 is the smallest p-value, multiplied by m
        running = max(running, min(1.0, (m - k) * values[i]))
        adjusted[i] = running
    return HolmResult(tuple(adjusted), tuple(p <= alpha for p in adjusted), alpha)
