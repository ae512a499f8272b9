"""Argument checks for `loralab.stats`: every bad argument is one `UserInputError` naming the parameter."""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np

from loralab.errors import UserInputError

__all__ = ["as_outcomes", "as_outcomes_by_seed", "check_confidence", "check_count", "check_same_n", "check_seed"]


def _to_float_array(values: Any, name: str) -> np.ndarray:
    if isinstance(values, (str, bytes)):
        raise UserInputError(f"{name} must be a sequence of numbers (0/1 or scores), got the string {values!r}")
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:  # strings, None inside, ragged nesting
        raise UserInputError(f"{name} must be a sequence of numbers (0/1 or scores): {exc}") from None
    return array


def _check_finite(array: np.ndarray, name: str) -> None:
    bad = np.argwhere(~np.isfinite(array))
    if bad.size:
        where = ", ".join(str(int(i)) for i in bad[0])
        raise UserInputError(f"{name}[{where}] is {array[tuple(bad[0])]}: outcomes must be finite numbers")


def as_outcomes(values: Any, name: str) -> np.ndarray:
    """Per-example outcomes as a float64 array of shape (n,), n >= 2, all finite."""
    array = _to_float_array(values, name)
    if array.ndim != 1:
        raise UserInputError(f"{name} must be one value per example (1-D), got an array of shape {array.shape}")
    if array.size < 2:
        raise UserInputError(f"{name} has {array.size} example(s); a paired comparison needs at least 2")
    _check_finite(array, name)
    return array


def as_outcomes_by_seed(values: Any, name: str) -> np.ndarray:
    """Outcomes of one configuration as (n_seeds, n): a 2-D array, a mapping seed -> (n,), or one seed-free (n,).

    A 1-D input is one seed-free configuration (for example the base model) and becomes shape (1, n).
    A mapping keeps its insertion order (the order only fixes which random draws go to which seed).
    """
    if isinstance(values, Mapping):
        if not values:
            raise UserInputError(f"{name} is an empty mapping; give at least one seed's outcomes")
        rows = [as_outcomes(row, f"{name}[{key!r}]") for key, row in values.items()]
        first_key = next(iter(values))
        for key, row in zip(values, rows, strict=True):
            if row.size != rows[0].size:
                raise UserInputError(
                    f"{name}[{key!r}] has {row.size} values but {name}[{first_key!r}] has {rows[0].size}: "
                    "every seed must score the same examples"
                )
        return np.stack(rows)
    array = _to_float_array(values, name)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2:
        raise UserInputError(f"{name} must have shape (n_seeds, n) or (n,), got an array of shape {array.shape}")
    if array.shape[0] < 1 or array.shape[1] < 2:
        raise UserInputError(f"{name} has shape {array.shape}; it needs at least 1 seed and 2 examples")
    _check_finite(array, name)
    return array


def check_same_n(n_a: int, n_b: int, name_a: str, name_b: str) -> None:
    if n_a != n_b:
        raise UserInputError(
            f"{name_b} has {n_b} examples but {name_a} has {n_a}: both must score the same examples in the same order"
        )


def check_count(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise UserInputError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_seed(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise UserInputError(f"seed must be a non-negative integer, got {value!r}")
    return int(value)


def check_confidence(value: Any, name: str = "confidence") -> float:
    # `not (0 < x < 1)` also refuses NaN.
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (0.0 < float(value) < 1.0):
        raise UserInputError(f"{name} must be a number strictly between 0 and 1 (e.g. 0.95), got {value!r}")
    return float(value)
