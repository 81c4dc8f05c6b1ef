"""Settings for every test and doctest: no library may send telemetry anywhere."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest

for _name, _value in {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "WANDB_MODE": "offline",
    "HF_HUB_OFFLINE": "1",
    "ANONYMIZED_TELEMETRY": "False",
    "DO_NOT_TRACK": "1",
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
}.items():
    os.environ.setdefault(_name, _value)

# A pytest plugin for gepa's own tests (loaded with -p by tests/gepa_upstream/run.py in its
# own process), not a module to collect: importing it installs the gepa alias in this
# process, which cannot coexist with DSPy's import of the real gepa (tests of
# gepetto.adapters.dspy).
collect_ignore = ["tests/gepa_upstream/alias_plugin.py"]


@pytest.fixture(autouse=True)
def _without_the_real_gepa(request: pytest.FixtureRequest) -> Iterator[None]:
    """The doctest of :mod:`gepetto.gepa_alias` installs the alias, which refuses a process
    where the real gepa is imported; under pytest-xdist a test of the DSPy adapter (DSPy
    imports the real gepa) may have run in the same worker before it. Its modules are set
    aside for that doctest and put back after."""
    if not (
        isinstance(request.node, pytest.DoctestItem) and request.node.name == "gepetto.gepa_alias"
    ):
        yield
        return
    real = {name: module for name, module in sys.modules.items() if name.split(".")[0] == "gepa"}
    for name in real:
        del sys.modules[name]
    try:
        yield
    finally:
        sys.modules.update(real)
