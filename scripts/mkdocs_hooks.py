"""MkDocs hooks for the documentation site (mkdocs.yml ``hooks:``).

The changelog page is the repository's CHANGELOG.md, read when the site is built. Its links
are written from the repository's root (``docs/lm.md#accounting``); on the site they are
relative to the docs folder (``lm.md#accounting``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

_CHANGELOG = Path(__file__).resolve().parent.parent / "CHANGELOG.md"
_ROOT_DOCS_LINK = re.compile(r"\]\(docs/")


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    """The changelog page's text: CHANGELOG.md with its ``docs/`` links made relative."""
    if page.file.src_uri != "changelog.md":
        return markdown
    return _ROOT_DOCS_LINK.sub("](", _CHANGELOG.read_text(encoding="utf-8"))
