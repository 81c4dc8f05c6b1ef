"""The exit codes of the ``gepetto`` command and the error a command raises to use one
(the table is in :mod:`gepetto.cli`)."""

from __future__ import annotations

from enum import IntEnum

from gepetto.errors import GepettoError

__all__ = ["CommandError", "ExitCode"]


class ExitCode(IntEnum):
    """What a ``gepetto`` command's exit status means (the table is in :mod:`gepetto.cli`)."""

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
