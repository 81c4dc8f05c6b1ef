"""The portable llama-server: build profile, binary lookup, the one-token probe.

The fast tests check the choices (which CPU features are compiled in, which binary is
used, what a user is told when a binary cannot run here). A binary that dies with SIGILL
at its first completion is played by a small Python HTTP server that kills itself with
SIGILL: the real prebuilt binary that does so on AMD runs fine on Intel, so it cannot
serve as a test on both. The slow tests check the real cached build: that its CPU
library holds no instruction beyond the AVX2 baseline (so it runs on Intel and AMD
machines alike, whichever CI has) and that it serves a real completion here.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import signal
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from gepetto.lm import _models, _server_build, local
from gepetto.lm._server_build import (
    AVX2_PROFILE,
    GENERIC_PROFILE,
    X86_64_PROFILE,
    choose_profile,
    cpu_features,
)
from gepetto.lm.local import LocalServer, LocalServerError, explain_exit

_EPYC = "fpu sse sse2 ssse3 sse4_1 sse4_2 avx avx2 fma f16c bmi1 bmi2 avx512f avx512bw avx512vl"
AMD_EPYC_FLAGS = frozenset([*_EPYC.split(), "avx512_vnni", "avx512_bf16"])
INTEL_XEON_FLAGS = AMD_EPYC_FLAGS | {"avx_vnni", "amx_tile", "amx_int8", "amx_bf16"}

# Instructions or registers outside the AVX2/FMA/F16C/BMI2 baseline, as objdump prints
# them: AVX-512 registers and mask registers, VNNI dot products (AVX-VNNI prints {vex}),
# AMX tiles.
_BEYOND_BASELINE = re.compile(
    r"%zmm\d|%k[1-7]\b|\bkmov[bwdq]\b|\bvpdp(?:bu|ws)sds?\b|\{vex\}|\btdpb|\bldtilecfg\b"
)


@pytest.mark.parametrize("flags", [AMD_EPYC_FLAGS, INTEL_XEON_FLAGS])
def test_intel_and_amd_get_the_same_avx2_baseline(flags: frozenset[str]) -> None:
    profile = choose_profile(flags, machine="x86_64")
    assert profile is AVX2_PROFILE
    options = set(profile.cmake_options) | set(_server_build._COMMON_CMAKE_OPTIONS)
    assert "-DGGML_NATIVE=OFF" in options
    for feature in ("AVX512", "AVX_VNNI", "AMX_TILE", "AMX_INT8"):
        assert f"-DGGML_{feature}=OFF" in options
    assert not any("march=native" in option for option in options)


def test_old_x86_and_other_architectures_get_a_baseline_they_run() -> None:
    assert choose_profile(frozenset({"sse2", "avx"}), machine="x86_64") is X86_64_PROFILE
    assert choose_profile(frozenset(), machine="aarch64") is GENERIC_PROFILE


def test_the_build_configures_no_download() -> None:
    options = _server_build._COMMON_CMAKE_OPTIONS
    assert "-DLLAMA_CURL=OFF" in options
    assert "-DLLAMA_USE_PREBUILT_UI=OFF" in options


def test_cpu_features_are_read_from_cpuinfo(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx2 fma\n")
    assert cpu_features(cpuinfo) == {"fpu", "avx2", "fma"}
    assert _server_build.cpu_model_name(cpuinfo) == "AMD EPYC"
    assert cpu_features(tmp_path / "missing") == frozenset()


def test_sigill_is_explained_with_the_missing_features(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local, "cpu_features", lambda: AMD_EPYC_FLAGS)
    message = explain_exit(-signal.SIGILL, "/opt/llama-server")
    assert "SIGILL (illegal instruction)" in message
    lacks = message.split("it lacks", 1)[1]
    assert "avx_vnni" in lacks
    assert "amx_tile" in lacks
    assert "avx512_vnni" not in lacks
    assert "python -m gepetto.lm.install install --server" in message
    assert "GEPETTO_LLAMA_SERVER" in message


def test_other_exits_are_named() -> None:
    assert "SIGSEGV" in explain_exit(-signal.SIGSEGV, "x")
    assert "SIGKILL" in explain_exit(-signal.SIGKILL, "x")
    assert "exited with code 3" in explain_exit(3, "x")


def _fake_server(tmp_path: Path, on_completion: str) -> Path:
    """An executable that answers /health like llama-server and runs ``on_completion``."""
    script = tmp_path / "fake-llama-server"
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, os, signal, sys\n"
        "from http.server import BaseHTTPRequestHandler, HTTPServer\n"
        "port = int(sys.argv[sys.argv.index('--port') + 1])\n"
        "class Handler(BaseHTTPRequestHandler):\n"
        "    def log_message(self, *args):\n"
        "        pass\n"
        "    def _reply(self, status, body):\n"
        "        data = json.dumps(body).encode()\n"
        "        self.send_response(status)\n"
        "        self.send_header('Content-Length', str(len(data)))\n"
        "        self.end_headers()\n"
        "        self.wfile.write(data)\n"
        "    def do_GET(self):\n"
        "        self._reply(200, {'status': 'ok'})\n"
        "    def do_POST(self):\n"
        f"        {on_completion}\n"
        "print('AMX is not ready to be used!', flush=True)\n"
        "HTTPServer(('127.0.0.1', port), Handler).serve_forever()\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def test_a_binary_that_dies_at_its_first_completion_is_refused_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = _fake_server(tmp_path, "os.kill(os.getpid(), signal.SIGILL)")
    monkeypatch.setattr(_models, "is_installed", lambda _: True)
    server = LocalServer("0.5b", binary=fake, startup_timeout=20)
    with pytest.raises(LocalServerError) as raised:
        server.start()
    message = str(raised.value)
    assert "died at its first completion" in message
    assert "SIGILL (illegal instruction)" in message
    assert "GEPETTO_LLAMA_SERVER" in message
    assert server.pid is None


def test_a_binary_whose_completion_fails_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = _fake_server(tmp_path, "self._reply(500, {'error': 'no'})")
    monkeypatch.setattr(_models, "is_installed", lambda _: True)
    with pytest.raises(LocalServerError, match="first one-token completion failed"):
        LocalServer("0.5b", binary=fake, startup_timeout=20).start()


def test_a_binary_that_answers_is_accepted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _fake_server(tmp_path, "self._reply(200, {'choices': [{'text': '2'}]})")
    monkeypatch.setattr(_models, "is_installed", lambda _: True)
    with LocalServer("0.5b", binary=fake, startup_timeout=20) as server:
        assert server.is_running()


def test_the_cached_build_is_found_before_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GEPETTO_LLAMA_SERVER", raising=False)
    monkeypatch.setenv("GEPETTO_SERVER_DIR", str(tmp_path))
    folder = tmp_path / f"{_server_build.LLAMA_CPP_BUILD}-{AVX2_PROFILE.name}"
    folder.mkdir()
    binary = folder / "llama-server"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    monkeypatch.setattr(_server_build, "cpu_features", lambda: AMD_EPYC_FLAGS)
    monkeypatch.setattr(_server_build.platform, "machine", lambda: "x86_64")
    assert local.find_server_binary() != binary  # no BUILD_INFO.json: an unfinished build
    (folder / "BUILD_INFO.json").write_text("{}")  # a finished build has its info file
    assert local.find_server_binary() == binary


def test_a_missing_toolchain_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_server_build.shutil, "which", lambda _name: None)
    with pytest.raises(_server_build.BuildError, match=r"cmake and a C\+\+ compiler.*apt-get"):
        _server_build._require_tools()


# ------------------------------------------------------------------ the real build


def _real_build() -> Path:
    binary = _server_build.built_server()
    if binary is None:
        pytest.fail("no cached llama-server build: run scripts/setup-local-llm")
    return binary


@pytest.mark.llm
@pytest.mark.slow
def test_the_real_build_is_portable_and_self_contained() -> None:
    binary = _real_build()
    info = json.loads((binary.parent / "BUILD_INFO.json").read_text())
    assert "-DGGML_NATIVE=OFF" in info["cmake_options"]
    assert info["sdist_sha256"] == _server_build.LLAMA_CPP_SDIST_SHA256
    ldd = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=True).stdout
    assert "not found" not in ldd
    assert str(binary.parent) in ldd  # its libggml and libllama come from beside it
    objdump = shutil.which("objdump")
    assert objdump, "objdump (binutils) is needed to check the instruction set"
    files = [binary, *(p for p in binary.parent.glob("*.so*") if not p.is_symlink())]
    assert any(p.name.startswith("libggml-cpu.so") for p in files)
    for path in files:
        code = subprocess.run(
            [objdump, "-d", "--no-show-raw-insn", str(path)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        found = sorted(set(_BEYOND_BASELINE.findall(code)))
        assert not found, f"{path.name} uses {found}: it would not run on every AVX2 CPU"


@pytest.mark.llm
@pytest.mark.slow
def test_the_real_build_serves_a_completion_on_this_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GEPETTO_LLAMA_SERVER", raising=False)
    assert local.find_server_binary() == _real_build()
    with LocalServer("0.5b", parallel=1, context=1024) as server:  # start() probes one token
        assert server.is_running()


def _sdist(path: Path, entries: dict[str, bytes | str]) -> Path:
    """A .tar.gz whose values are file contents (bytes) or symlink targets (str)."""
    with tarfile.open(path, "w:gz") as archive:
        for name, value in entries.items():
            info = tarfile.TarInfo(name)
            if isinstance(value, str):
                info.type, info.linkname = tarfile.SYMTYPE, value
                archive.addfile(info)
            else:
                info.size = len(value)
                archive.addfile(info, io.BytesIO(value))
    return path


@pytest.mark.parametrize("has_data_filter", [True, False], ids=["py3.11.4+", "py3.11.2"])
def test_the_source_is_extracted_with_or_without_tarfiles_data_filter(
    has_data_filter: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not has_data_filter:  # Debian 12's Python 3.11.2 has no tarfile.data_filter
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    good = _sdist(tmp_path / "good.tar.gz", {"pkg-1/llama.cpp/CMakeLists.txt": b"project(x)"})
    source = _server_build._extract_source(good, tmp_path / "out")
    assert (source / "CMakeLists.txt").read_bytes() == b"project(x)"

    for name, entries in {
        "escape": {"pkg-1/llama.cpp/../../../evil": b"x"},
        "link": {"pkg-1/llama.cpp/CMakeLists.txt": "/etc/passwd"},
    }.items():
        bad = _sdist(tmp_path / f"{name}.tar.gz", entries)
        with pytest.raises((tarfile.TarError, _server_build.DownloadError)):
            _server_build._extract_source(bad, tmp_path / f"out-{name}")
        assert not (tmp_path / "evil").exists()
