"""The ``gepetto`` command: optimize from a task file, watch, inspect, export and report runs.

``gepetto --help`` lists the commands (docs/cli.md describes them with examples). The
command needs typer (``pip install 'gepetto[cli]'``); importing :mod:`gepetto` never imports
it, and without it ``gepetto`` says which extra to install.

Exit codes (:class:`ExitCode`), the same for every command:

====  ===============  ==============================================================
code  name             meaning
====  ===============  ==============================================================
0     ``OK``           done (for ``optimize``/``resume``: the run ended by a stop
                       condition: budget, stalled, perfect score, cost cap, ...)
1     ``RUN_FAILED``   the run or the command failed (the adapter or an LM raised, an
                       unexpected error); the message says what happened
2     ``BAD_INPUT``    bad input: an unknown option, a missing or invalid task file, a
                       path that is not a run, no such candidate or run id
3     ``STORE_ERROR``  the run store cannot be read (a damaged journal, a foreign file,
                       a database that cannot be reached)
4     ``RUN_IN_USE``   another process is running this run (wait, or use another
                       ``--run-dir``)
5     ``UNAVAILABLE``  something this command needs is missing here: an extra
                       (typer, matplotlib), the dashboard, the local model server; or
                       the port is in use
130   ``INTERRUPTED``  stopped by Ctrl-C / SIGINT (or SIGTERM); the run is kept and
                       ``gepetto resume RUN_DIR`` continues it
====  ===============  ==============================================================

Every error is one line on standard error (``gepetto: error: ...``) that says what to change;
``GEPETTO_TRACEBACK=1`` adds the traceback of an unexpected error.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from enum import IntEnum

from gepetto.errors import GepettoError

__all__ = ["CommandError", "ExitCode", "main"]


class ExitCode(IntEnum):
    """What a ``gepetto`` command's exit status means (see the module docstring)."""

    OK = 0
    RUN_FAILED = 1
    BAD_INPUT = 2
    STORE_ERROR = 3
    RUN_IN_USE = 4
    UNAVAILABLE = 5
    INTERRUPTED = 130


class CommandError(GepettoError):
    """A ``gepetto`` command could not do its work; ``exit_code`` says why."""

    def __init__(self, message: str, exit_code: ExitCode = ExitCode.BAD_INPUT) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``gepetto`` command with ``argv`` (default: ``sys.argv[1:]``); returns the
    exit status (the console script exits with it)."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        from gepetto.cli._app import run_command
    except ModuleNotFoundError as error:
        if error.name in ("typer", "click"):
            _error("the gepetto command needs typer: pip install 'gepetto[cli]'")
            return ExitCode.UNAVAILABLE
        raise
    try:
        return run_command(args)
    except KeyboardInterrupt:
        _error("interrupted")
        return ExitCode.INTERRUPTED
    except BrokenPipeError:  # `gepetto export ... | head`: the reader left; not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return ExitCode.OK


def _error(message: str) -> None:
    print(f"gepetto: error: {message}", file=sys.stderr)
