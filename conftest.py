"""Settings for every test and doctest: no library may send telemetry anywhere."""

from __future__ import annotations

import os

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
