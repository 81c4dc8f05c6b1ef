"""optimize_anything with the real local 1.5B model reflecting: a small Python function is
searched against its tests, from a seed and seedless.

The model is small, so the test asserts the run works end to end within its budget, not
that the function improves; it stops after the first iteration (tests/lm/short_runs.py).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from gepetto import EngineConfig, GEPAConfig, ReflectionConfig, Timeout
from gepetto.lm.registry import resolve_lm
from gepetto.optimize_anything import log, optimize_anything
from tests.lm.short_runs import after_one_iteration

pytestmark = [pytest.mark.llm, pytest.mark.slow]

CASES = [("Apple", 2), ("sky", 0), ("AEIOU", 5), ("banana", 3), ("Queue", 4)]
SEED = "def count_vowels(s):\n    return sum(1 for c in s if c in 'aeiou')"
OBJECTIVE = "count_vowels(s) returns how many vowels (a, e, i, o, u, any case) s contains."


class CaseRunner:
    """Runs ``count_vowels`` from the candidate on the cases (plain data, in-process)."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, code: str) -> tuple[float, dict[str, Any]]:
        self.calls += 1
        namespace: dict[str, Any] = {}
        try:
            exec(code, namespace)
            function = namespace["count_vowels"]
            results = [(s, expected, function(s)) for s, expected in CASES]
        except Exception as error:  # the evaluator's own report; it still scores 0
            return 0.0, {"error": f"{type(error).__name__}: {error}"}
        failures = [f"count_vowels({s!r}) = {got!r}, expected {want}" for s, want, got in results]
        failures = [f for (_, want, got), f in zip(results, failures, strict=True) if got != want]
        log(f"{len(CASES) - len(failures)}/{len(CASES)} cases pass")
        return (len(CASES) - len(failures)) / len(CASES), {"failures": failures or "none"}


@pytest.mark.timeout(600)  # the 1.5B on 2 shared cores: up to a minute per reflection
@pytest.mark.parametrize("seed", [SEED, None], ids=["seed", "seedless"])
def test_real_reflection_searches_a_python_function(seed: str | None) -> None:
    reflection = resolve_lm(
        "local/qwen2.5-coder-1.5b",
        temperature=0.7,
        max_tokens=200,
        extra_body={"repeat_penalty": 1.1},
    )
    tests = CaseRunner()
    started = time.monotonic()
    try:
        result = optimize_anything(
            seed,
            evaluator=tests,
            objective=OBJECTIVE,
            config=GEPAConfig(
                engine=EngineConfig(max_metric_calls=4),
                reflection=ReflectionConfig(reflection_lm=reflection),
                stop_callbacks=[Timeout(150), after_one_iteration],
            ),
        )
    finally:
        asyncio.run(reflection.aclose())
    elapsed = time.monotonic() - started
    print(
        f"\n[{'seedless' if seed is None else 'seed'}] seed score {result.seed_score}, best "
        f"{result.best_score}, metric calls {result.total_metric_calls}/4, reflection calls "
        f"{result.num_reflection_calls}, candidates {result.num_candidates}, "
        f"{elapsed:.0f} s, stop: {result.stop_reason}"
    )
    assert tests.calls == result.total_metric_calls <= 4
    assert isinstance(result.best_candidate, str) and result.best_candidate
    assert result.num_reflection_calls >= (2 if seed is None else 1)
    assert result.best_score is not None and result.seed_score is not None
    assert result.best_score >= result.seed_score
    if seed is not None:
        assert result.candidates[0] == {"current_candidate": SEED}
