"""Type checks of the options of ``optimize()``, ``aoptimize()`` and ``Optimizer``.

Each check raises :class:`~gepetto.errors.ConfigError` naming the option, the value it got
and what to pass, before anything runs. They are strict on purpose: a ``bool`` is not
accepted as an int (``max_concurrency=True`` is a mistake, not 1), a string is not accepted
as a bool (``skip_perfect_score="no"`` would be true), and numbers must be finite.

Example:
    >>> check_bool("use_merge", True)
    True
    >>> check_int("max_concurrency", 4, minimum=1)
    4
    >>> check_number("perfect_score", float("nan"))
    Traceback (most recent call last):
    ...
    gepetto.errors.ConfigError: perfect_score must be a finite number, got nan (float)
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

from gepetto.errors import ConfigError

__all__ = [
    "check_bool",
    "check_int",
    "check_number",
    "check_observers",
    "check_optional_int",
    "check_optional_number",
]


def check_bool(name: str, value: object) -> bool:
    """``value`` if it is ``True`` or ``False``.

    Raises:
        ConfigError: for anything else (``"no"``, ``0``, ``None``, ...).
    """
    if isinstance(value, bool):
        return value
    raise ConfigError(
        f"{name} must be True or False, got {value!r} ({type(value).__name__}); pass "
        f"{name}=True or {name}=False"
    )


def check_int(name: str, value: object, *, minimum: int | None = None, meaning: str = "") -> int:
    """``value`` as an int (any integral number but a bool), at least ``minimum``.

    Args:
        name: the option, for the message.
        value: what was passed.
        minimum: the smallest value allowed.
        meaning: a short explanation added to the message.

    Raises:
        ConfigError: for a bool, a non-integral number, a string, or a value below
            ``minimum``.
    """
    return _int(name, value, minimum, meaning, or_none=False)


def check_optional_int(
    name: str, value: object, *, minimum: int | None = None, meaning: str = ""
) -> int | None:
    """:func:`check_int`, but ``None`` is allowed too."""
    return None if value is None else _int(name, value, minimum, meaning, or_none=True)


def check_number(
    name: str,
    value: object,
    *,
    minimum: float | None = None,
    above: float | None = None,
    meaning: str = "",
) -> float:
    """``value`` as a finite float (any real number but a bool).

    Args:
        name: the option, for the message.
        value: what was passed.
        minimum: the smallest value allowed.
        above: the value must be strictly greater than this.
        meaning: a short explanation added to the message.

    Raises:
        ConfigError: for a bool, a string, ``nan`` or ``±inf``, or a value out of range.
    """
    return _number(name, value, minimum, above, meaning, or_none=False)


def check_optional_number(
    name: str,
    value: object,
    *,
    minimum: float | None = None,
    above: float | None = None,
    meaning: str = "",
) -> float | None:
    """:func:`check_number`, but ``None`` is allowed too."""
    if value is None:
        return None
    return _number(name, value, minimum, above, meaning, or_none=True)


def _int(name: str, value: object, minimum: int | None, meaning: str, *, or_none: bool) -> int:
    if not isinstance(value, bool) and isinstance(value, numbers.Integral):
        number = int(value)
        if minimum is None or number >= minimum:
            return number
    bound = "" if minimum is None else f" >= {minimum}"
    raise ConfigError(
        f"{name} must be an int{bound}{' or None' if or_none else ''}{_explained(meaning)}, "
        f"got {value!r} ({type(value).__name__}); pass a number such as "
        f"{minimum if minimum is not None else 0}"
    )


def _number(
    name: str,
    value: object,
    minimum: float | None,
    above: float | None,
    meaning: str,
    *,
    or_none: bool,
) -> float:
    if not isinstance(value, bool) and isinstance(value, numbers.Real):
        number = float(value)
        if (
            math.isfinite(number)
            and (minimum is None or number >= minimum)
            and (above is None or number > above)
        ):
            return number
    limits = []
    if minimum is not None:
        limits.append(f">= {minimum:g}")
    if above is not None:
        limits.append(f"> {above:g}")
    what = " ".join(["a finite number", *limits]) + (" or None" if or_none else "")
    raise ConfigError(
        f"{name} must be {what}{_explained(meaning)}, got {value!r} ({type(value).__name__})"
    )


def _explained(meaning: str) -> str:
    return f" ({meaning})" if meaning else ""


def check_observers(callbacks: object) -> Sequence[object]:
    """The observers of ``callbacks=``: a list or tuple (``None``: none).

    Raises:
        ConfigError: for anything else, such as a single observer not wrapped in a list.
    """
    if callbacks is None:
        return ()
    if isinstance(callbacks, str | bytes) or not isinstance(callbacks, Sequence):
        raise ConfigError(
            "callbacks must be a list of observers (objects with on_<event> methods, or "
            f"functions), got {type(callbacks).__name__}; wrap a single observer in a list"
        )
    return callbacks
