"""The quality suite's ``optimize_anything`` task: a function improved against tests.

The candidate is the source of ``parse_duration(text)`` (:mod:`gepetto.datasets.durations`).
The search is single-task (gepa's first ``optimize_anything`` mode: no dataset): the
evaluator runs the candidate on the 30 training cases in gepetto's sandbox and returns the
share passed, with the failed cases as feedback. The best candidate is then scored the same
way on the validation and test cases, which the search never sees: a function that learned
the rules passes them, one that special-cased the training inputs does not.

gepa 0.1.4 (``gepa.optimize_anything``) and gepetto (``gepetto.aoptimize_anything``) get the
same seed, evaluator, objective, reflection model and budget, each with its own reflection
prompt and defaults.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

FUNCTION = "parse_duration"
OBJECTIVE = (
    f"Improve the Python function {FUNCTION}(text) so that it returns the number of seconds "
    "the human-written duration in text denotes, as the test cases expect (or raises "
    "ValueError where they expect ValueError). Reply with the complete Python source: any "
    f"imports, helpers and the function {FUNCTION}."
)
SPEC = """parse_duration(text) reads durations as people write them:
- a bare number is seconds ("45");
- a number with a unit, in any spelling and any case, with or without a space: d, day, days;
  h, hr, hrs, hour, hours; m, min, mins, minute, minutes; s, sec, secs, second, seconds
  ("5m", "5 Min", "2 hrs");
- several parts joined by spaces, commas or "and" ("1h30m", "2 hours, 5 minutes and 3 seconds");
- decimals ("1.5h" is 5400);
- clock notation: m:ss and h:mm:ss ("1:30" is 90, "1:02:03" is 3723);
- anything else raises ValueError ("soon", "5 parsecs").
It returns an int."""
"""The ``background`` of the ``durations-spec`` task: the rules the tests check, as a user
would describe what they want (the ``durations-code`` task gives none: the tests alone)."""
BUDGET = 40
"""Metric calls of a search: one is one candidate run on the training cases."""
REFLECTION_MAX_TOKENS = 800  # a whole function, not a prompt
SHOWN_FAILURES = 8  # failed cases quoted in the feedback (the count says how many in all)

# Appended to the candidate: runs every case, prints one JSON line of [input, expected, got,
# passed] rows. Names start with _ so a candidate's own names are not overwritten.
_HARNESS = """

import json as _json
_rows = []
for _case in _json.loads({cases!r}):
    _text, _expected = _case["input"], _case["answer"]
    try:
        _got = {function}(_text)
        _rows.append([_text, _expected, repr(_got), _got == _expected and type(_got) is not bool])
    except ValueError:
        _rows.append([_text, _expected, "ValueError", _expected == "ValueError"])
    except Exception as _error:
        _rows.append([_text, _expected, f"{{type(_error).__name__}}: {{_error}}", False])
print(_json.dumps(_rows))
"""


def score_code(code: str, cases: list[dict[str, Any]]) -> tuple[float, dict[str, Any]]:
    """Run ``code`` on ``cases`` in the sandbox: (share passed, side information with the run's
    outcome and the failed cases). A crash, a hang or missing output scores 0."""
    from gepetto.sandbox import run_python

    program = code + _HARNESS.format(cases=json.dumps(cases), function=FUNCTION)
    rows, side_info = run_python(program, timeout_s=5.0, memory_mb=256).json_report(1500)
    if rows is None:
        return 0.0, side_info
    failed = [row for row in rows if not row[3]]
    lines = [
        f"{FUNCTION}({text!r}) gave {got}, expected {expected!r}"
        for text, expected, got, _ in failed[:SHOWN_FAILURES]
    ]
    if len(failed) > SHOWN_FAILURES:
        lines.append(f"... and {len(failed) - SHOWN_FAILURES} more failed cases")
    passed = len(rows) - len(failed)
    side_info["feedback"] = f"{passed} of {len(rows)} cases pass." + "".join(
        "\n" + line for line in lines
    )
    return passed / len(rows), side_info


def evaluator_on(
    cases: list[dict[str, Any]], count: Callable[[], None]
) -> Callable[[str], tuple[float, dict[str, Any]]]:
    """The search's evaluator: ``score_code`` on ``cases``, calling ``count()`` per run."""

    def evaluate(candidate: str) -> tuple[float, dict[str, Any]]:
        count()
        return score_code(candidate, cases)

    return evaluate


def gepa_search(
    seed_code: str,
    evaluate: Callable[[str], Any],
    reflect: Callable[[str], str],
    seed: int,
    background: str | None,
) -> dict[str, Any]:
    """gepa 0.1.4's single-task ``optimize_anything`` (its defaults otherwise)."""
    from gepa.optimize_anything import (
        EngineConfig,
        GEPAConfig,
        ReflectionConfig,
        optimize_anything,
    )

    result = optimize_anything(
        seed_code,
        evaluator=evaluate,
        objective=OBJECTIVE,
        background=background,
        config=GEPAConfig(
            engine=EngineConfig(max_metric_calls=BUDGET, seed=seed),
            reflection=ReflectionConfig(reflection_lm=reflect),
        ),
    )
    best = result.candidates[result.best_idx]
    return {
        "best_code": best if isinstance(best, str) else next(iter(best.values())),
        "val_reported": result.val_aggregate_scores[result.best_idx],
        "reported_calls": result.total_metric_calls,
        "candidates": len(result.candidates),
    }


async def gepetto_search(
    seed_code: str,
    evaluate: Callable[[str], Any],
    reflect: Any,
    seed: int,
    background: str | None,
    options: dict[str, Any],
) -> dict[str, Any]:
    """gepetto's single-task ``aoptimize_anything``; ``options`` are the variant's flat
    options of ``gepetto.optimize`` (``{}`` for the defaults)."""
    import gepetto
    from gepetto import GEPAConfig

    config = GEPAConfig.from_options(
        max_metric_calls=BUDGET, seed=seed, reflection_lm=reflect, **options
    )
    result = await gepetto.aoptimize_anything(
        seed_code,
        evaluator=evaluate,
        objective=OBJECTIVE,
        background=background,
        config=config,
        handle_signals=False,
    )
    return {
        "best_code": result.best_candidate,
        "val_reported": result.best_score,
        "reported_calls": result.total_metric_calls,
        "candidates": result.num_candidates,
        "iterations": result.num_iterations,
        "stop_reason": result.stop_reason,
    }
