"""Shared fixtures: telemetry off, no network, small toy datasets."""

from __future__ import annotations

import os

import pytest

for _name, _value in {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "WANDB_MODE": "offline",
    "HF_HUB_OFFLINE": "1",
    "ANONYMIZED_TELEMETRY": "False",
}.items():
    os.environ.setdefault(_name, _value)

WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta"]


@pytest.fixture
def words() -> list[str]:
    return list(WORDS)
