"""Evolve a Python function with ``optimize_anything``, every candidate run in the sandbox.

The artifact is the source of ``median(values)``; the evaluator runs it against a few test
cases with :func:`gepetto.sandbox.run_python` (its own process, limits, no network, no
secrets) and returns the share of cases passed, with the run's outcome and the failures as
side information for the reflection model.

By default the reflection "model" is scripted, so the example runs offline in a few seconds:
its first proposal hangs (the sandbox kills it at the time limit; it scores 0, with
"killed: wall-time limit reached" in its side information, and is rejected), its second is
correct. With ``--model`` any
gepetto model string (``openai/gpt-4.1-mini``, ``local/qwen2.5-1.5b``, ...) reflects instead.

    python examples/sandboxed_code_evolution.py [--model MODEL]
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import gepetto
from gepetto import EngineConfig, GEPAConfig, ReflectionConfig
from gepetto.sandbox import run_python
from gepetto.testing import ScriptedLM

SEED = "def median(values):\n    return sorted(values)[len(values) // 2]\n"

CASES = [([3, 1, 2], 2), ([4, 1, 3, 2], 2.5), ([5], 5), ([7, 7, 1, 9], 7.0), ([-1, -3], -2.0)]

# The harness appended to the candidate: runs every case, prints one JSON line of results.
HARNESS = """
import json as _json
_results = []
for _values, _expected in _json.loads({cases!r}):
    try:
        _got = median(list(_values))
        _results.append([_values, _expected, repr(_got), _got == _expected])
    except Exception as _error:
        _results.append([_values, _expected, f"{{type(_error).__name__}}: {{_error}}", False])
print(_json.dumps(_results))
"""

SCRIPTED_REPLIES = [
    # a proposal that never ends: the sandbox kills it at the wall-time limit
    "```\ndef median(values):\n    values = sorted(values)\n    while len(values) > 2:\n"
    "        values = values[:]\n    return sum(values) / len(values)\n```",
    "```\ndef median(values):\n    values = sorted(values)\n    middle = len(values) // 2\n"
    "    if len(values) % 2:\n        return values[middle]\n"
    "    return (values[middle - 1] + values[middle]) / 2\n```",
]


def evaluate(candidate: str) -> tuple[float, dict[str, Any]]:
    """Score ``candidate`` (the source of ``median``) on :data:`CASES`, in the sandbox."""
    result = run_python(
        candidate + HARNESS.format(cases=json.dumps(CASES)), timeout_s=2.0, memory_mb=256
    )
    rows, side_info = result.json_report(max_chars=1500)  # the harness's JSON line, parsed
    if rows is None:
        return 0.0, side_info
    failures = [f"median({v}) returned {got}, expected {exp}" for v, exp, got, ok in rows if not ok]
    side_info["feedback"] = "\n".join(failures) or "all cases pass"
    return sum(ok for *_, ok in rows) / len(rows), side_info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a real reflection model (default: scripted replies)")
    parser.add_argument("--budget", type=int, default=8, help="metric calls (default 8)")
    args = parser.parse_args()
    reflection_lm: Any = args.model or ScriptedLM(SCRIPTED_REPLIES, repeat_last=True)
    result = gepetto.optimize_anything(
        SEED,
        evaluator=evaluate,
        objective="A correct median(values) for any non-empty list of numbers.",
        config=GEPAConfig(
            engine=EngineConfig(max_metric_calls=args.budget),
            reflection=ReflectionConfig(reflection_lm=reflection_lm),
        ),
    )
    print(f"seed score {evaluate(SEED)[0]:.2f} -> best score {result.best_score:.2f}\n")
    print(result.best_candidate)


if __name__ == "__main__":
    main()
