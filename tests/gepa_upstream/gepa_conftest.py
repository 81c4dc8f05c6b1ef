"""The fixtures gepa's test files expect from gepa's own ``tests/conftest.py``.

gepa 0.1.4's source distribution ships its test files but not their ``conftest.py``. The
runner copies this file next to them as ``conftest.py``: it provides the ``rng`` fixture
(``random.Random(42)``, as gepa's does) and, for the tests that replay recorded calls to
hosted models, a ``create_mocked_lms_context`` that fails with the reason: the recordings
are not part of the distribution either, so those tests cannot run anywhere but in gepa's
repository.
"""

import random

import pytest

REPLAY_UNAVAILABLE = (
    "replays recorded calls to hosted models; the recordings (llm_cache.json) are not in "
    "gepa 0.1.4's source distribution"
)


@pytest.fixture
def rng() -> random.Random:
    return random.Random(42)


def create_mocked_lms_context(cache_dir: object) -> object:
    raise RuntimeError(REPLAY_UNAVAILABLE)


@pytest.fixture
def mocked_lms() -> object:
    raise RuntimeError(REPLAY_UNAVAILABLE)
