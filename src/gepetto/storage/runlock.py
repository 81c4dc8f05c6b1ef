"""Keeping a second process off a run: advisory file locks beside a journal file.

A run that is not shared (no ``worker=``) counts its budget and numbers its candidates
itself, so two processes running it at once would both spend the whole budget and write
candidate ids that collide. :class:`FileRunLocks` gives each run of a journal file a lock
file (``journal.sqlite.<run>.lock``) held with ``flock`` for the run's whole life:

- a run on its own holds it *exclusively*; the workers of a shared run hold it *shared*, so
  any number of workers run together, but never beside a process without ``worker=``;
- the kernel frees it when the process ends, however it ends (``kill -9`` included), so a
  crashed run can be resumed at once; nothing stale is left to clean up;
- ``flock`` belongs to an open file description: a second :class:`FileRunLocks` on the same
  file (a second ``optimize`` with the same ``run_dir`` in the same process) is refused too.
  One :class:`FileRunLocks` is re-entrant: several optimizers that share one storage object
  in one process (a notebook cell run again after an interrupt) may hold the same run.

Lock files are never deleted (deleting one while another process opens it would let two
processes lock different files). Without ``fcntl`` (Windows) runs are not locked. ``flock``
is unreliable on network file systems, where SQLite's own locks are too: use PostgreSQL.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from gepetto.storage.base import RunInUse, StorageError

if sys.platform != "win32":
    import fcntl

__all__ = ["FileRunLocks", "RunLock", "lock_file_path"]

_PLAIN_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def lock_file_path(journal: Path, run_id: str) -> Path:
    """The lock file of ``run_id`` in the journal file ``journal``.

    A run id made of letters, digits, ``_.-`` (64 at most) is used as it is; any other gets
    a hash, so no run id can reach outside the journal's folder.
    """
    if _PLAIN_RUN_ID.fullmatch(run_id):
        key = run_id
    else:
        key = "run-" + hashlib.sha256(run_id.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return journal.with_name(f"{journal.name}.{key}.lock")


@dataclass
class _Held:
    fd: int
    shared: bool
    count: int


class RunLock:
    """One hold on a run's lock; :meth:`release` it once (again is harmless)."""

    def __init__(self, owner: FileRunLocks | None, run_id: str) -> None:
        self._owner = owner
        self.run_id = run_id

    def release(self) -> None:
        owner, self._owner = self._owner, None
        if owner is not None:
            owner._release(self.run_id)


class FileRunLocks:
    """The run locks of one storage object on one journal file.

    Args:
        journal: the journal file; lock files are made beside it.
    """

    def __init__(self, journal: Path) -> None:
        self.journal = journal
        self._held: dict[str, _Held] = {}
        self._lock = threading.Lock()

    def acquire(self, run_id: str, *, shared: bool) -> RunLock:
        """Hold ``run_id``: exclusively, or ``shared`` with the other workers of the run.

        Raises:
            RunInUse: another process (or another storage object of this process) holds the
                run in a way that excludes this hold.
            StorageError: the lock file cannot be created (a read-only folder, say).
        """
        if sys.platform == "win32":  # pragma: no cover - no flock: runs are not locked
            return RunLock(None, run_id)
        with self._lock:
            held = self._held.get(run_id)
            if held is not None:
                if held.shared != shared:
                    kind = "as a worker (worker=)" if held.shared else "without worker="
                    raise RunInUse(
                        f"run {run_id!r} of {self.journal} is already being run in this process "
                        f"{kind}; a run is either run by one process alone, or shared by "
                        "workers that all pass worker=True"
                    )
                held.count += 1
                return RunLock(self, run_id)
            path = lock_file_path(self.journal, run_id)
            fd = self._open(path)
            try:
                fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
            except OSError as error:
                if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise StorageError(
                        f"cannot lock {path} ({error}); the journal must be on a local disk "
                        "(for runs on a network file system, use storage='postgresql://...')"
                    ) from error
                message = self._conflict(run_id, shared, fd)
                os.close(fd)
                raise RunInUse(message) from None
            if not shared:
                _write_holder(fd)
            self._held[run_id] = _Held(fd, shared, 1)
            return RunLock(self, run_id)

    def _open(self, path: Path) -> int:
        try:
            return os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        except OSError as error:
            raise StorageError(
                f"cannot create the run's lock file {path} ({error.strerror or error}); the "
                f"folder {path.parent} must be writable for a run to be journaled there"
            ) from error

    def _conflict(self, run_id: str, shared: bool, fd: int) -> str:
        """Why the hold on ``fd`` was refused, and what to do."""
        where = f"run {run_id!r} of {self.journal}"
        if not shared and _held_by_workers(fd):
            return (
                f"{where} is being run by worker processes (worker=); join them with "
                "worker=True, wait for them to finish, or use another run_dir / run_id"
            )
        holder = _read_holder(fd)
        if holder == str(os.getpid()):
            who = "another optimize() of this process (another storage object on this file)"
        else:
            who = f"process {holder}" if holder else "another process"
        if shared:
            return (
                f"{where} is being run by {who} without worker=; workers can only join a run "
                "whose every process passes worker=True. Wait for it to finish (or stop it), "
                "or use another run_dir / run_id"
            )
        return (
            f"{where} is in use by {who}; two processes on one run would both spend its whole "
            "budget. Wait for it to finish or stop it (the run can then be resumed), use "
            "another run_dir or run_id, or pass worker=True to every process to share one "
            "run and one budget"
        )

    def _release(self, run_id: str) -> None:
        with self._lock:
            held = self._held.get(run_id)
            if held is None:
                return
            held.count -= 1
            if held.count == 0:
                del self._held[run_id]
                os.close(held.fd)  # closing the only descriptor frees the flock

    def close(self) -> None:
        """Release every run this object holds (the storage is being closed)."""
        with self._lock:
            for held in self._held.values():
                os.close(held.fd)
            self._held.clear()


def _write_holder(fd: int) -> None:
    """Write this process's id into the lock file (for the message of a refused process)."""
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError:  # the id is only a courtesy
        pass


def _held_by_workers(fd: int) -> bool:
    """Whether the run's holders are workers (a shared hold can be taken beside them)."""
    if sys.platform == "win32":  # pragma: no cover
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return False
    fcntl.flock(fd, fcntl.LOCK_UN)
    return True


def _read_holder(fd: int) -> str | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return text if text.isdigit() else None
