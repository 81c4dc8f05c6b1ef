"""The benchmarks' shared harness: run one measurement in a fresh interpreter, and write
one marked section of docs/benchmarks.md with how, when and on what code it was measured."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "benchmarks.md"
INTRO = (
    "# Benchmarks\n\nNumbers measured on this machine: 2 cores, no GPU, Python 3.11; each "
    "section gives the exact command.\n"
)


def run_isolated(script: str | Path, spec: dict[str, Any], *, quiet: bool = True) -> dict[str, Any]:
    """Run ``python SCRIPT --one SPEC_JSON`` in a fresh process; return its last stdout line.

    Each measurement gets its own interpreter, so no warm cache, thread pool or import
    carries over from one to the next. The script prints one JSON object as the last line
    of its standard output; ``quiet=False`` lets its standard error through (progress).
    """
    command = [sys.executable, str(script), "--one", json.dumps(spec)]
    stderr = subprocess.PIPE if quiet else None
    out = subprocess.run(command, check=True, stdout=subprocess.PIPE, stderr=stderr, text=True)
    row: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return row


def replace_section(section: str, start: str, end: str, docs: Path = DOCS) -> None:
    """Put ``section`` (which begins with ``start`` and ends with ``end``) in place of the
    text between those markers in ``docs``, or append it when the markers are missing."""
    text = docs.read_text() if docs.exists() else INTRO
    if start in text and end in text:
        text = text[: text.index(start)] + section + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    docs.parent.mkdir(exist_ok=True)
    docs.write_text(text)


def git_commit() -> str:
    """The short commit of the working tree, marked when ``src/`` has uncommitted changes."""

    def git(*args: str) -> str:
        command = ["git", "--no-optional-locks", *args]  # read-only, takes no index lock
        return subprocess.run(command, cwd=ROOT, check=False, capture_output=True, text=True).stdout

    commit = git("rev-parse", "--short", "HEAD").strip() or "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=all", "--", "src").strip()
    return commit + (" + uncommitted changes in src/" if dirty else "")


def provenance(command: str, load: float) -> str:
    """The lines under a section title saying how, when and on what code it was measured."""
    date = subprocess.run(["date", "-u"], check=True, capture_output=True, text=True).stdout.strip()
    return (
        f"Command: `{command}`  \nDate: {date}  \nCommit: `{git_commit()}`  \n"
        f"Python {sys.version.split()[0]}; 1-min load average before the run: {load:.2f}\n\n"
    )
