"""A managed llama.cpp ``llama-server`` process serving one local GGUF model.

:class:`LocalServer` starts llama-server on ``127.0.0.1`` only, waits until its
``/health`` endpoint answers 200, exposes the OpenAI-compatible ``base_url`` and
stops the process on :meth:`LocalServer.stop`, on leaving a ``with`` block and at
interpreter exit (``atexit``). A process killed with SIGKILL, or one that crashes
hard, cannot run ``atexit``: its server stays up until stopped by its PID.

The models come from :mod:`gepetto.lm._models`, the server binary from
:mod:`gepetto.lm._server_build` (``scripts/setup-local-llm`` installs both). Before a
started server is handed out, it must answer a real one-token completion: a binary
compiled for CPU features this machine lacks passes ``/health`` and dies with SIGILL at
its first matrix multiply, and :func:`explain_exit` then says so in plain words.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO

from gepetto.lm import _models
from gepetto.lm._models import LocalModelError, ModelNotInstalledError
from gepetto.lm._server_build import built_server, cpu_features, cpu_model_name

__all__ = [
    "HOST",
    "LocalServer",
    "LocalServerError",
    "ServerNotFoundError",
    "explain_exit",
    "find_server_binary",
]

HOST = "127.0.0.1"
"""The only address the server binds to and that this module talks to."""

_STOP_GRACE_S = 10.0
_POLL_INTERVAL_S = 0.1
_PORT_RETRIES = 3
_PROBE_EXIT_WAIT_S = 5.0

# urllib must never route 127.0.0.1 through an http_proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class LocalServerError(LocalModelError):
    """llama-server could not be started, or died, or did not become healthy."""


class ServerNotFoundError(LocalServerError):
    """No llama-server binary was found."""


def find_server_binary() -> Path | None:
    """Locate a llama-server executable, or return None.

    Order: ``$GEPETTO_LLAMA_SERVER``; the portable build cached by
    ``scripts/setup-local-llm`` (:func:`gepetto.lm._server_build.built_server`);
    ``llama-server`` on ``PATH``. ``$GEPETTO_LLAMA_SERVER`` is returned even if it does not
    exist, so that a wrong setting fails loudly at start rather than silently.
    """
    override = os.environ.get("GEPETTO_LLAMA_SERVER")
    if override:
        return Path(override).expanduser()
    built = built_server()
    if built is not None:
        return built
    found = shutil.which("llama-server")
    return Path(found) if found else None


# CPU features that decide whether a llama.cpp build runs, as /proc/cpuinfo names them.
_ISA_FEATURES = (
    "avx",
    "avx2",
    "fma",
    "f16c",
    "bmi2",
    "avx_vnni",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "amx_tile",
    "amx_int8",
)


def explain_exit(code: int, binary: Path | str) -> str:
    """A sentence a user understands for llama-server's exit ``code`` (negative: a signal).

    SIGILL (illegal instruction) names the CPU, the features it has and lacks among those
    llama.cpp builds use, and what to do; SIGSEGV mentions the AMX case; other codes say
    only how the process ended.
    """
    if code == -signal.SIGILL:
        features = cpu_features()
        has = [f for f in _ISA_FEATURES if f in features]
        lacks = [f for f in _ISA_FEATURES if f not in features]
        return (
            f"llama-server ({binary}) was killed by SIGILL (illegal instruction): it was "
            f"compiled for CPU instructions that this CPU ({cpu_model_name()}) does not "
            f"have. This CPU has {', '.join(has) or 'none of them'}; it lacks "
            f"{', '.join(lacks) or 'none of them'} (a binary built for one vendor's CPU, "
            "e.g. with AVX-VNNI, dies on the other's). Build a portable server for this "
            "machine with python -m gepetto.lm.install install --server (`make setup-llm` in a "
            "clone), or set GEPETTO_LLAMA_SERVER to a llama-server compiled without "
            "-march=native."
        )
    if code == -signal.SIGSEGV:
        return (
            f"llama-server ({binary}) crashed with SIGSEGV. A build made with -march=native "
            "on a CPU that advertises AMX faults this way; build a portable server with "
            "python -m gepetto.lm.install install --server, or set GEPETTO_LLAMA_SERVER to "
            "another llama-server."
        )
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"llama-server ({binary}) was killed by {name}"
    return f"llama-server ({binary}) exited with code {code}"


def _free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _health_status(port: int) -> int | None:
    """HTTP status of ``GET /health`` (200 = ready, 503 = loading), None if no answer."""
    try:
        with _OPENER.open(f"http://{HOST}:{port}/health", timeout=2.0) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return None


def _tail(path: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of a text file, or a placeholder if unreadable."""
    try:
        with path.open(encoding="utf-8", errors="replace") as stream:
            return "".join(deque(stream, maxlen=lines)).rstrip()
    except OSError:
        return "(no log)"


