"""Which settings a resumed run may change: the one list, and the check that uses it.

A run's journal records its settings (the keyword options of :func:`gepetto.optimize`, as
the optimizer describes them: strategy objects by their class name). Resuming the run
compares them one by one with the new call's: every setting must be the same, except the
ones in :data:`RESUMABLE`, which change only what happens next (a larger budget, more
proposals in flight, other observers) or where the run is kept. The inputs (seed candidate,
datasets, adapter) are checked by their own fingerprints (:mod:`gepetto.engine.journal`).

A journal written before a setting existed (or before gepetto recorded it) holds no value
for it; the run then ran as with the setting's default, so it resumes with the default and
is refused with any other value. :data:`DEFAULTS` holds those defaults.

Example:
    >>> changed_settings({"seed": 0, "max_metric_calls": 50}, {"seed": 1, "max_metric_calls": 90})
    ['seed: 0 in the journal, 1 now']
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from gepetto.engine.options import GEPAConfig, describe, resumable_settings

__all__ = ["DEFAULTS", "INPUTS", "RESUMABLE", "changed_settings"]

RESUMABLE: Mapping[str, str] = resumable_settings()
"""The options of ``optimize`` a resumed run may change, each with the reason (declared on
the fields of the option groups, :mod:`gepetto.engine.options`)."""

INPUTS = frozenset(
    {"seed_candidate", "trainset", "valset", "testset", "adapter", "task_lm", "evaluator"}
)
"""Keyword arguments checked by fingerprints of their own (the adapter's, with ``task_lm``
and ``evaluator``, is ``adapter.fingerprint()`` or its class)."""

DEFAULTS: Mapping[str, Any] = {
    "objective_weights": None,  # recorded only when set
    **{name: value for name, value in describe(GEPAConfig()).items() if name not in RESUMABLE},
}
"""Every setting a resume may not change, with the value the journal records for its default
(``val_evaluation_policy=None`` is recorded as ``"full_eval"``)."""

_MISSING = object()


def changed_settings(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """The settings a resume would change and may not, one line each, sorted by name.

    Args:
        recorded: the settings in the run's journal (``RunHeader.config``).
        current: the settings of the run being opened.

    Returns:
        ``"name: old in the journal, new now"`` for each fingerprinted setting whose values
        differ (a setting missing on either side stands for its default in
        :data:`DEFAULTS`: ``"name: not in the journal (so the default old), new now"``);
        ``[]`` when the run may be resumed.
    """
    lines = []
    for name in sorted(set(recorded) | set(current)):
        if name in RESUMABLE:
            continue
        old = _as_recorded(recorded.get(name, DEFAULTS.get(name, _MISSING)))
        new = _as_recorded(current.get(name, DEFAULTS.get(name, _MISSING)))
        if _same(old, new):
            continue
        if name in recorded:
            lines.append(f"{name}: {_show(old)} in the journal, {_show(new)} now")
        else:
            lines.append(
                f"{name}: not in the journal (so the default {_show(old)}), {_show(new)} now"
            )
    return lines


def _as_recorded(value: Any) -> Any:
    """The value as the journal's JSON gives it back (tuples become lists, and so on)."""
    if value is _MISSING:
        return value
    return json.loads(json.dumps(value, default=repr))


def _same(old: Any, new: Any) -> bool:
    if old is _MISSING or new is _MISSING:
        return old is new
    if isinstance(old, float) and isinstance(new, float) and math.isnan(old) and math.isnan(new):
        return True
    return bool(old == new)


def _show(value: Any) -> str:
    if value is _MISSING:
        return "not set"
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:60]}...{text[-15:]} ({len(text)} characters)"
