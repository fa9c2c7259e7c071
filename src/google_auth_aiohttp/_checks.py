"""Checks of what callers pass: finite numbers, collections of statuses or methods."""

from __future__ import annotations

import math
import numbers
from collections.abc import Collection
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
    try:
        finite = math.isfinite(value)
    except OverflowError:  # an int too large for a float
        finite = False
    if not finite or value < 0:
        raise ValueError(f"{name} must be a finite number, 0 or more, not {value!r}.")
    return float(value)


def statuses(name: str, value: Any) -> frozenset[int]:
    """Return ``value``, a collection of HTTP statuses, as a frozenset.

    Raises:
        TypeError: If ``value`` is a str or bytes (``"401"`` would be the
            statuses 4, 0 and 1), not a collection, or holds anything but ints.
    """
    return frozenset(_collection(name, value, int, "HTTP statuses such as (401,)"))


def methods(name: str, value: Any) -> frozenset[str]:
    """Return ``value``, a collection of HTTP methods, upper-cased in a frozenset.

    Raises:
        TypeError: If ``value`` is a str (``"GET"`` would be the methods G, E
            and T), not a collection, or holds anything but strs.
    """
    found = _collection(name, value, str, 'HTTP methods such as ("GET",)')
    return frozenset(method.upper() for method in found)


def _collection(name: str, value: Any, kind: type, example: str) -> list[Any]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Collection):
        raise TypeError(
            f"{name} must be a collection of {example}, not "
            f"{type(value).__name__} {value!r}."
        )
    items = list(value)
    for item in items:
        if isinstance(item, bool) or not isinstance(item, kind):
            raise TypeError(
                f"{name} must hold {kind.__name__}s ({example}), not "
                f"{type(item).__name__} {item!r}."
            )
    return items
