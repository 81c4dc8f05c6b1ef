"""Run candidate code (LLM-written) in a separate, limited process: never in the optimizer's.

:func:`run_python` runs Python source, :func:`run_command` a program; both return a
:class:`SandboxResult` whose :meth:`~SandboxResult.as_side_info` is ready to be an
``optimize_anything`` evaluator's side information. Every run gets:

- a process of its own, started from a fresh interpreter (never a fork of the optimizer);
- a **wall-time** limit (``timeout_s``): the whole sandbox is killed when it is reached;
- a **CPU-time** limit (``RLIMIT_CPU``, ``cpu_s``);
- a **memory** limit (``RLIMIT_AS``, ``memory_mb``): allocations past it fail
  (``MemoryError`` in Python);
- a **process** limit (``RLIMIT_NPROC``, ``max_processes``): a fork flood fails to fork;
- an **output** limit (``max_output_bytes`` per stream): reading stops and the sandbox is
  killed as soon as it is passed; a **file-size** limit (``RLIMIT_FSIZE``);
- a fresh **working directory** of ``disk_mb`` (a tmpfs of its own holding the prepared
  ``files``), gone with the run;
- a **minimal environment** (``PATH``, ``LANG``, ``HOME``/``TMPDIR`` = the working
  directory): no API key or other variable of the optimizer's process;
- **no network** unless ``allow_network=True``: a network namespace of its own, whose only
  interface is a loopback that is down (nothing, not even ``127.0.0.1``, can be reached);
- **everything killed at the end**: the candidate runs in a PID namespace of its own, so
  every process it started dies with it, even one that left its process group.

How (Linux only; the launcher is :mod:`gepetto.sandbox._child`): as root, the sandbox
enters new network, PID and mount namespaces, mounts private ``/tmp``, ``/var/tmp``,
``/dev/shm`` and ``/run/lock`` (64 MiB tmpfs each) and its own ``/proc``, then drops to a
user id of its own (a fresh number per run, far above real accounts, owning only the working
directory) with ``no_new_privs`` set. As another user, it needs unprivileged user namespaces
for the same namespaces and keeps the caller's user id.

What is *not* prevented, honestly:

- files that are world-writable on the host outside the folders above can be written, and
  world-readable files can be read (source code, ``/etc``): keep secrets in files only their
  owner can read. As a non-root caller, the candidate runs as the caller's user and can
  write anything that user can (the private ``/tmp`` still applies);
- the memory limit is on address space per process, not on the total of all processes
  (``max_processes`` bounds the product), and the tmpfs folders are memory as well;
- no seccomp filter: every system call is allowed, including to the kernel's attack surface;
- where neither root nor unprivileged user namespaces are available the sandbox refuses to
  run (:class:`~gepetto.errors.SandboxUnavailable`), rather than run without the namespaces.

Example:
    >>> result = run_python("import os; print(sorted(os.environ))")
    >>> result.stdout
    "['HOME', 'LANG', 'PATH', 'TMPDIR']\\n"
    >>> run_python("while True: pass", timeout_s=0.5).limit
    'wall_time'
"""

from __future__ import annotations

from gepetto.errors import SandboxUnavailable
from gepetto.sandbox._run import LIMITS, SandboxResult, run_command, run_python

__all__ = ["LIMITS", "SandboxResult", "SandboxUnavailable", "run_command", "run_python"]
