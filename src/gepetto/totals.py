"""Sums and means of scores that never overflow.

Scores are finite floats, but they may be huge: the sum of three scores of ``1e308``
overflows to ``inf`` (and ``inf - inf`` is ``nan``), which would turn a best score into
``inf`` and a result into non-standard JSON. Here every value is first scaled by
``2**-64``: the scaling is exact for any score above ``1e-288`` in magnitude, so sums and
means equal the plain ones bit for bit in every ordinary case, and a scaled sum of finite
values never overflows.

- :func:`mean` and :class:`RunningMean`: the mean of finite values is always finite.
- :func:`total` and :func:`weighted_total`: sums that saturate at ``±sys.float_info.max``
  instead of overflowing.

Example:
    >>> mean([1e308, 1e308, 1e308])
    1e+308
    >>> total([1e308, 1e308]) == sys.float_info.max
    True
    >>> total([0.5, 0.25])
    0.75
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable

__all__ = ["RunningMean", "mean", "total", "weighted_total"]

_SCALE = 2.0**-64
_UNSCALE = 2.0**64


def _saturated(scaled_sum: float) -> float:
    value = scaled_sum * _UNSCALE
    if math.isinf(value):
        return math.copysign(sys.float_info.max, value)
    return value


def total(values: Iterable[float]) -> float:
    """The sum of finite ``values``, saturated at ``±sys.float_info.max``."""
    return _saturated(sum(value * _SCALE for value in values))


def weighted_total(pairs: Iterable[tuple[float, float]]) -> float:
    """``sum(weight * value)`` over ``(weight, value)`` pairs of finite numbers, saturated
    at ``±sys.float_info.max`` (a product alone may overflow, the scaled one does not)."""
    return _saturated(sum(weight * (value * _SCALE) for weight, value in pairs))


def mean(values: Iterable[float], default: float = 0.0) -> float:
    """The mean of finite ``values`` (always finite), or ``default`` when there are none."""
    count = 0
    scaled = 0.0
    for value in values:
        scaled += value * _SCALE
        count += 1
    return (scaled / count) * _UNSCALE if count else default


class RunningMean:
    """A mean kept up to date one value at a time (always finite for finite values)."""

    __slots__ = ("_scaled", "count")

    def __init__(self) -> None:
        self._scaled = 0.0
        self.count = 0

    def add(self, value: float) -> None:
        """Take one more value into the mean."""
        self._scaled += value * _SCALE
        self.count += 1

    @property
    def mean(self) -> float:
        """The mean of the values added so far (0.0 before the first)."""
        return (self._scaled / self.count) * _UNSCALE if self.count else 0.0
