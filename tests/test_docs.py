"""The documentation site builds offline and its runnable code blocks run.

A fenced ``python`` block preceded by an HTML comment is run by these tests:

- ``<!-- runnable -->``: the block runs on its own;
- ``<!-- runnable: NAME -->``: the blocks of one page with the same NAME run in order in one
  namespace (a page that builds something step by step).

Every other block is illustration (a hosted model, a shell command) and is not run; blocks
that need the local models are examples in ``examples/``, run by ``tests/test_examples.py``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

_BLOCK = re.compile(
    r"<!--\s*runnable(?::\s*(?P<name>[\w-]+))?\s*-->\s*\n```python\n(?P<code>.*?)\n```", re.S
)


def runnable_blocks() -> list[tuple[str, str, list[str]]]:
    """(page, group, [code, ...]) for every runnable group of every page, in page order."""
    found: list[tuple[str, str, list[str]]] = []
    for page in sorted(DOCS.rglob("*.md")):
        groups: dict[str, list[str]] = defaultdict(list)
        for index, match in enumerate(_BLOCK.finditer(page.read_text(encoding="utf-8"))):
            name = match["name"]
            groups[name or f"block{index}"].append(match["code"])
        relative = str(page.relative_to(DOCS))
        found.extend((relative, key, codes) for key, codes in groups.items())
    return found


BLOCKS = runnable_blocks()


def run_blocks(codes: list[str], tmp_path: Path) -> None:
    """Run the blocks in one fresh interpreter (so no test state leaks into them)."""
    script = "\n\n".join(codes)
    completed = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]


def test_the_docs_have_runnable_blocks() -> None:
    pages = {page for page, _, _ in BLOCKS}
    assert {"getting-started.md", "writing-an-adapter.md"} <= pages


@pytest.mark.parametrize(
    ("page", "group", "codes"),
    BLOCKS,
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_runnable_block(page: str, group: str, codes: list[str], tmp_path: Path) -> None:
    run_blocks(codes, tmp_path)


@pytest.mark.slow
def test_the_site_builds_strictly_and_offline(tmp_path: Path) -> None:
    site = tmp_path / "site"
    completed = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert (site / "reference" / "api" / "index.html").is_file()
    external = re.compile(r"<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)=\"(?:https?:)?//")
    for page in site.rglob("*.html"):
        assert not external.search(page.read_text(encoding="utf-8")), page
    changelog = (site / "changelog" / "index.html").read_text(encoding="utf-8")
    assert "Unreleased" in changelog
