"""The ``run_dir`` argument: checked, created and probed before a run starts.

A run folder holds the journal (``journal.sqlite``), its lock files, the event log and the
LM response cache. :func:`check_run_dir` checks the value alone; :func:`prepare_run_dir`
also creates the folder and checks that a file can be written in it. Both raise
:class:`~gepetto.errors.ConfigError` naming ``run_dir`` and saying what to pass, so a bad
value is refused before any adapter or LM call is paid for.

Example:
    >>> check_run_dir("runs/a").name
    'a'
    >>> check_run_dir(None) is None
    True
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from gepetto.errors import ConfigError

__all__ = ["check_run_dir", "prepare_run_dir"]

_WHAT = "pass a folder path such as 'runs/my-run' (created if missing), or None to keep nothing"


def check_run_dir(run_dir: object) -> Path | None:
    """``run_dir`` as a :class:`~pathlib.Path` (``None`` stays ``None``); no file access.

    Raises:
        ConfigError: not a ``str`` or ``os.PathLike`` of ``str``, empty, or holding a NUL.
    """
    if run_dir is None:
        return None
    if isinstance(run_dir, bytes) or not isinstance(run_dir, str | os.PathLike):
        raise ConfigError(f"run_dir must be a str or pathlib.Path, got {run_dir!r}; {_WHAT}")
    text = os.fspath(run_dir)
    if not isinstance(text, str):
        raise ConfigError(f"run_dir must be a str or pathlib.Path, got {run_dir!r}; {_WHAT}")
    if not text.strip():
        raise ConfigError(f"run_dir={text!r} is empty; {_WHAT}")
    if "\0" in text:
        raise ConfigError(f"run_dir={text!r} holds a NUL character; {_WHAT}")
    return Path(text)


def prepare_run_dir(run_dir: object) -> Path | None:
    """Check ``run_dir``, create the folder if missing, and check it is writable.

    Raises:
        ConfigError: a bad value (:func:`check_run_dir`), a path that is a file or lies
            under one, a folder that cannot be created, or one where no file can be written.
    """
    path = check_run_dir(run_dir)
    if path is None:
        return None
    if path.exists() and not path.is_dir():
        raise ConfigError(
            f"run_dir={os.fspath(path)!r} is a file, not a folder; pass the path of a folder "
            "(a new one is created), or move the file away"
        )
    blocker = _file_on_the_way(path)
    if blocker is not None:
        raise ConfigError(
            f"run_dir={os.fspath(path)!r} cannot be created: {os.fspath(blocker)!r} is a file, "
            "not a folder; pass a path under a folder"
        )
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe, name = tempfile.mkstemp(prefix=".gepetto-probe-", dir=path)
    except OSError as error:
        reason = error.strerror or str(error)
        raise ConfigError(
            f"run_dir={os.fspath(path)!r} cannot be used ({reason}): pass a folder where this "
            "process can create files, or make this one writable"
        ) from error
    os.close(probe)
    with contextlib.suppress(OSError):
        os.unlink(name)
    return path


def _file_on_the_way(path: Path) -> Path | None:
    """The first existing ancestor of ``path`` that is not a folder, if any."""
    for parent in reversed(path.absolute().parents):
        if parent.exists() and not parent.is_dir():
            return parent
        if not parent.exists():
            return None
    return None
