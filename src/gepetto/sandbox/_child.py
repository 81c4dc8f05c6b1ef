"""The sandbox's launcher, run as a script: ``python -I -S _child.py CONFIG_JSON``.

It runs in a fresh interpreter started by :mod:`gepetto.sandbox._run`, never imported by
gepetto, and imports nothing of gepetto (the sandbox's ``sys.path`` does not hold it). It
does, in order:

1. in the launcher (still the caller's user): enter new namespaces with ``unshare``: network
   (only a loopback that is down), PID (so every process of the evaluation dies with it) and
   mount (private ``/tmp``, ``/var/tmp``, ``/dev/shm``; the caller's home hidden); as a
   non-root caller, a user namespace first. A namespace that was asked for and cannot be
   had stops here (fail closed);
2. fork the namespace's first process (PID 1), which mounts the private folders and a
   ``/proc`` of its own, then forks the worker and waits for it;
3. in the worker: set the resource limits, drop to the sandbox's own user id, forbid new
   privileges, and run the candidate (``exec`` a command, or run Python source in place, which
   spares a second interpreter start);
4. report on the status pipe how the worker ended (exit code or signal, CPU seconds used, the
   limit behind an uncaught ``MemoryError`` / ``EAGAIN`` / ``EFBIG`` / network error), then
   exit: the kernel kills whatever the worker left behind in the PID namespace.
"""

from __future__ import annotations

# Only cheap imports: this runs before every candidate (json, traceback, signal and typing
# would cost more than the rest of the launcher together; marshal is built in).
import ctypes
import errno
import marshal
import os
import resource
import sys

TYPE_CHECKING = False  # typing is not imported at run time, for the same reason
if TYPE_CHECKING:
    from typing import Any

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
SIGKILL = 9
PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38
SETUP_FAILED = 125  # exit code of a launcher that could not build the sandbox
KNOWN_LIMITS = {"memory", "processes", "file_size", "disk", "network", "filesystem"}

LIBC = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")


def _encode(text: str | None) -> bytes | None:
    return None if text is None else text.encode()


def _mount(source: str, target: str, fstype: str | None, flags: int, data: str | None) -> None:
    _check(
        LIBC.mount(_encode(source), _encode(target), _encode(fstype), flags, _encode(data)),
        f"mount {target}",
    )


def _report(status_fd: int, **fields: object) -> None:
    """One ``key=value`` line per field (values without line breaks)."""
    lines = "".join(
        f"{key}={str(value).splitlines()[0] if value else value}\n" for key, value in fields.items()
    )
    os.write(status_fd, lines.encode())


def _enter_namespaces(config: dict[str, Any]) -> None:
    flags = CLONE_NEWPID * config["pid_ns"] | CLONE_NEWNS * config["mount_ns"]
    flags |= CLONE_NEWNET * (not config["allow_network"])
    if not flags:
        return
    if os.geteuid() != 0:  # a user namespace gives the capabilities the others need
        uid, gid = os.getuid(), os.getgid()
        _check(LIBC.unshare(CLONE_NEWUSER), "unshare(user namespace)")
        with open("/proc/self/setgroups", "w") as file:
            file.write("deny")
        with open("/proc/self/uid_map", "w") as file:
            file.write(f"{uid} {uid} 1")
        with open("/proc/self/gid_map", "w") as file:
            file.write(f"{gid} {gid} 1")
    _check(LIBC.unshare(flags), "unshare(network, PID and mount namespaces)")


