"""Serving the dashboard: the port bound first (a taken port is a clear error), then uvicorn.

:func:`serve` blocks until Ctrl-C; :class:`DashboardServer` runs the same server in a
background thread (tests, benchmarks, notebooks).
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import socket
import sys
import threading
import time
import webbrowser
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from gepetto.dashboard._errors import DashboardError, PortInUse

if TYPE_CHECKING:
    from gepetto.dashboard._app import Dashboard

__all__ = ["DashboardServer", "serve"]

_EXTRA = "the dashboard needs starlette and uvicorn: pip install 'gepetto[dashboard]'"


def _require_extra() -> None:
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise DashboardError(_EXTRA) from None


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (``port=0``: a free port).

    Raises:
        PortInUse: the port is taken.
        DashboardError: the host is not an address of this machine, or the port is refused.
    """
    if not 0 <= port <= 65535:
        raise DashboardError(f"port {port} is not a port number: pass one in 1..65535")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as error:
        sock.close()
        if error.errno == errno.EADDRINUSE:
            raise PortInUse(
                f"port {port} on {host} is already in use: pass another port (--port N), or "
                "stop the program using it"
            ) from None
        raise DashboardError(
            f"cannot listen on {host}:{port} ({error.strerror or error}): pass a host address "
            "of this machine (default 127.0.0.1) and a free port"
        ) from None
    sock.setblocking(False)
    return sock


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class DashboardServer:
    """The dashboard of ``sources`` served from a background thread.

    Args:
        sources: run folders, journal files, ``sqlite:///`` or ``postgresql://`` URLs.
        host: the address to listen on (127.0.0.1: this machine only).
        port: the port (0: any free port; see :attr:`url`).
        poll_interval: seconds between reads of a store while a page follows it.

    Raises:
        DashboardError: the extra is missing; :class:`SourceError` for a bad source;
            :class:`PortInUse` for a taken port. All before anything is served.

    Example::

        with DashboardServer(["runs/a"], port=0) as server:
            print(server.url)
    """

    def __init__(
        self,
        sources: Sequence[str],
        *,
        host: str = "127.0.0.1",
        port: int = 8765,
        poll_interval: float = 0.25,
    ) -> None:
        _require_extra()
        import uvicorn

        from gepetto.dashboard._app import Dashboard, build_app

        self.dashboard: Dashboard = Dashboard(sources, poll_interval=poll_interval)
        try:
            self._socket = bind(host, port)
        except BaseException:
            self.dashboard.close()
            raise
        self.host = host
        self.port = int(self._socket.getsockname()[1])
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{self.port}/"
        allowed = [host, "localhost", "127.0.0.1", "[::1]"] if _is_loopback(host) else ["*"]
        app = build_app(self.dashboard, allowed_hosts=allowed)
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=1,
            lifespan="off",
        )
        closing = self.dashboard.closing

        class Server(uvicorn.Server):
            def handle_exit(self, sig: int, frame: Any) -> None:  # Ctrl-C: end live channels
                closing.set()
                super().handle_exit(sig, frame)

        self._server = Server(config)
        self._thread: threading.Thread | None = None

    def run(self) -> None:
        """Serve in this thread until :meth:`stop` or Ctrl-C."""
        try:
            self._server.run(sockets=[self._socket])
        finally:
            self.dashboard.close()

    def start(self) -> DashboardServer:
        """Serve from a daemon thread; returns when the server accepts connections."""
        self._thread = threading.Thread(target=self.run, name="gepetto-dashboard", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise DashboardError(f"the dashboard did not start on {self.url}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Stop serving (open pages are cut off) and close the stores."""
        self.dashboard.closing.set()
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._socket.close()

    def __enter__(self) -> DashboardServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def serve(
    sources: list[str], *, host: str = "127.0.0.1", port: int = 8765, open_browser: bool = False
) -> None:
    """Serve the dashboard of ``sources`` until Ctrl-C (then return); prints the URL first.

    Args:
        sources: run folders, journal files, ``sqlite:///path`` or ``postgresql://`` URLs;
            every run of every source is shown.
        host: the address to listen on; the default serves this machine only.
        port: the port (0: any free port).
        open_browser: open the page in the default browser.

    Raises:
        SourceError: a source is not a readable run store.
        PortInUse: the port is taken.
        DashboardError: the ``dashboard`` extra is missing, or the host cannot be used.
    """
    if not sources:
        raise DashboardError("no run to show: pass a run folder or a storage URL")
    server = DashboardServer(sources, host=host, port=port)
    runs = len(server.dashboard.runs)
    print(f"gepetto dashboard: {server.url}  ({runs} run{'s' * (runs != 1)}; Ctrl-C stops)")
    if not _is_loopback(host):
        print(
            f"warning: listening on {host}: other machines can read these runs",
            file=sys.stderr,
        )
    sys.stdout.flush()
    if open_browser:
        threading.Timer(0.5, webbrowser.open, args=(server.url,)).start()
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises Ctrl-C once stopped
        server.run()
    print("gepetto dashboard: stopped")
