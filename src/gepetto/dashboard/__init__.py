"""A live local web dashboard of runs: it reads run stores and never drives a run.

``serve(["runs/a", "runs/b"])`` opens the stores read-only, prints the URL and serves, on
127.0.0.1 by default, a page with every run of every source: score against metric calls,
time and cost; the Pareto front and the score matrix; the lineage with every decision and
its reason; each candidate's text with its diff to the parent and the reflection that made
it; the reflection being written right now; two runs side by side. The page follows the
run while it goes on (server-sent events, the store polled every 0.25 s while a page is
open). Every asset ships in the package; nothing is loaded from the internet.

Only GET is served, the stores are opened read-only, and every text sent to the page is
redacted (URLs' user-info and queries, strings that look like API keys).

Needs the ``dashboard`` extra (``pip install 'gepetto[dashboard]'``: starlette, uvicorn);
importing this package does not import them.

Errors (all :class:`~gepetto.errors.GepettoError`, one-line messages)::

    DashboardError      the dashboard cannot start
    ├── SourceError     a source is not a run store (missing, damaged, unreachable)
    └── PortInUse       the port is taken: pass another one
"""

from __future__ import annotations

from gepetto.dashboard._errors import DashboardError, PortInUse, SourceError
from gepetto.dashboard._server import DashboardServer, serve

__all__ = ["DashboardError", "DashboardServer", "PortInUse", "SourceError", "serve"]
