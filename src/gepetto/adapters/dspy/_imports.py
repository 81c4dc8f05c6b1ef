"""Importing DSPy for gepetto's DSPy adapters: the environment first, then the extra's check.

litellm (which DSPy uses for its LM calls) downloads its model price list from the internet
when it is imported, unless ``LITELLM_LOCAL_MODEL_COST_MAP`` is set; :func:`import_dspy`
sets it (and the usual telemetry opt-outs) before the first import, without overriding a
value the user set. A missing DSPy raises :class:`ImportError` saying which extra to
install.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["EXTRA_HINT", "QUIET_ENVIRONMENT", "import_dspy"]

EXTRA_HINT = "pip install 'gepetto[dspy]'"
"""What to run when DSPy is missing."""

QUIET_ENVIRONMENT = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "HF_HUB_OFFLINE": "1",
    "ANONYMIZED_TELEMETRY": "False",
    "DO_NOT_TRACK": "1",
}
"""Set (unless already set) before DSPy and litellm are imported: no price list download,
no telemetry."""


def import_dspy() -> Any:
    """The ``dspy`` module, imported with :data:`QUIET_ENVIRONMENT` in place.

    Raises:
        ImportError: DSPy is not installed; the message says ``pip install 'gepetto[dspy]'``.
    """
    for name, value in QUIET_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    try:
        import dspy
    except ImportError as error:
        raise ImportError(
            f"gepetto's DSPy adapters need DSPy and litellm: {EXTRA_HINT} ({error})"
        ) from error
    module: Any = dspy
    return module
