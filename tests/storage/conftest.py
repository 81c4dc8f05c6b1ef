"""A fresh PostgreSQL schema per test, on the server of scripts/start-postgres."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

POSTGRES_URL = os.environ.get("GEPETTO_TEST_POSTGRES_URL")


def _admin_connection() -> Any:
    import psycopg

    assert POSTGRES_URL
    return psycopg.connect(POSTGRES_URL, autocommit=True)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """The test server's URL with a fresh schema first in the search path (dropped after)."""
    if not POSTGRES_URL:
        pytest.skip("GEPETTO_TEST_POSTGRES_URL is unset (run scripts/start-postgres)")
    schema = f"gepetto_test_{uuid.uuid4().hex[:12]}"
    with _admin_connection() as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    separator = "&" if "?" in POSTGRES_URL else "?"
    yield f"{POSTGRES_URL}{separator}options={quote(f'-csearch_path={schema}')}"
    with _admin_connection() as admin:
        admin.execute(f"DROP SCHEMA {schema} CASCADE")