def _private_folders(config: dict[str, Any]) -> None:
    """Private, size-capped ``/tmp``-like folders and an empty home for the caller's, the
    interpreter's folders bound back read-only, a size-capped working directory at the same
    path holding a copy of the prepared one, and a ``/proc`` showing only the sandbox's
    processes."""
    workdir = config["workdir"]
    _mount("none", "/", None, MS_REC | MS_PRIVATE, None)
    keep = os.open(workdir, os.O_RDONLY | os.O_DIRECTORY)
    kept = [os.open(path, os.O_RDONLY | os.O_DIRECTORY) for path in config["read_only"]]
    size = f"size={config['tmp_mb']}m,mode=1777"
    for folder in ("/tmp", "/var/tmp", "/dev/shm", "/run/lock"):
        if os.path.isdir(folder) and not os.path.islink(folder):
            _mount("tmpfs", folder, "tmpfs", MS_NOSUID | MS_NODEV, size)
    for folder in config["hide"]:
        _mount("tmpfs", folder, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=755")
    for path, fd in zip(config["read_only"], kept, strict=True):
        os.makedirs(path, exist_ok=True)  # when it lay under a hidden folder
        _mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC, None)
        _mount("none", path, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_REC, None)
        os.close(fd)
    os.makedirs(workdir, exist_ok=True)  # it was hidden if it lay under one of them
    owner = "" if config["uid"] is None else f",uid={config['uid']},gid={config['uid']}"
    _mount("tmpfs", workdir, "tmpfs", MS_NOSUID | MS_NODEV, f"size={config['disk_mb']}m{owner}")
    os.chmod(workdir, 0o700)
    _copy_tree(f"/proc/self/fd/{keep}", workdir, config["uid"])
    os.close(keep)
    if config["pid_ns"]:
        _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None)
    os.chdir(workdir)


def _copy_tree(source: str, target: str, uid: int | None) -> None:
    """Copy the prepared files (modes kept) into the sandbox's own working directory."""
    for folder, _, names in os.walk(source):
        destination = os.path.normpath(os.path.join(target, os.path.relpath(folder, source)))
        os.makedirs(destination, exist_ok=True)
        paths = [destination]
        for name in names:
            with open(os.path.join(folder, name), "rb") as src:
                with open(os.path.join(destination, name), "wb") as dst:
                    while chunk := src.read(1 << 20):
                        dst.write(chunk)
                os.chmod(dst.name, os.fstat(src.fileno()).st_mode & 0o777)
            paths.append(os.path.join(destination, name))
        if uid is not None:
            for path in paths:
                os.chown(path, uid, uid)


def _limit(config: dict[str, Any]) -> None:
    memory = config["memory_mb"] * 1024 * 1024
    cpu = config["cpu_s"]
    limits = {
        resource.RLIMIT_AS: memory,
        resource.RLIMIT_CPU: (cpu, cpu + 1),
        resource.RLIMIT_NPROC: config["max_processes"],
        resource.RLIMIT_FSIZE: config["max_file_bytes"],
        resource.RLIMIT_CORE: 0,
        resource.RLIMIT_NOFILE: config["max_open_files"],
    }
    for kind, value in limits.items():
        soft, hard = value if isinstance(value, tuple) else (value, value)
        resource.setrlimit(kind, (soft, hard))


