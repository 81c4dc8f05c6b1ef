"""Settings for every test and doctest: no library may send telemetry anywhere."""

from __future__ import annotations

import os

for _name, _value in {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "WANDB_MODE": "offline",
    "HF_HUB_OFFLINE": "1",
    "ANONYMIZED_TELEMETRY": "False",
}.items():
    os.environ.setdefault(_name, _value)
