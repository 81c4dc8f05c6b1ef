"""gepetto.sandbox against real hostile candidates.

Each candidate below is run for real; each must be stopped, scored 0 with a clear reason,
and leave this process and the machine as they were. The only network contact is with a
listener this file opens on 127.0.0.1 (never any other address, even expecting a refusal).
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gepetto.errors import ConfigError, SandboxUnavailable
from gepetto.sandbox import LIMITS, SandboxResult, run_command, run_python
from gepetto.sandbox import _run as sandbox_run

pytestmark = pytest.mark.skipif(
    not hasattr(os, "fork") or not Path("/proc/self/ns").exists(), reason="Linux only"
)

SECRET = "sk-sandbox-SECRET-9b2e41"


def score(result: SandboxResult, expected: str) -> float:
    """The evaluator an optimizer would use: 1 only for a clean run printing ``expected``."""
    return 1.0 if result.ok and result.stdout.strip() == expected else 0.0


def sandbox_processes() -> list[int]:
    """Processes on this machine running as one of the user ids this test process gave its
    sandboxes: other test processes (pytest-xdist workers) run sandboxes of their own at the
    same time, under ids of their own pid."""
    found, me = [], os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("Uid:") and sandbox_run.is_sandbox_uid_of(
                    int(line.split()[1]), me
                ):
                    found.append(int(entry.name))
    return found


def new_children() -> list[int]:
    """This process's children that were not there when this module's first test started
    (the test session may keep children of its own, such as a local model server)."""
    return sorted(set(my_children()) - set(_BASELINE))


def my_children() -> list[int]:
    me = str(os.getpid())
    children = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError, IndexError):
            if (
                entry.name.isdigit()
                and (entry / "stat").read_text().rsplit(")", 1)[1].split()[1] == me
            ):
                children.append(int(entry.name))
    return children


_BASELINE: list[int] = []


@pytest.fixture(autouse=True, scope="module")
def _children_before_the_sandbox_tests() -> None:
    _BASELINE[:] = my_children()


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A TCP listener on 127.0.0.1 (the only address any test here connects to)."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.3)
    yield server
    server.close()


def accepted(server: socket.socket) -> bool:
    try:
        connection, _ = server.accept()
    except TimeoutError:
        return False
    connection.close()
    return True


# --- the hostile candidates ------------------------------------------------------------------


def test_an_infinite_loop_is_killed_at_the_wall_time_limit() -> None:
    started = time.monotonic()
    result = run_python("while True:\n    pass\n", timeout_s=1.0)
    assert result.limit == "wall_time"
    assert result.returncode < 0
    assert 1.0 <= result.duration_s < 3.0
    assert time.monotonic() - started < 4.0
    assert score(result, "") == 0.0
    assert "wall-time limit" in result.as_side_info()["outcome"]
    assert sandbox_processes() == []


def test_an_infinite_loop_is_killed_at_the_cpu_time_limit() -> None:
    result = run_python("while True:\n    pass\n", timeout_s=10.0, cpu_s=1)
    assert result.limit == "cpu_time"
    assert result.duration_s < 5.0
    assert result.cpu_s is not None and result.cpu_s >= 0.95
    assert "CPU-time" in result.reason()


@pytest.mark.slow
def test_a_bounded_fork_flood_hits_the_process_limit_and_leaves_nothing_behind() -> None:
    before = len(list(Path("/proc").glob("[0-9]*")))
    flood = (
        "import os, time\n"
        "for _ in range(300):\n"
        "    if os.fork() == 0:\n"
        "        os.setsid()  # leave the process group, as a daemon would\n"
        "        time.sleep(60)\n"
        "        os._exit(0)\n"
        "print('flooded')\n"
    )
    result = run_python(flood, max_processes=32, timeout_s=20.0)
    assert result.limit == "processes"
    assert "BlockingIOError" in result.stderr
    assert score(result, "flooded") == 0.0
    assert "process limit" in result.reason()
    assert sandbox_processes() == []  # even the children that left the group are gone
    assert new_children() == []
    assert len(list(Path("/proc").glob("[0-9]*"))) <= before + 5


def test_children_left_running_die_with_the_sandbox() -> None:
    source = (
        "import os, time\n"
        "for _ in range(3):\n"
        "    if os.fork() == 0:\n"
        "        os.setsid()\n"
        "        time.sleep(60)\n"
        "        os._exit(0)\n"
        "print('parent done')\n"
    )
    result = run_python(source, timeout_s=10.0)
    assert result.ok and result.stdout == "parent done\n"
    assert result.duration_s < 5.0  # the sleepers held no pipe open past the end
    assert sandbox_processes() == []


def test_allocating_4_gb_under_512_mb_fails_with_the_memory_limit() -> None:
    result = run_python("data = bytearray(4 * 1024**3)\nprint(len(data))\n", memory_mb=512)
    assert result.limit == "memory"
    assert "MemoryError" in result.stderr
    assert score(result, str(4 * 1024**3)) == 0.0
    assert "memory limit" in result.as_side_info()["outcome"]


@pytest.fixture
def outside_folder() -> Iterator[Path]:
    """A folder outside /tmp and /var/tmp (which the sandbox replaces with its own), removed
    afterwards: beside this test, or in /var/lib when the checkout itself is under /tmp."""
    here = Path(__file__).resolve().parent
    private = ("/tmp/", "/var/tmp/", "/dev/shm/")
    parent = here
    if f"{here}/".startswith(private) and os.access("/var/lib", os.W_OK):
        parent = Path("/var/lib")
    folder = Path(tempfile.mkdtemp(prefix=".sandbox-target-", dir=parent))
    yield folder
    shutil.rmtree(folder)


def test_writing_outside_the_working_directory_is_refused_or_private(outside_folder: Path) -> None:
    target = outside_folder / "planted.txt"
    result = run_python(f"open({str(target)!r}, 'w').write('pwned')\n")
    assert not target.exists()
    if f"{outside_folder}/".startswith(("/tmp/", "/var/tmp/", "/dev/shm/")):
        assert "FileNotFoundError" in result.stderr  # hidden by the sandbox's own /tmp
    else:
        assert result.limit == "filesystem"
        assert "PermissionError" in result.stderr
    assert score(result, "") == 0.0

    home = Path.home() / "planted-by-sandbox.txt"
    result = run_python(f"open({str(home)!r}, 'w').write('pwned')\n")
    assert result.returncode != 0
    assert not home.exists()

    marker = f"/tmp/gepetto-sandbox-planted-{os.getpid()}"
    result = run_python(f"open({marker!r}, 'w').write('x')\nprint(open({marker!r}).read())\n")
    assert result.ok and result.stdout == "x\n"  # allowed, in a /tmp of its own ...
    assert not Path(marker).exists()  # ... that vanished with it


def test_the_working_directory_is_fresh_writable_and_removed() -> None:
    result = run_python(
        "import os\nopen('out.txt', 'w').write('ok')\nprint(os.getcwd())\nprint(os.listdir())\n",
        files={"data/input.txt": "hello"},
    )
    assert result.ok, result.stderr
    workdir, listing = result.stdout.splitlines()
    assert sorted(eval(listing)) == ["data", "main.py", "out.txt"]
    assert not Path(workdir).exists()


def test_an_api_key_in_the_optimizers_environment_cannot_be_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    source = (
        "import os\n"
        "print(os.environ.get('OPENAI_API_KEY'))\n"
        f"print(open('/proc/{os.getpid()}/environ').read())\n"  # the optimizer's environment
    )
    result = run_python(source)
    assert SECRET not in result.stdout + result.stderr
    assert result.stdout.startswith("None\n")
    assert "FileNotFoundError" in result.stderr  # the optimizer's process is not even visible
    assert score(result, SECRET) == 0.0
    result = run_command(["env"])
    assert SECRET not in result.stdout
    assert sorted(line.split("=")[0] for line in result.stdout.splitlines()) == [
        "HOME",
        "LANG",
        "PATH",
        "TMPDIR",
    ]


def test_connecting_to_a_local_listener_is_impossible(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    source = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
    result = run_python(source)
    assert result.limit == "network"
    assert "Network is unreachable" in result.stderr
    assert "network is not available" in result.reason()
    assert not accepted(listener)


def test_allow_network_reaches_the_local_listener(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    source = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
    result = run_python(source, allow_network=True)
    assert result.ok, result.stderr
    assert accepted(listener)


def test_printing_1_gb_is_cut_at_the_output_limit_quickly() -> None:
    source = (
        "import sys\nchunk = 'x' * 65536\nfor _ in range(16384):\n    sys.stdout.write(chunk)\n"
    )
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB
    started = time.monotonic()
    result = run_python(source, max_output_bytes=100_000, timeout_s=30.0)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before < 50_000
    assert result.limit == "output"
    assert len(result.stdout) == 100_000
    assert time.monotonic() - started < 3.0
    assert "output limit" in result.as_side_info()["outcome"]
    assert sandbox_processes() == []


def test_a_giant_file_hits_the_file_size_limit() -> None:
    source = "with open('big', 'wb') as f:\n    f.write(b'x' * (80 * 1024 * 1024))\n"
    result = run_python(source, memory_mb=1024)
    assert result.limit == "file_size"
    assert "File too large" in result.stderr


def test_the_test_process_is_unharmed_by_all_of_the_above() -> None:
    assert new_children() == []
    assert sandbox_processes() == []
    assert run_python("print('still fine')").stdout == "still fine\n"


# --- the ordinary contract -------------------------------------------------------------------


def test_stdin_args_env_and_exit_codes() -> None:
    result = run_python(
        "import os, sys\nprint(sys.stdin.read().upper(), sys.argv[1:], os.environ['MODE'])\n"
        "sys.exit(3)\n",
        stdin="abc",
        args=["--fast"],
        env={"MODE": "test"},
    )
    assert result.returncode == 3
    assert result.limit is None and not result.ok
    assert result.stdout == "ABC ['--fast'] test\n"
    assert result.reason() == "exited with code 3"


def test_a_traceback_names_the_candidates_own_lines_only() -> None:
    result = run_python("def f():\n    return 1 / 0\n\nf()\n")
    assert result.returncode == 1 and result.limit is None
    assert result.stderr.startswith('Traceback (most recent call last):\n  File "main.py"')
    assert "_child.py" not in result.stderr
    assert result.stderr.rstrip().endswith("ZeroDivisionError: division by zero")


def test_run_command_runs_a_program_with_the_same_limits() -> None:
    result = run_command(["sh", "-c", "cat; echo err >&2; exit 4"], stdin=b"in\n")
    assert (result.returncode, result.stdout, result.stderr) == (4, "in\n", "err\n")
    assert run_command(["sleep", "30"], timeout_s=0.5).limit == "wall_time"
    missing = run_command(["no-such-program-here"])
    assert missing.returncode == 127 and "cannot run" in missing.stderr


def test_side_info_is_ready_for_optimize_anything() -> None:
    result = run_python("print('a' * 50)\nraise SystemExit('bad answer')\n")
    info = result.as_side_info(max_chars=12)
    assert info["outcome"] == "exited with code 1"
    assert info["stdout"] == "…" + "a" * 11 + "\n"
    assert "bad answer" in info["stderr"]
    assert result.side_info() == result.as_side_info()
    assert set(LIMITS) >= {"wall_time", "memory", "output"}


@pytest.mark.parametrize(
    ("keyword", "value"),
    [("timeout_s", 0), ("memory_mb", -1), ("max_output_bytes", 0), ("cpu_s", 0)],
)
def test_bad_limits_raise_config_error(keyword: str, value: int) -> None:
    with pytest.raises(ConfigError, match=keyword):
        run_python("pass", **{keyword: value})


def test_files_must_stay_inside_the_working_directory() -> None:
    for name in ("/etc/passwd", "../escape.txt", "main.py"):
        with pytest.raises(ConfigError):
            run_python("pass", files={name: "x"})
    with pytest.raises(ConfigError):
        run_command([])


def test_a_sandbox_that_cannot_be_built_refuses_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A launcher that fails as an unshare refused by the kernel would: nothing runs.
    fake = tmp_path / "launcher.py"
    fake.write_text(
        "import marshal, os, sys\n"
        "config = marshal.loads(bytes.fromhex(sys.argv[1]))\n"
        "os.write(config['status_fd'], b'setup_error=unshare: Operation not permitted\\n')\n"
        "sys.exit(125)\n"
    )
    monkeypatch.setattr(sandbox_run, "LAUNCHER", fake)
    with pytest.raises(SandboxUnavailable, match="user namespaces") as error:
        run_python("print('never')")
    assert "Operation not permitted" in str(error.value)


def test_threads_are_joined_and_atexit_handlers_run_before_the_end() -> None:
    source = (
        "import atexit, threading, time\n"
        "atexit.register(lambda: print('atexit ran', flush=True))\n"
        "def late():\n"
        "    time.sleep(0.2)\n"
        "    print('thread done', flush=True)\n"
        "threading.Thread(target=late).start()\n"
        "print('main done', end='')\n"  # unflushed at the end: must still come out
        "print()\n"
    )
    result = run_python(source)
    assert result.ok, result.stderr
    assert result.stdout == "main done\nthread done\natexit ran\n"


def test_optimize_anything_reflects_on_what_the_sandbox_reported() -> None:
    import importlib.util

    import gepetto
    from gepetto import EngineConfig, GEPAConfig, ReflectionConfig
    from gepetto.testing import ScriptedLM

    path = Path(__file__).parent.parent / "examples" / "sandboxed_code_evolution.py"
    spec = importlib.util.spec_from_file_location("sandboxed_code_evolution", path)
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    lm = ScriptedLM(example.SCRIPTED_REPLIES, repeat_last=True)
    result = gepetto.optimize_anything(
        example.SEED,
        evaluator=example.evaluate,
        config=GEPAConfig(
            engine=EngineConfig(max_metric_calls=8),
            reflection=ReflectionConfig(reflection_lm=lm),
        ),
    )
    assert result.best_score == 1.0
    assert "(values[middle - 1] + values[middle]) / 2" in result.best_candidate
    assert "expected 2.5" in str(lm.prompts[0])  # the seed's failures, from the sandbox
    hanging = example.SCRIPTED_REPLIES[0].strip("`\n")
    score, side_info = example.evaluate(hanging)  # the first proposal: killed and scored 0
    assert score == 0.0
    assert side_info["limit"] == "wall_time"
    assert side_info["outcome"] == "killed: wall-time limit reached"
    assert sandbox_processes() == []


SYSTEM_PYTHON = Path("/usr/bin/python3")


@pytest.fixture
def readable_src() -> Iterator[Path]:
    """A copy of the gepetto package that any user can read: the checkout may sit in a
    folder only root can enter (``mktemp -d`` makes mode 700)."""
    folder = Path(tempfile.mkdtemp(prefix="gepetto-src-"))
    try:
        folder.chmod(0o755)
        package = Path(__file__).parent.parent / "src" / "gepetto"
        shutil.copytree(package, folder / "gepetto", ignore=shutil.ignore_patterns("__pycache__"))
        for path in folder.rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to start a non-root caller")
@pytest.mark.skipif(not SYSTEM_PYTHON.exists(), reason="no world-readable system Python 3")
def test_a_non_root_caller_gets_the_namespaces_through_a_user_namespace(
    listener: socket.socket, readable_src: Path
) -> None:
    port = listener.getsockname()[1]
    script = (
        "import sys\n"
        f"sys.path.insert(0, {str(readable_src)!r})\n"
        "from gepetto.sandbox import run_python\n"
        "flood = 'import os, time\\nfor _ in range(100):\\n    if os.fork() == 0:\\n"
        "        time.sleep(30)\\n        os._exit(0)\\n'\n"
        "print(run_python(flood, max_processes=16).limit)\n"
        "connect = 'import socket\\nsocket.create_connection((\"127.0.0.1\", %d), timeout=2)'\n"
        f"print(run_python(connect % {port}).limit)\n"
        "print(run_python('while True: pass', timeout_s=0.5).limit)\n"
    )
    done = subprocess.run(
        [str(SYSTEM_PYTHON), "-I", "-c", script],
        user=65534,
        group=65534,
        extra_groups=[],
        env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"},
        cwd="/",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if "SandboxUnavailable" in done.stderr:  # no unprivileged user namespaces here
        assert "enable unprivileged user namespaces" in done.stderr
        pytest.skip("unprivileged user namespaces are not available: the refusal was clear")
    if "SyntaxError" in done.stderr or "ImportError" in done.stderr:
        pytest.skip(f"the system Python cannot import gepetto: {done.stderr[-200:]}")
    assert done.stdout.split() == ["processes", "network", "wall_time"], done.stderr
    assert not accepted(listener)
    assert sandbox_processes() == []


def test_runs_from_several_threads_at_once_stay_apart() -> None:
    from concurrent.futures import ThreadPoolExecutor

    source = "import os, sys\nprint(sys.stdin.read(), os.getuid(), os.getcwd())\n"
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda i: run_python(source, stdin=str(i)), range(8)))
    assert all(result.ok for result in results), [r.stderr for r in results if not r.ok]
    lines = [result.stdout.split() for result in results]
    assert [line[0] for line in lines] == [str(i) for i in range(8)]
    assert len({line[2] for line in lines}) == 8  # a working directory each
    if os.geteuid() == 0:
        assert len({line[1] for line in lines}) == 8  # and a user id each


def test_filling_the_disk_stops_at_the_working_directorys_size() -> None:
    source = (
        "chunk = b'x' * (1024 * 1024)\n"
        "for i in range(40):\n"
        "    with open(f'fill{i}', 'wb') as f:\n"
        "        for _ in range(20):\n"
        "            f.write(chunk)\n"
    )
    result = run_python(source, disk_mb=64)
    assert result.limit == "disk"
    assert "No space left on device" in result.stderr
    assert "disk limit" in result.reason()
    with pytest.raises(ConfigError, match="disk_mb"):
        run_python("pass", files={"big.bin": b"x" * (2 * 1024 * 1024)}, disk_mb=2)


def test_run_command_runs_prepared_files() -> None:
    result = run_command(["./tool.sh", "arg"], files={"tool.sh": "#!/bin/sh\necho ran $1\n"})
    assert result.returncode == 126  # written without the executable bit: refused, as sh does
    result = run_command(
        ["sh", "-c", "chmod +x tool.sh && ./tool.sh arg"],
        files={"tool.sh": "#!/bin/sh\necho ran $1\n"},
    )
    assert result.ok and result.stdout == "ran arg\n", result.stderr


def test_signalling_everything_or_regaining_root_reaches_nothing_outside() -> None:
    source = (
        "import os, signal\n"
        "for attempt in (lambda: os.setuid(0),\n"
        f"                lambda: os.kill({os.getpid()}, signal.SIGKILL),  # this test's pid\n"
        "                lambda: os.kill(1, signal.SIGKILL)):  # the sandbox's PID 1\n"
        "    try:\n"
        "        attempt()\n"
        "        print('allowed')\n"
        "    except OSError as error:\n"
        "        print(type(error).__name__)\n"
        "try:\n"
        "    os.kill(-1, signal.SIGKILL)  # every process it may signal: none but itself\n"
        "except ProcessLookupError:\n"
        "    print('none to signal')\n"
    )
    result = run_python(source)
    lines = result.stdout.splitlines()
    if os.geteuid() == 0:
        assert lines[:3] == ["PermissionError", "ProcessLookupError", "PermissionError"]
    assert lines[3] == "none to signal"
    assert result.ok
    assert new_children() == []


def test_a_key_file_in_the_callers_home_is_hidden() -> None:
    key_file = Path.home() / f".gepetto-sandbox-test-key-{os.getpid()}"
    key_file.write_text(SECRET)
    key_file.chmod(0o644)  # readable by anyone on the host: the hidden home still protects it
    try:
        result = run_python(f"print(open({str(key_file)!r}).read())\n")
    finally:
        key_file.unlink()
    assert SECRET not in result.stdout + result.stderr
    assert "FileNotFoundError" in result.stderr
    assert score(result, SECRET) == 0.0