def _drop_privileges(config: dict[str, Any]) -> None:
    uid = config["uid"]
    if uid is not None and os.geteuid() == 0:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    _check(LIBC.prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0), "prctl(PDEATHSIG)")
    _check(LIBC.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")


def _limit_behind(error: BaseException) -> str | None:
    """The limit an uncaught exception points to, if any."""
    if isinstance(error, MemoryError):
        return "memory"
    if isinstance(error, OSError):
        return {
            errno.EAGAIN: "processes",
            errno.EFBIG: "file_size",
            errno.ENOSPC: "disk",
            errno.ENETUNREACH: "network",
            errno.EADDRNOTAVAIL: "network",
            errno.EACCES: "filesystem",
            errno.EROFS: "filesystem",
        }.get(error.errno or 0)
    return None


def _run_python(config: dict[str, Any], limit_fd: int) -> None:
    """Run the source as ``__main__``, then leave without the interpreter's slow teardown
    (what it owes the candidate is done first: non-daemon threads joined, ``atexit``
    handlers run, output flushed)."""
    import site  # not imported at start (-S): site-packages are found as the sandbox's user

    site.main()
    path = os.path.join(config["workdir"], config["script"])
    sys.argv = [config["script"], *config["argv"]]
    sys.path.insert(0, config["workdir"])
    main = type(sys)("__main__")
    main.__file__ = path
    sys.modules["__main__"] = main
    code = 0
    try:
        with open(path, "rb") as file:
            compiled = compile(file.read(), config["script"], "exec")
        exec(compiled, main.__dict__)
    except SystemExit as stop:
        code = _exit_code(stop)
    except BaseException as error:
        limit = _limit_behind(error)
        if limit is not None:
            os.write(limit_fd, limit.encode())
        import traceback

        trace = error.__traceback__
        traceback.print_exception(type(error), error, trace.tb_next if trace else None)
        code = 1
    _leave(code)


def _exit_code(stop: SystemExit) -> int:
    """The exit code ``sys.exit(value)`` gives (a message is printed, as Python does)."""
    if stop.code is None:
        return 0
    if isinstance(stop.code, int):
        return stop.code & 0xFF
    print(stop.code, file=sys.stderr)
    return 1


def _leave(code: int) -> None:
    if "threading" in sys.modules:
        sys.modules["threading"]._shutdown()
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:  # a closed or broken stream: nothing more can be said on it
            code = code or 120
    os._exit(code)


def _worker(config: dict[str, Any], status_fd: int, limit_fd: int) -> None:
    """Limit, drop privileges and run the candidate; returns only after Python source ran.

    The candidate never holds the status pipe (it could forge a report there); it may write
    on ``limit_fd`` only the name of the limit behind its end, which PID 1 checks."""
    try:
        _limit(config)
        _drop_privileges(config)
    except BaseException as error:
        _report(status_fd, setup_error=f"{type(error).__name__}: {error}")
        os._exit(SETUP_FAILED)
    os.close(status_fd)
    if config["mode"] == "python":
        _run_python(config, limit_fd)
        return
    os.close(limit_fd)
    try:
        os.execvp(config["argv"][0], config["argv"])
    except OSError as error:
        print(f"sandbox: cannot run {config['argv'][0]!r}: {error}", file=sys.stderr)
        sys.stderr.flush()
        os._exit(127 if isinstance(error, FileNotFoundError) else 126)  # as a shell does


def _init(config: dict[str, Any], status_fd: int) -> int:
    """PID 1 of the sandbox: set the folders up, fork the worker, report how it ended.

    Returns in the worker only (the write end of the limit pipe); PID 1 itself always leaves
    with ``os._exit``.
    """
    try:
        if config["mount_ns"]:
            _private_folders(config)
        limit_read, limit_write = os.pipe()
        pid = os.fork()
    except BaseException as error:
        _report(status_fd, setup_error=f"{type(error).__name__}: {error}")
        os._exit(SETUP_FAILED)
    if pid == 0:
        os.close(limit_read)
        return limit_write
    os.close(limit_write)
    _, status, usage = os.wait4(pid, 0)
    os.set_blocking(limit_read, False)
    try:
        limit = os.read(limit_read, 64).decode("ascii", "replace")
    except BlockingIOError:
        limit = ""
    report: dict[str, Any] = {"cpu_s": usage.ru_utime + usage.ru_stime}
    if limit in KNOWN_LIMITS:
        report["limit"] = limit
    if os.WIFSIGNALED(status):
        _report(status_fd, signal=os.WTERMSIG(status), **report)
        os._exit(128 + os.WTERMSIG(status))
    _report(status_fd, exit=os.WEXITSTATUS(status), **report)
    os._exit(os.WEXITSTATUS(status))


def main() -> int:
    """The launcher, then (after each fork) PID 1 and the worker. Neither of the last two
    returns: PID 1 and a Python worker leave with ``os._exit``, a command replaces the
    worker (``exec``)."""
    config = marshal.loads(bytes.fromhex(sys.argv[1]))
    status_fd = config["status_fd"]
    try:
        _enter_namespaces(config)
    except Exception as error:  # OSError, or no unshare in this libc (not Linux)
        _report(status_fd, setup_error=f"{type(error).__name__}: {error}")
        return SETUP_FAILED
    pid = os.fork()
    if pid:  # the launcher: outside the namespaces, waits for PID 1
        _report(status_fd, init=pid)
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else SETUP_FAILED
    limit_fd = _init(config, status_fd)
    _worker(config, status_fd, limit_fd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
