"""Run a check as an unprivileged user, so that file permissions apply even under root.

Tests run as root in some containers, where a read-only folder is still writable. There,
:func:`as_nobody` forks, drops to the ``nobody`` user in the child, runs the check and sends
back what it returned (or the exception it raised, as ``"ExceptionName: message"``). As any
other user it runs the check directly.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

NOBODY = 65534


def outcome(check: Callable[[], object]) -> str:
    """``"ok: <repr of the result>"`` or ``"<ExceptionName>: <message>"``."""
    try:
        return f"ok: {check()!r}"
    except BaseException as error:
        return f"{type(error).__name__}: {error}"


def as_nobody(check: Callable[[], object], timeout: float = 30.0) -> str:
    """The :func:`outcome` of ``check``, run as user ``nobody`` when this process is root."""
    if os.geteuid() != 0:
        return outcome(check)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop privileges, check, report, and leave at once
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            os.write(write, outcome(check).encode("utf-8", "replace"))
        finally:
            os._exit(0)
    os.close(write)
    deadline = time.monotonic() + timeout
    while os.waitpid(pid, os.WNOHANG) == (0, 0):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(read)
            return "timeout: the unprivileged check did not finish"
        time.sleep(0.01)
    chunks = []
    while chunk := os.read(read, 65536):
        chunks.append(chunk)
    os.close(read)
    return b"".join(chunks).decode("utf-8")


@contextlib.contextmanager
def shared_folder() -> Iterator[Path]:
    """A fresh folder that user ``nobody`` can reach (pytest's ``tmp_path`` is private to
    root), removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="gepetto-hostile-"))
    folder.chmod(0o777)
    try:
        yield folder
    finally:
        for path in folder.rglob("*"):
            with contextlib.suppress(OSError):
                path.chmod(0o777)
        shutil.rmtree(folder, ignore_errors=True)
