"""gepetto for DSPy users (``pip install 'gepetto[dspy]'``): optimize DSPy programs.

- :class:`GEPA`: DSPy's optimizer interface (``dspy.GEPA``'s keywords), run by gepetto;
  ``compile(program, trainset=..., valset=...)`` returns the optimized program.
- :class:`DspyAdapter`: a GEPA adapter whose components are the instructions of every
  predictor of a DSPy program, for :func:`gepetto.optimize`.
- :class:`DspyFullProgramAdapter`: a GEPA adapter whose one component is the program's
  Python source (signatures, modules and control flow evolve).
- :func:`dspy_lm`: a ``dspy.LM`` from a gepetto model string, ``"local/..."`` included
  (gepetto's managed llama.cpp server on 127.0.0.1).

Importing this package imports DSPy (which imports its ``gepa`` dependency; gepetto's
adapters do not use it); without DSPy it raises :class:`ImportError` saying
``pip install 'gepetto[dspy]'``. ``import gepetto`` never imports DSPy or litellm.
"""

from gepetto.adapters.dspy._imports import import_dspy

import_dspy()  # the environment first, and the extra's message when DSPy is missing

from gepetto.adapters.dspy.full_program import (  # noqa: E402
    FULL_PROGRAM_REFLECTION_TEMPLATE,
    PROGRAM,
    DspyFullProgramAdapter,
)
from gepetto.adapters.dspy.instructions import DspyAdapter  # noqa: E402
from gepetto.adapters.dspy.lm import dspy_lm, local_server, stop_local_servers  # noqa: E402
from gepetto.adapters.dspy.optimizer import (  # noqa: E402
    GEPA,
    DspyGEPAResult,
    DspyReflection,
    auto_budget,
)

__all__ = [
    "FULL_PROGRAM_REFLECTION_TEMPLATE",
    "GEPA",
    "PROGRAM",
    "DspyAdapter",
    "DspyFullProgramAdapter",
    "DspyGEPAResult",
    "DspyReflection",
    "auto_budget",
    "dspy_lm",
    "local_server",
    "stop_local_servers",
]
