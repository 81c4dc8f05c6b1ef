"""The caller's side of the sandbox: start the launcher, feed it, read it, stop it."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import marshal
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from gepetto.errors import ConfigError, SandboxUnavailable

LAUNCHER = Path(__file__).with_name("_child.py")
SETUP_FAILED = 125
UID_BASE = 1_900_000_000  # far above real accounts and the usual subordinate-id ranges
UID_SPAN = 200_000_000
_RUNS = itertools.count()
_READ_CHUNK = 65536
_STATUS_CAP = 65536
_STATUS_FIELDS = {"init": int, "exit": int, "signal": int, "cpu_s": float}
_STOP_WAIT_S = 5.0

LIMITS = ("wall_time", "cpu_time", "memory", "processes", "output", "file_size", "disk")
"""Names :attr:`SandboxResult.limit` can take for a limit that stopped the run; ``"network"``
and ``"filesystem"`` name a protection behind the uncaught error that ended it."""

__all__ = ["LIMITS", "SandboxResult", "run_command", "run_python"]


@dataclasses.dataclass(frozen=True, slots=True)
class SandboxResult:
    """How one sandboxed run ended.

    Attributes:
        returncode: the exit code, or minus the signal that killed it (as in ``subprocess``).
        stdout: standard output (UTF-8, undecodable bytes replaced), cut at the output limit.
        stderr: standard error, likewise.
        duration_s: wall time from start to end, in seconds.
        limit: ``None``, or what stopped it: one of :data:`LIMITS`, or ``"network"`` /
            ``"filesystem"`` when the run died of an error from the network or filesystem
            protection (Python only).
        cpu_s: CPU seconds the candidate used (``None`` when it was killed from outside).
    """

    returncode: int
    stdout: str
    stderr: str
    duration_s: float
    limit: str | None = None
    cpu_s: float | None = None

    @property
    def ok(self) -> bool:
        """It exited with code 0 and no limit stopped it."""
        return self.returncode == 0 and self.limit is None

    def as_side_info(self, max_chars: int = 4000) -> dict[str, Any]:
        """Side information for reflection (``optimize_anything``'s evaluator's second value):
        the outcome, a reason in words, and the ends of both streams (``max_chars`` each).

        Example:
            >>> SandboxResult(0, "4\\n", "", 0.02).as_side_info()["outcome"]
            'exited with code 0'
        """
        info: dict[str, Any] = {"outcome": self.reason(), "returncode": self.returncode}
        if self.limit is not None:
            info["limit"] = self.limit
        info["duration_s"] = round(self.duration_s, 3)
        for name, text in (("stdout", self.stdout), ("stderr", self.stderr)):
            if text:
                info[name] = text if len(text) <= max_chars else "…" + text[-max_chars:]
        return info

    side_info = as_side_info

    def json_report(self, max_chars: int = 4000) -> tuple[Any | None, dict[str, Any]]:
        """What a test harness appended to the candidate reported: the last line of
        standard output read as JSON, and the side information (:meth:`as_side_info`).

        The value is ``None`` when the run did not end well or its last line is not JSON
        (the side information then says why, in ``feedback`` for the latter). Otherwise
        the side information leaves standard output out: the caller's feedback, made from
        the value, says it better.

        Example:
            >>> report, info = SandboxResult(0, "log\\n[1, 2]\\n", "", 0.1).json_report()
            >>> report, "stdout" in info
            ([1, 2], False)
            >>> SandboxResult(0, "no report\\n", "", 0.1).json_report()[1]["feedback"]
            'the test harness printed no results'
        """
        side_info = self.as_side_info(max_chars)
        if not self.ok:
            return None, side_info
        try:
            report = json.loads(self.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            side_info["feedback"] = "the test harness printed no results"
            return None, side_info
        side_info.pop("stdout", None)
        return report, side_info

    def reason(self) -> str:
        """What happened, in words."""
        reasons = {
            "wall_time": "killed: wall-time limit reached",
            "cpu_time": "killed: CPU-time limit reached",
            "memory": "stopped: memory limit reached (MemoryError)",
            "processes": "stopped: process limit reached (fork failed)",
            "output": "killed: output limit reached",
            "file_size": "stopped: file-size limit reached",
            "disk": "stopped: the working directory is full (disk limit)",
            "network": "stopped: the network is not available in the sandbox",
            "filesystem": "stopped: writing outside the working directory is not allowed",
        }
        if self.limit is not None:
            return reasons.get(self.limit, f"stopped: {self.limit}")
        if self.returncode < 0:
            return f"killed by signal {signal.Signals(-self.returncode).name}"
        return f"exited with code {self.returncode}"


def run_python(
    source: str,
    *,
    stdin: str | bytes = "",
    timeout_s: float = 10.0,
    cpu_s: int | None = None,
    memory_mb: int = 512,
    max_output_bytes: int = 1_000_000,
    allow_network: bool = False,
    max_processes: int = 64,
    disk_mb: int = 128,
    env: Mapping[str, str] | None = None,
    files: Mapping[str, str | bytes] | None = None,
    args: Sequence[str] = (),
) -> SandboxResult:
    """Run Python ``source`` in a sandbox (see :mod:`gepetto.sandbox`) and return how it ended.

    The source runs as ``main.py`` in a fresh working directory, with this interpreter and
    its installed packages, under every limit of :func:`run_command`.

    Example:
        >>> run_python("print(6 * 7)").stdout
        '42\\n'
    """
    for name in files or {}:
        if name == "main.py":
            raise ConfigError("files: 'main.py' is the source itself; name the file otherwise")
    sources = {**(files or {}), "main.py": source}
    return _run(
        {"mode": "python", "script": "main.py", "argv": list(args)},
        stdin,
        _Limits(timeout_s, cpu_s, memory_mb, max_output_bytes, max_processes, disk_mb),
        allow_network,
        env,
        sources,
    )


def run_command(
    argv: Sequence[str],
    *,
    stdin: str | bytes = "",
    timeout_s: float = 10.0,
    cpu_s: int | None = None,
    memory_mb: int = 512,
    max_output_bytes: int = 1_000_000,
    allow_network: bool = False,
    max_processes: int = 64,
    disk_mb: int = 128,
    env: Mapping[str, str] | None = None,
    files: Mapping[str, str | bytes] | None = None,
) -> SandboxResult:
    """Run the command ``argv`` in a sandbox (see :mod:`gepetto.sandbox`).

    Args:
        argv: the program (looked up on the sandbox's ``PATH``) and its arguments.
        stdin: fed to its standard input.
        timeout_s: wall-time limit; the whole sandbox is killed when it is reached.
        cpu_s: CPU-time limit in seconds (default: ``timeout_s`` rounded up).
        memory_mb: address-space limit of each process, in MiB.
        max_output_bytes: limit of each of stdout and stderr; the sandbox is killed when
            one goes over it and the result keeps the first ``max_output_bytes`` bytes.
        allow_network: ``False`` (default) runs it in a network namespace of its own.
        max_processes: processes and threads the sandbox's user may have at once.
        disk_mb: size of the working directory (a tmpfs of its own: what is written there is
            gone with the run), in MiB; ``files`` must fit in it.
        env: variables added to the minimal environment (``PATH``, ``LANG``, ``HOME`` and
            ``TMPDIR`` set to the working directory); nothing else of this process's.
            (:func:`run_python` runs Python isolated: ``PYTHON*`` variables are ignored.)
        files: files to write in the working directory first (relative path -> content).

    Raises:
        SandboxUnavailable: a protection asked for cannot be had here (the message says
            which and what to do).
        ConfigError: a limit is not positive, or a file name leaves the working directory.

    Example:
        >>> run_command(["echo", "hello"]).stdout
        'hello\\n'
    """
    if not argv:
        raise ConfigError("argv: give the program to run")
    return _run(
        {"mode": "command", "argv": list(argv)},
        stdin,
        _Limits(timeout_s, cpu_s, memory_mb, max_output_bytes, max_processes, disk_mb),
        allow_network,
        env,
        files or {},
    )


@dataclasses.dataclass(frozen=True, slots=True)
class _Limits:
    timeout_s: float
    cpu_s: int | None
    memory_mb: int
    max_output_bytes: int
    max_processes: int
    disk_mb: int

    def __post_init__(self) -> None:
        for name in ("timeout_s", "memory_mb", "max_output_bytes", "max_processes", "disk_mb"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)!r}")
        if self.cpu_s is not None and self.cpu_s <= 0:
            raise ConfigError(f"cpu_s must be positive, got {self.cpu_s!r}")


_UIDS_PER_PROCESS = 4096
"""Consecutive user ids of one calling process's runs (then its ids wrap onto the next pid's)."""


def _sandbox_uid() -> int | None:
    """A user id of the sandbox's own, when running as root: its process count (the fork
    limit) and its files are its alone. ``None`` otherwise (the caller's user is kept)."""
    if os.geteuid() != 0:
        return None
    return UID_BASE + (os.getpid() * _UIDS_PER_PROCESS + next(_RUNS)) % UID_SPAN


def is_sandbox_uid_of(uid: int, pid: int) -> bool:
    """Whether ``uid`` is one that the process ``pid`` gives its sandboxes (exact for its
    first :data:`_UIDS_PER_PROCESS` runs): lets a caller find the processes left by its own
    sandboxes while other processes run sandboxes too."""
    if not UID_BASE <= uid < UID_BASE + UID_SPAN:
        return False
    return (uid - UID_BASE - pid * _UIDS_PER_PROCESS) % UID_SPAN < _UIDS_PER_PROCESS


def _hidden_folders(workdir: str) -> dict[str, list[str]]:
    """The caller's home (where keys, tokens and ``.env`` files live) to hide, and the
    folders of this interpreter and its packages found under it, bound back read-only so
    that Python still runs there. Other ``sys.path`` entries under the home (a project's
    own folder) stay hidden."""
    home = os.path.realpath(os.path.expanduser("~"))
    if home in ("/", "") or not os.path.isdir(home) or _under(workdir, home):
        return {"hide": [], "read_only": []}
    prefixes = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    needed = prefixes | {os.path.dirname(os.path.realpath(sys.executable))}
    for entry in sys.path:
        path = os.path.realpath(entry) if entry else ""
        if os.path.basename(path) in ("site-packages", "dist-packages") and os.path.isdir(path):
            needed.add(path)
    inside = sorted(p for p in needed if _under(p, home))
    # a folder inside another one already kept is bound with it
    outer = [p for p in inside if not any(q != p and _under(p, q) for q in inside)]
    return {"hide": [home], "read_only": outer}


def _under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _minimal_env(workdir: str, extra: Mapping[str, str] | None) -> dict[str, str]:
    path = os.pathsep.join(
        dict.fromkeys([os.path.dirname(sys.executable), "/usr/local/bin", "/usr/bin", "/bin"])
    )
    env = {"PATH": path, "LANG": "C.UTF-8", "HOME": workdir, "TMPDIR": workdir}
    env.update(extra or {})
    return env


def _write_files(workdir: Path, files: Mapping[str, str | bytes], disk_mb: int) -> None:
    """Write ``files`` in the staging folder, which the sandbox copies into its own."""
    total = 0
    for name, content in files.items():
        relative = PurePosixPath(name)
        if relative.is_absolute() or ".." in relative.parts or not relative.parts:
            raise ConfigError(f"files: {name!r} must be a relative path inside the workdir")
        target = workdir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        data = content.encode() if isinstance(content, str) else content
        target.write_bytes(data)
        total += len(data)
    if total > disk_mb * 1024 * 1024 * 0.9:  # leave the candidate room to work
        raise ConfigError(f"files: {total:,} bytes do not fit in disk_mb={disk_mb}; raise it")


def _run(
    target: dict[str, Any],
    stdin: str | bytes,
    limits: _Limits,
    allow_network: bool,
    env: Mapping[str, str] | None,
    files: Mapping[str, str | bytes],
) -> SandboxResult:
    if not sys.platform.startswith("linux"):
        raise SandboxUnavailable(_refusal(f"this is {sys.platform}, not Linux"))
    uid = _sandbox_uid()
    folder = tempfile.mkdtemp(prefix="gepetto-sandbox-")
    try:
        workdir = Path(folder)
        _write_files(workdir, files, limits.disk_mb)
        workdir.chmod(0o700)
        status_read, status_write = os.pipe()
        config = {
            **target,
            "workdir": folder,
            "uid": uid,
            "allow_network": allow_network,
            "pid_ns": True,
            "mount_ns": True,
            "tmp_mb": min(limits.memory_mb, 64),
            **_hidden_folders(folder),
            "memory_mb": limits.memory_mb,
            "cpu_s": limits.cpu_s or max(1, int(limits.timeout_s + 0.999)),
            "max_processes": limits.max_processes,
            "disk_mb": limits.disk_mb,
            "max_file_bytes": 64 * 1024 * 1024,
            "max_open_files": 256,
            "status_fd": status_write,
        }
        try:
            result = _launch(
                config, stdin, limits, status_read, status_write, _minimal_env(folder, env)
            )
        finally:
            os.close(status_read)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return result


def _launch(
    config: dict[str, Any],
    stdin: str | bytes,
    limits: _Limits,
    status_read: int,
    status_write: int,
    env: dict[str, str],
) -> SandboxResult:
    with tempfile.TemporaryFile() as stdin_file:  # a file, not a pipe: nothing to pump
        stdin_file.write(stdin.encode() if isinstance(stdin, str) else stdin)
        stdin_file.seek(0)
        started = time.monotonic()
        try:
            process = subprocess.Popen(
                [sys.executable, "-I", "-S", str(LAUNCHER), marshal.dumps(config).hex()],
                stdin=stdin_file,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=config["workdir"],
                env=env,
                start_new_session=True,
                pass_fds=(status_write,),
            )
        finally:
            os.close(status_write)
    reader = _Reader(process, status_read, limits.max_output_bytes)
    try:
        limit = reader.collect(started + limits.timeout_s)
    finally:
        _stop(process, reader)
    duration = time.monotonic() - started
    status = reader.status()
    if "setup_error" in status:
        raise SandboxUnavailable(_refusal(str(status["setup_error"])))
    returncode = process.returncode
    if limit is not None:  # stopped from here: killed
        returncode = -signal.SIGKILL
    elif "signal" in status:
        returncode = -int(status["signal"])
    elif "exit" in status:
        returncode = int(status["exit"])
    cpu = status.get("cpu_s")
    if limit is None:
        limit = status.get("limit")
        if cpu is not None and returncode in (-signal.SIGXCPU, -signal.SIGKILL):
            limit = "cpu_time" if cpu >= config["cpu_s"] - 0.05 else limit
        if returncode == -signal.SIGXFSZ:
            limit = "file_size"
    stdout, stderr = reader.output()
    return SandboxResult(returncode, stdout, stderr, duration, limit, cpu)


class _Reader:
    """Reads stdout and stderr (each up to the output limit) and the launcher's status pipe."""

    def __init__(self, process: subprocess.Popen[bytes], status_fd: int, cap: int) -> None:
        if process.stdout is None or process.stderr is None:
            raise ValueError("both streams must be pipes")
        self.out, self.err = process.stdout.fileno(), process.stderr.fileno()
        self.status_fd = status_fd
        self.process = process
        self.caps = {self.out: cap, self.err: cap, status_fd: _STATUS_CAP}
        self.data: dict[int, bytearray] = {fd: bytearray() for fd in self.caps}
        self.over = False

    def collect(self, deadline: float) -> str | None:
        """Read until every stream is closed and the launcher has exited; the limit that
        stopped it, if one did. The launcher's exit is watched through a pidfd where there is
        one (``Popen.wait`` with a timeout polls, at up to 50 ms a step)."""
        exited = _pidfd(self.process.pid)
        with selectors.DefaultSelector() as selector:
            for fd in self.caps:
                selector.register(fd, selectors.EVENT_READ)
            if exited is not None:
                selector.register(exited, selectors.EVENT_READ)
            try:
                while selector.get_map():
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return "wall_time"
                    for key, _ in selector.select(remaining):
                        if key.fd == exited or self._read(int(key.fd)) == 0:
                            selector.unregister(key.fd)
                    if self.over:
                        return "output"
            finally:
                if exited is not None:
                    os.close(exited)
        try:
            self.process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            return "wall_time"
        return None

    def _read(self, fd: int) -> int | None:
        """Read once from ``fd``: the bytes read (0 at its end), ``None`` when none are ready."""
        try:
            chunk = os.read(fd, _READ_CHUNK)
        except BlockingIOError:
            return None
        room = self.caps[fd] - len(self.data[fd])
        self.data[fd] += chunk[: max(room, 0)]
        if len(chunk) > room and fd != self.status_fd:
            self.over = True
        return len(chunk)

    def status(self) -> dict[str, Any]:
        """What the launcher reported; later lines win (PID 1 writes its report last)."""
        os.set_blocking(self.status_fd, False)
        while self._read(self.status_fd) and len(self.data[self.status_fd]) < _STATUS_CAP:
            pass  # until no more is ready, its end, or the cap
        status: dict[str, Any] = {}
        for line in self.data[self.status_fd].decode("utf-8", "replace").splitlines():
            key, _, value = line.partition("=")
            with contextlib.suppress(ValueError):
                status[key] = _STATUS_FIELDS.get(key, str)(value)
        return status

    def output(self) -> tuple[str, str]:
        return (
            self.data[self.out].decode("utf-8", "replace"),
            self.data[self.err].decode("utf-8", "replace"),
        )


def _pidfd(pid: int) -> int | None:
    """A descriptor that becomes readable when ``pid`` exits (Linux 5.3+), or ``None``."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def _stop(process: subprocess.Popen[bytes], reader: _Reader) -> None:
    """Make sure nothing of the sandbox is left when this returns.

    A launcher that was waited for has exited after its PID 1, and PID 1 is not gone before
    every process of its PID namespace is: nothing is left. Otherwise the launcher's process
    group (the launcher, PID 1 and the worker) is killed while the launcher is not reaped yet,
    so its group id cannot have been given to another process; then PID 1's end is awaited.
    """
    if process.returncode is None:
        init = reader.status().get("init")
        watch = _pidfd(init) if isinstance(init, int) and init > 1 else None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        if watch is not None:  # readable once PID 1 and its whole namespace are gone
            with selectors.DefaultSelector() as selector:
                selector.register(watch, selectors.EVENT_READ)
                selector.select(_STOP_WAIT_S)
            os.close(watch)
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            stream.close()


def _refusal(error: str) -> str:
    return (
        f"the sandbox cannot be set up here, nothing was run: {error}. It needs Linux with "
        "PID and mount namespaces (and a network namespace unless allow_network=True): run "
        "as root, or enable unprivileged user namespaces (sysctl "
        "kernel.unprivileged_userns_clone=1, user.max_user_namespaces > 0, no AppArmor "
        "restriction on them)"
    )
