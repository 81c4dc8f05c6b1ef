"""The exceptions gepetto raises.

Every error derives from :class:`GepettoError`, so ``except gepetto.GepettoError`` catches
anything the library raises on purpose::

    GepettoError
    ├── ConfigError            bad arguments; raised before any LM or adapter call is paid for
    ├── AdapterContractError   the adapter broke the protocol (wrong lengths, non-numeric scores)
    ├── ReflectionError        the reflection LM or proposer failed in a way that cannot be scored
    ├── BudgetExhausted        internal signal: a reservation did not fit in the remaining budget
    └── RunInterrupted         the run was stopped by a signal before it could finish cleanly

Failures of a single example inside an adapter are *not* errors: they are scored 0 and the
exception is kept in the trace, so one bad example never crashes a run.

An error that stops a run after it has paid for work (an adapter contract violation found
mid-run, for example) carries the run's result so far in ``error.result``: nothing paid for
is lost, even without a ``run_dir`` to resume from.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # for the annotation only: errors import nothing of gepetto at run time
    from gepetto.result import Result

__all__ = [
    "AdapterContractError",
    "BudgetExhausted",
    "ConfigError",
    "GepettoError",
    "ReflectionError",
    "RunInterrupted",
]


class GepettoError(Exception):
    """Root of every exception raised by gepetto on purpose.

    Attributes:
        result: when the error stopped a run that had started, the run's
            :class:`~gepetto.result.Result` so far (every candidate scored, every metric call
            counted); ``None`` for an error raised before the run started.
    """

    result: Result | None = None


class ConfigError(GepettoError, ValueError):
    """An argument is invalid. The message says which one and what to change.

    Raised while the run is being set up, before any adapter or LM call is made. One check
    needs the adapter's answers: ``objective_weights`` naming an objective the adapter does
    not return is raised when the seed's validation comes back, before any reflection call.
    """


class AdapterContractError(GepettoError):
    """The adapter returned something the protocol does not allow.

    Example: ``evaluate`` returned 2 scores for a batch of 3 examples, or
    ``make_reflective_dataset`` returned records that are not dicts. This is a bug in the
    adapter, not a per-example failure, so it stops the run with a message naming the method;
    ``error.result`` holds what the run had found and paid for until then.
    """


class ReflectionError(GepettoError):
    """The reflection step failed for a reason that is not the reply's content.

    Garbage replies (no fenced block, empty text) are recorded as failed proposals and do not
    raise; this error is for misconfiguration such as a reflection LM that is missing.
    """


class BudgetExhausted(GepettoError):
    """A budget reservation could not be made: the remaining metric calls are too few."""


class RunInterrupted(GepettoError):
    """The run was stopped by a second SIGINT/SIGTERM before it could finish cleanly."""
