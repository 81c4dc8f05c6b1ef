"""The exceptions gepetto raises: one tree, drawn here once.

Every error derives from :class:`GepettoError`, so ``except gepetto.GepettoError`` catches
anything the library raises on purpose (a test walks every module to keep it so, and keeps
this drawing complete)::

    GepettoError
    ├── ConfigError              bad arguments; raised before any LM or adapter call is paid
    │   └── TaskError            gepetto.cli: a task file of `gepetto optimize` is not usable
    ├── AdapterContractError     the adapter broke the protocol (wrong lengths, bad scores)
    ├── AdapterFailed            optimize(raise_on_exception=True): the adapter raised on all
    ├── BudgetExhausted          internal signal: a reservation did not fit in the budget
    ├── StorageError             gepetto.storage: the journal cannot be used
    │   ├── RunExists            a run with this id was already created
    │   └── RunInUse             another process holds the run (its lock)
    ├── NotARun                  gepetto.runview: nothing to read there (no journal, no run)
    ├── CommandError             gepetto.cli: a command cannot do its work (``exit_code``)
    ├── DashboardError           gepetto.dashboard: the dashboard cannot start
    │   ├── SourceError          a source is not a readable run store (missing, damaged)
    │   └── PortInUse            the port is taken: pass another one
    ├── LMError                  gepetto.lm.errors: an LM call failed (model, status, ...)
    │   ├── LMAuthError          401/403: the key is missing or wrong (never retried)
    │   ├── LMQuotaError         the account has no credit left (never retried)
    │   ├── LMBadRequestError    the request was refused as malformed (never retried)
    │   ├── LMRateLimitError     429 (retried after ``retry_after``)
    │   ├── LMServerError        5xx (retried)
    │   ├── LMTimeoutError       no answer in time (retried)
    │   ├── LMConnectionError    no connection (retried)
    │   ├── LMResponseError      an answer that cannot be used
    │   ├── CostCapReached       max_cost_usd has no room for the call (it was not sent)
    │   └── CircuitOpenError     too many failures in a row: the client stopped calling
    ├── SandboxUnavailable       gepetto.sandbox: a protection asked for cannot be had here
    ├── ExecutorBroken           gepetto.executors: executor= can run nothing more (dead pool)
    ├── EmbeddingError           gepetto.adapters.rag: an embedding endpoint failed
    ├── WeaviateError            gepetto.adapters.rag: a Weaviate server failed or refused
    ├── ToolUnavailable          gepetto.adapters.tools: a tool's service is gone (scored 0)
    ├── MCPToolError             gepetto.adapters.mcp: the MCP server answered a call with an error
    └── LocalModelError          gepetto.lm: the local models and their server
        ├── UnknownModelError    not a known local model name
        ├── ModelNotInstalledError   the GGUF file is missing or corrupt
        ├── HashMismatchError    a download does not match its pinned sha256
        ├── DownloadError        pip could not fetch a pinned file
        ├── BuildError           llama-server could not be built here
        └── LocalServerError     llama-server did not start or died (SIGILL explained)
            └── ServerNotFoundError   no llama-server binary was found

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
    "AdapterFailed",
    "BudgetExhausted",
    "ConfigError",
    "GepettoError",
    "SandboxUnavailable",
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


class AdapterFailed(GepettoError):
    """The adapter raised on everything, and ``optimize(raise_on_exception=True)`` (gepa's
    default) was asked to raise rather than return.

    An example whose evaluation raised still scores 0 and the run goes on; this error is
    raised only once the run was stopped because the adapter raised on every example of the
    seed's validation, or on 10 distinct examples in a row (see
    :mod:`gepetto.engine.adapter_health`). The message is the stop reason, which names the
    adapter's last exception; ``error.result`` holds the run's result (with a ``run_dir``,
    a later call resumes the run). With ``raise_on_exception=False`` the result is returned
    instead, with that ``stop_reason``.
    """


class SandboxUnavailable(GepettoError):
    """:mod:`gepetto.sandbox` cannot give a protection that was asked for on this machine
    (for example no network namespace for ``allow_network=False`` as a non-root user
    without user namespaces). Nothing was run; the message says what to change."""


class BudgetExhausted(GepettoError):
    """A budget reservation could not be made: the remaining metric calls are too few."""
