"""Checks of the numbers callers pass: finite, and not negative."""

from __future__ import annotations

import math
import numbers
from typing import Any


def seconds(name: str, value: Any) -> float:
    """Return ``value`` if it is a finite number of 0 or more.

    NaN passes every ``< 0`` test and infinity every ``>= 0`` one: a deadline
    made of either fires at once or never, so both are refused here, before
    anything is sent.

    Args:
        name (str): The argument's name, for the error message.
        value (Any): What the caller passed.

    Returns:
        float: ``value``, unchanged.

    Raises:
        TypeError: If ``value`` is not a real number (bool included).
        ValueError: If it is NaN, infinite or negative.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, not {type(value).__name__}.")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number, 0 or more, not {value!r}.")
    return float(value)
