"""examples/code_evolution_two_objectives.py with the scripted reflection: every candidate runs
in the real sandbox and is really timed; correctness and speed both reach the Pareto front."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from gepetto.testing import ScriptedLM

ROOT = Path(__file__).parent.parent
EXAMPLE = ROOT / "examples" / "code_evolution_two_objectives.py"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("code_evolution_two_objectives", EXAMPLE)
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    return example


example = load_example()


def hidden_only_inputs() -> list[str]:
    visible = {n for n, _ in example.VISIBLE_CASES}
    return [f"count_primes({n})" for n, _ in example.HIDDEN_CASES if n not in visible]


def test_the_front_keeps_a_fast_but_wrong_and_a_right_but_slow_candidate() -> None:
    lm = ScriptedLM(example.SCRIPTED_REPLIES)
    result = example.evolve(example.SEED, lm, budget=6)  # two proposals: slow fix, fast bug
    texts = [c["current_candidate"].strip() for c in result.candidates]
    assert texts == [
        c.strip() for c in (example.SEED, example.RIGHT_BUT_SLOW, example.FAST_BUT_WRONG)
    ]
    seed, slow, fast = (example.objectives(result, i) for i in range(3))
    assert seed["correctness"] == 8 / 14  # wrong when n itself is prime
    assert slow["correctness"] == 1.0 and fast["correctness"] == 12 / 14  # fails n <= 0
    assert fast["speed"] > slow["speed"] + 0.5 and fast["speed"] > seed["speed"] + 0.5
    # both kinds stay: each is the best at one objective
    assert {1, 2} <= set(result.pareto_front)
    assert result.per_objective_best_candidates is not None
    assert result.per_objective_best_candidates["correctness"] == {1}
    assert result.per_objective_best_candidates["speed"] == {2}
    assert result.objective_pareto_front == {"correctness": 1.0, "speed": fast["speed"]}
    # the reflection read the visible failures and the hidden counts, never a hidden case
    first, second = (str(prompt) for prompt in lm.prompts)
    assert "count_primes(7) returned 3, expected 4" in first
    assert "8 of 14 passed (the cases are not shown)" in first
    assert "speed 0.1" in first  # the seed's timing, in words
    assert "count_primes(0) returned" not in first and "14 of 14 passed" in second
    for prompt in (first, second):
        assert not [case for case in hidden_only_inputs() if case in prompt]
        assert "7919" not in prompt


def test_the_best_candidate_improves_both_objectives_over_the_seed() -> None:
    result = example.evolve(example.SEED, ScriptedLM(example.SCRIPTED_REPLIES), budget=10)
    assert result.best_candidate.strip() == example.RIGHT_AND_FAST.strip()
    best, seed = example.objectives(result, result.best_idx), example.objectives(result, 0)
    assert best["correctness"] == 1.0 > seed["correctness"]
    assert best["speed"] > seed["speed"] + 0.5
    assert result.best_score > result.seed_score


def test_seedless_the_scripted_model_writes_the_first_version() -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), "--seedless", "--budget", "10"],
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    lines = done.stdout.splitlines()[1:]
    assert done.stdout.startswith("seed 0.3")
    assert lines[0].startswith("seed     #0: correctness 0.57, speed 0.")
    assert lines[1].startswith("best     #3: correctness 1.00, speed 0.")
    assert float(lines[1].split("speed ")[1].split(",")[0]) > 0.5
    assert example.RIGHT_AND_FAST.strip() in done.stdout


def test_a_candidate_killed_while_timed_keeps_its_correctness() -> None:
    hangs_on_the_workload = example.RIGHT_BUT_SLOW.replace(
        "    count = 0\n", "    count = 0\n    while 5000 < n < 5100:\n        pass\n"
    )
    score, side_info = example.evaluate(hangs_on_the_workload)
    assert side_info["limit"] == "wall_time"
    assert side_info["scores"] == {"correctness": 1.0, "speed": 0.0}
    assert side_info["Speed"].startswith("not measured")
    assert score == example.combined_score(1.0, 0.0) == 0.5


def test_broken_candidates_score_zero_with_the_reason() -> None:
    score, side_info = example.evaluate("def count_primes(n) return 1\n")
    assert score == 0.0 and "SyntaxError" in side_info["stderr"]
    score, side_info = example.evaluate("def primes(n):\n    return 0\n")
    assert score == 0.0 and side_info["Tests"] == "the source defines no function count_primes(n)"
    noisy = "def count_primes(n):\n    print('@@cases [[], []]')\n    return 0\n"
    score, side_info = example.evaluate(noisy)  # its prints are not taken for the harness's
    assert side_info["Hidden tests"] == "3 of 14 passed (the cases are not shown)"


def test_speed_score_is_a_clamped_log_scale() -> None:
    assert example.speed_score(1.0) == 0.5
    assert example.speed_score(0.01) == example.speed_score(0.0001) == 1.0
    assert example.speed_score(100.0) == example.speed_score(1e6) == 0.0
    assert example.speed_score(0.1) == 0.75
