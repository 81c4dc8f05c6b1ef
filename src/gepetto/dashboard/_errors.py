"""The dashboard's errors: each message is one line that says what to change."""

from __future__ import annotations

from gepetto.errors import GepettoError

__all__ = ["DashboardError", "PortInUse", "SourceError"]


class DashboardError(GepettoError):
    """The dashboard cannot start (a missing extra, a bad source, a taken port)."""


class SourceError(DashboardError):
    """A source is not a readable run store: not a run, a damaged journal, no server.

    The message names the source and says what to pass instead.
    """


class PortInUse(DashboardError):
    """The port asked for is already in use on that host: pass another one."""
