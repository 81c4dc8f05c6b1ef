"""examples/code_evolution_two_objectives.py with the real local 1.5B model reflecting, from
the seed and seedless; every candidate it writes runs in the sandbox and is timed.

On a quiet machine the 1.5B model improved both objectives from the seed in 3 of 3 runs of
10 metric calls (bench/code_evolution.py, docs/benchmarks.md), but on a busy one a reply
takes minutes and a run gets one or two proposals, often fast but wrong (which the score
``correctness * (1 + speed) / 2`` rejects). So these tests, at 6 metric calls and one
iteration, assert that the run works end to end and is not made worse, and print what the
model achieved on both objectives. The improvement on both objectives is asserted with the
scripted reflection in tests/test_code_evolution_two_objectives.py.
"""

from __future__ import annotations

import asyncio
import importlib.util
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from gepetto import Timeout
from gepetto.lm.client import LMClient
from gepetto.lm.registry import resolve_lm
from tests.lm.short_runs import after_one_iteration

pytestmark = [pytest.mark.llm, pytest.mark.slow]

EXAMPLE = Path(__file__).parent.parent.parent / "examples" / "code_evolution_two_objectives.py"
BUDGET = 6  # metric calls: the seed (twice) and at most two proposals


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("code_evolution_two_objectives", EXAMPLE)
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    return example


example = load_example()


@pytest.fixture(scope="module")
def reflection() -> Iterator[LMClient]:
    client = resolve_lm(
        "local/qwen2.5-coder-1.5b",
        temperature=0.7,
        max_tokens=256,
        timeout=900,  # 2 shared cores: a reply can take minutes when the machine is busy
        extra_body={"repeat_penalty": 1.1},
    )
    yield client
    asyncio.run(client.aclose())


class Recorder:
    """The reflection model, keeping each prompt (to check no hidden case reached it)."""

    def __init__(self, client: LMClient) -> None:
        self.client, self.prompts = client, []  # type: ignore[var-annotated]

    async def __call__(self, prompt: Any) -> str:
        self.prompts.append(str(prompt))
        return await self.client(prompt)


@pytest.mark.timeout(3600)  # idle: 1-3 minutes; at load 19 on 2 cores a reply took 13 min
@pytest.mark.parametrize("seeded", [True, False], ids=["seed", "seedless"])
def test_real_reflection_evolves_count_primes(reflection: LMClient, seeded: bool) -> None:
    model = Recorder(reflection)
    started = time.monotonic()
    result = example.evolve(
        example.SEED if seeded else None,
        model,
        BUDGET,
        stop_callbacks=[Timeout(120), after_one_iteration],
    )
    elapsed = time.monotonic() - started
    first, best = example.objectives(result, 0), example.objectives(result, result.best_idx)
    print(
        f"\n[{'seed' if seeded else 'seedless'}] {elapsed:.0f} s, {len(model.prompts)} model "
        f"calls, {result.total_metric_calls}/{BUDGET} metric calls, stop: {result.stop_reason}\n"
        + "\n".join(example.summary(result))
    )
    for i, candidate in enumerate(result.candidates):
        print(f"--- #{i} {example.objectives(result, i)}\n{candidate['current_candidate']}")
    for decision in result.decisions:  # rejected proposals too, with their minibatch score
        print(decision["outcome"], decision["child_score"], decision["reason"])
    assert len(model.prompts) >= (1 if seeded else 2)
    assert result.total_metric_calls <= BUDGET
    assert set(first) == set(best) == {"correctness", "speed"}
    assert result.best_score is not None and result.seed_score is not None
    assert result.best_score >= result.seed_score
    assert best["correctness"] >= first["correctness"] or best["speed"] > first["speed"]
    if seeded:
        assert result.candidates[0]["current_candidate"] == example.SEED
    for prompt in model.prompts:  # hidden cases are counted, never shown
        assert "7919" not in prompt and "count_primes(541)" not in prompt