class LocalServer:
    """One llama-server process serving ``model`` on ``127.0.0.1``.

    Args:
        model: name or alias of a model of :data:`gepetto.lm._models.MODELS`; it is
            served under its canonical name (``--alias``), which is the ``model``
            value to send in API requests.
        port: TCP port; None picks a free one at start.
        threads: CPU threads (``-t``).
        context: total context tokens (``-c``), shared by the ``parallel`` slots.
        parallel: parallel request slots (``-np``).
        binary: llama-server executable; None uses :func:`find_server_binary`.
        extra_args: further command-line arguments, appended verbatim.
        startup_timeout: seconds to wait for ``/health`` to return 200.

    Use as ``with LocalServer() as server: ...`` or call :meth:`start` /
    :meth:`stop`. Both are idempotent and thread-safe.
    """

    def __init__(
        self,
        model: str = "qwen2.5-coder-0.5b",
        *,
        port: int | None = None,
        threads: int = 2,
        context: int = 8192,
        parallel: int = 4,
        binary: str | os.PathLike[str] | None = None,
        extra_args: Sequence[str] = (),
        startup_timeout: float = 120.0,
    ) -> None:
        self._spec = _models.get_spec(model)
        self._requested_port = port
        self._threads = threads
        self._context = context
        self._parallel = parallel
        self._binary = Path(binary) if binary is not None else None
        self._extra_args = tuple(extra_args)
        self._startup_timeout = startup_timeout
        self._lock = threading.RLock()
        self._process: subprocess.Popen[bytes] | None = None
        self._port: int | None = None
        self._log_dir: Path | None = None
        self._log_file: IO[bytes] | None = None

    # ------------------------------------------------------------------ properties

    @property
    def model(self) -> str:
        """Canonical model name, as served (the ``model`` field of API requests)."""
        return self._spec.name

    @property
    def port(self) -> int:
        """The TCP port of the running server."""
        if self._port is None:
            raise LocalServerError("the server is not started")
        return self._port

    @property
    def base_url(self) -> str:
        """OpenAI-compatible base URL, e.g. ``http://127.0.0.1:8080/v1``."""
        return f"http://{HOST}:{self.port}/v1"

    @property
    def pid(self) -> int | None:
        """PID of the server process while it is managed by this object, else None."""
        process = self._process
        return process.pid if process is not None else None

    @property
    def log_path(self) -> Path | None:
        """The server's log file while the server is managed, else None."""
        return self._log_dir / "llama-server.log" if self._log_dir is not None else None

    def is_running(self) -> bool:
        """True iff the process was started and has not exited."""
        process = self._process
        return process is not None and process.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the server's log (for error reports)."""
        path = self.log_path
        return _tail(path, lines) if path is not None else "(no log)"

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> LocalServer:
        """Start the server and block until ``/health`` returns 200; return self.

        Raises :class:`ModelNotInstalledError` if the model file is missing or
        corrupt, :class:`ServerNotFoundError` if no binary is found, and
        :class:`LocalServerError` (with the end of the server log) if the process
        exits early or is not healthy within ``startup_timeout``.
        """
        with self._lock:
            if self._process is not None:
                return self
            model_file = self._check_model()
            binary = self._resolve_binary()
            for attempt in range(1, _PORT_RETRIES + 1):
                port = self._requested_port or _free_port()
                self._launch(binary, model_file, port)
                try:
                    self._wait_healthy()
                    self._probe_completion()
                except LocalServerError as exc:
                    log = self.log_tail()
                    self.stop()
                    retry = self._requested_port is None and attempt < _PORT_RETRIES
                    if retry and "bind" in log.lower():
                        continue  # the free port was taken in between: try another one
                    message = f"{exc}\n--- end of llama-server log ---\n{log}"
                    raise LocalServerError(message) from None
                atexit.register(self.stop)
                return self
            raise AssertionError("unreachable")  # pragma: no cover

    def stop(self) -> None:
        """Stop the server: SIGTERM, wait up to 10 s, then SIGKILL. Idempotent.

        Also removes the temporary log directory.
        """
        with self._lock:
            atexit.unregister(self.stop)
            process, self._process = self._process, None
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=_STOP_GRACE_S)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            if self._log_file is not None:
                self._log_file.close()
                self._log_file = None
            if self._log_dir is not None:
                shutil.rmtree(self._log_dir, ignore_errors=True)
                self._log_dir = None
            self._port = None

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"running pid={self.pid} port={self._port}" if self.is_running() else "stopped"
        return f"LocalServer(model={self.model!r}, {state})"

    # ------------------------------------------------------------------ helpers

    def _check_model(self) -> Path:
        path = _models.models_dir() / self._spec.filename
        if not _models.is_installed(self._spec.name):
            raise ModelNotInstalledError(
                f"local model {self._spec.name!r} is not installed: {path} is missing or "
                f"does not match its sha256. Install it with: "
                f"python -m gepetto.lm.install install --server --only {self._spec.alias} "
                f"(in a clone of gepetto: make setup-llm; models dir: $GEPETTO_MODELS_DIR "
                f"or ~/.cache/gepetto/models)"
            )
        return path

    def _resolve_binary(self) -> Path:
        binary = self._binary or find_server_binary()
        if binary is None:
            raise ServerNotFoundError(
                "llama-server not found: run python -m gepetto.lm.install install --server "
                "(or make setup-llm in a clone; it builds a portable "
                "llama-server once and caches it in ~/.cache/gepetto/llama-server), or set "
                "GEPETTO_LLAMA_SERVER to a llama-server executable"
            )
        if not (binary.is_file() and os.access(binary, os.X_OK)):
            raise ServerNotFoundError(f"llama-server binary {binary} is not an executable file")
        return binary

    def _command(self, binary: Path, model_file: Path, port: int) -> list[str]:
        return [
            str(binary),
            *("-m", str(model_file)),
            *("--host", HOST, "--port", str(port)),
            *("-t", str(self._threads), "-c", str(self._context), "-np", str(self._parallel)),
            *("--alias", self._spec.name),
            *self._extra_args,
        ]

    def _launch(self, binary: Path, model_file: Path, port: int) -> None:
        self._log_dir = Path(tempfile.mkdtemp(prefix="gepetto-llama-server-"))
        self._log_file = (self._log_dir / "llama-server.log").open("wb")
        self._port = port
        self._process = subprocess.Popen(
            self._command(binary, model_file, port),
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )

    def _wait_healthy(self) -> None:
        process, port = self._process, self._port
        assert process is not None and port is not None
        deadline = time.monotonic() + self._startup_timeout
        while time.monotonic() < deadline:
            code = process.poll()
            if code is not None:
                raise LocalServerError(
                    f"llama-server for {self.model!r} stopped during startup: "
                    f"{explain_exit(code, self._command_binary())}"
                )
            if _health_status(port) == 200:
                return
            time.sleep(_POLL_INTERVAL_S)
        raise LocalServerError(
            f"llama-server for {self.model!r} was not healthy on port {port} "
            f"after {self._startup_timeout:.0f} s"
        )

    def _command_binary(self) -> str:
        process = self._process
        args = process.args if process is not None else None
        return str(args[0]) if isinstance(args, list) and args else "llama-server"

    def _probe_completion(self) -> None:
        """Ask the healthy server for one token; raise if it fails or the process dies.

        ``/health`` answers before any matrix multiply runs, so a binary built for CPU
        features this machine lacks is only caught by a real completion.
        """
        process, port = self._process, self._port
        assert process is not None and port is not None
        body = json.dumps(
            {"model": self.model, "prompt": "1", "max_tokens": 1, "temperature": 0}
        ).encode()
        request = urllib.request.Request(
            f"http://{HOST}:{port}/v1/completions",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        failure: str | None = None
        try:
            with _OPENER.open(request, timeout=self._startup_timeout) as response:
                json.load(response)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            failure = f"{type(exc).__name__}: {exc}"
        try:
            code = process.wait(timeout=_PROBE_EXIT_WAIT_S) if failure else process.poll()
        except subprocess.TimeoutExpired:
            code = None
        if code is not None:
            raise LocalServerError(
                f"llama-server for {self.model!r} died at its first completion: "
                f"{explain_exit(code, self._command_binary())}"
            )
        if failure is not None:
            raise LocalServerError(
                f"llama-server for {self.model!r} is up but its first one-token completion "
                f"failed ({failure})"
            )
