"""Evolve a Python function for two objectives at once, correctness and speed, in the sandbox.

The artifact is the source of ``count_primes(n)`` (how many primes are ``<= n``). The seed
is slow (trial division by every smaller number) and wrong when ``n`` itself is prime. Every
candidate runs in :func:`gepetto.sandbox.run_python` (its own process, limits, no network,
no secrets), which reports two objectives:

- **correctness**: the share of the :data:`HIDDEN_CASES` it passes. The reflection model
  never sees a hidden case, only how many passed; it sees the failures of the few
  :data:`VISIBLE_CASES` (input, what came back, what was expected).
- **speed**: ``count_primes`` is timed on a fixed workload (``n`` around
  :data:`WORKLOAD_N`, a new ``n`` at each call so that remembering answers does not count),
  best of 5, against a fixed pure-Python reference loop timed in the same process, so that
  the load of the machine cancels out. The ratio goes to [0, 1] on a log scale: 1.0 at 1/100
  of the reference loop's time or less, 0.0 at 100 times it or more.

Both reach gepetto as objective scores (``side_info["scores"]``), so the Pareto front
(``frontier_type="hybrid"``, optimize_anything's default: best per example and per objective)
keeps a fast-but-wrong candidate and a right-but-slow one side by side. The plain score, used
for acceptance and the best candidate, is ``correctness * (1 + speed) / 2``: speed counts only
as far as the answers are right, so a fast function that is always wrong never wins.

By default the reflection "model" is scripted, so the example runs offline in seconds: it
proposes a right-but-slow fix, then a fast-but-wrong sieve (it fails for ``n <= 0``), then a
right and fast sieve. ``--model local/qwen2.5-coder-1.5b`` (or any gepetto model string)
reflects for real; ``--seedless`` starts from nothing: the reflection model writes the first
version from :data:`OBJECTIVE` and :data:`BACKGROUND`.

    python examples/code_evolution_two_objectives.py [--model MODEL] [--seedless] [--budget N]

Not a defence against hostile code: the candidate runs in the same process as the harness
(inside the sandbox) and could read the hidden cases or fake the harness's report.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from typing import Any

import gepetto
from gepetto import EngineConfig, GEPAConfig, ReflectionConfig
from gepetto.optimize_anything import AnythingResult
from gepetto.sandbox import run_python
from gepetto.testing import ScriptedLM

SEED = """\
def count_primes(n):
    count = 0
    for x in range(2, n):
        if all(x % d for d in range(2, x)):
            count += 1
    return count
"""

OBJECTIVE = (
    "count_primes(n) returns how many prime numbers are <= n, for every int n (0 when n < 2), "
    "and is as fast as possible for large n."
)
BACKGROUND = (
    "The artifact is Python 3 source that defines `def count_primes(n):` (standard library "
    "only). It is run against hidden test cases (correctness) and timed on n around 5000 "
    "(speed); both scores count."
)

VISIBLE_CASES = [(10, 4), (7, 4), (0, 0)]
"""Shown to the reflection model when they fail: input, result, expected."""

HIDDEN_CASES = [
    (-7, 0), (0, 0), (1, 0), (2, 1), (3, 2), (4, 2), (13, 6), (30, 10), (97, 25), (100, 25),
    (541, 100), (1000, 168), (2000, 303), (7919, 1000),
]  # fmt: skip
"""Scored, never shown: the reflection model reads only how many passed."""

WORKLOAD_N = 5000
REFERENCE_LOOP = 100_000
SPEED_RANGE = 100.0  # speed 1.0 at 1/SPEED_RANGE of the reference loop's time, 0.0 at x SPEED_RANGE

RIGHT_BUT_SLOW = SEED.replace("range(2, n)", "range(2, n + 1)")
FAST_BUT_WRONG = """\
def count_primes(n):
    sieve = [True] * (n + 1)
    sieve[0] = sieve[1] = False
    for i in range(2, int(n ** 0.5) + 1):
        if sieve[i]:
            sieve[i * i :: i] = [False] * len(range(i * i, n + 1, i))
    return sum(sieve)
"""
RIGHT_AND_FAST = FAST_BUT_WRONG.replace(
    "    sieve = [True]", "    if n < 2:\n        return 0\n    sieve = [True]"
)
SCRIPTED_REPLIES = [f"```\n{code}```" for code in (RIGHT_BUT_SLOW, FAST_BUT_WRONG, RIGHT_AND_FAST)]
"""The scripted reflection's proposals, in order."""

# Appended to the candidate. The cases come in a file (not in this source, whose lines a
# traceback could quote); each phase prints one marked JSON line as soon as it is done, so a
# candidate killed at the time limit while being timed keeps its correctness.
HARNESS = """

def _gepetto_harness():
    import json, os, sys, time, contextlib

    spec = json.load(open("cases.json"))
    function = globals().get("count_primes")
    if not callable(function):
        print("@@error " + json.dumps("the source defines no function count_primes(n)"))
        return
    sink = open(os.devnull, "w")

    def run(n):
        with contextlib.redirect_stdout(sink):
            return function(n)

    def check(cases):
        rows = []
        for n, expected in cases:
            try:
                got = run(n)
                rows.append([n, expected, repr(got)[:80], got == expected])
            except Exception as error:
                rows.append([n, expected, f"{type(error).__name__}: {error}"[:200], False])
        return rows

    print("@@cases " + json.dumps([check(spec["visible"]), check(spec["hidden"])]), flush=True)

    def reference(size):
        total = 0
        for i in range(size):
            total += i % 7
        return total

    calls = [0]

    def per_call(fn, argument):  # seconds per call, calls repeated to at least 20 ms
        count, started = 0, time.perf_counter()
        while True:
            fn(argument())
            count += 1
            elapsed = time.perf_counter() - started
            if elapsed >= 0.02:
                return elapsed / count

    def workload_n():
        calls[0] += 1
        return spec["workload_n"] + calls[0]  # a new n each call: no remembered answers

    best = {"candidate": float("inf"), "reference": float("inf")}
    try:
        for _ in range(5):
            best["reference"] = min(best["reference"], per_call(reference, lambda: spec["loop"]))
            took = per_call(run, workload_n)
            best["candidate"] = min(best["candidate"], took)
            if took > 1.0:  # far too slow to be worth more runs
                break
    except Exception as error:
        print("@@speed " + json.dumps({"error": f"{type(error).__name__}: {error}"[:200]}))
        return
    print("@@speed " + json.dumps(best), flush=True)


_gepetto_harness()
"""


def speed_score(ratio: float) -> float:
    """Map candidate time / reference time to [0, 1] on a log scale (rounded to 0.01).

    Example:
        >>> speed_score(1.0), speed_score(0.01), speed_score(100.0), speed_score(1000.0)
        (0.5, 1.0, 0.0, 0.0)
    """
    if not ratio > 0:
        return 1.0
    scaled = (math.log10(SPEED_RANGE) - math.log10(ratio)) / (2 * math.log10(SPEED_RANGE))
    return round(min(1.0, max(0.0, scaled)), 2)


def combined_score(correctness: float, speed: float) -> float:
    """The plain score (acceptance, best candidate): speed counts as far as answers are right."""
    return correctness * (1.0 + speed) / 2.0


def _marked(stdout: str) -> dict[str, Any]:
    """The harness's marked lines (``@@name json``), by name; the candidate's own are skipped."""
    found: dict[str, Any] = {}
    for line in stdout.splitlines():
        name, _, payload = line.partition(" ")
        if name.startswith("@@"):
            try:
                found[name[2:]] = json.loads(payload)
            except ValueError:
                continue
    return found


def evaluate(candidate: str) -> tuple[float, dict[str, Any]]:
    """Run ``candidate`` (the source of ``count_primes``) in the sandbox: correctness on the
    hidden cases, speed on the workload, both in ``side_info["scores"]``.

    A candidate that fails to run (syntax error, time limit, ...) scores 0 on both, with the
    sandbox's outcome and the end of its stderr in the side information.
    """
    cases = {
        "visible": VISIBLE_CASES,
        "hidden": HIDDEN_CASES,
        "workload_n": WORKLOAD_N,
        "loop": REFERENCE_LOOP,
    }
    result = run_python(
        candidate + HARNESS, files={"cases.json": json.dumps(cases)}, timeout_s=5, memory_mb=256
    )
    side_info = result.as_side_info(max_chars=1500)
    side_info.pop("stdout", None)  # the harness's JSON; what matters is said below
    report = _marked(result.stdout)
    correctness = speed = 0.0
    if "error" in report:
        side_info["Tests"] = report["error"]
    elif "cases" in report:
        visible, hidden = report["cases"]
        failures = [
            f"count_primes({n}) returned {got}, expected {expected}"
            for n, expected, got, ok in visible
            if not ok
        ]
        side_info["Visible tests"] = "\n".join(failures) or "all visible cases pass"
        passed = sum(ok for *_, ok in hidden)
        side_info["Hidden tests"] = f"{passed} of {len(hidden)} passed (the cases are not shown)"
        correctness = passed / len(hidden)
        speed, side_info["Speed"] = _speed(report.get("speed"))
    else:
        side_info["Tests"] = "the test harness reported nothing (see outcome and stderr)"
    side_info["scores"] = {"correctness": correctness, "speed": speed}
    return combined_score(correctness, speed), side_info


def _speed(measured: dict[str, Any] | None) -> tuple[float, str]:
    if measured is None:
        return 0.0, "not measured: the run ended before the timing (see outcome)"
    if "error" in measured:
        return 0.0, f"count_primes({WORKLOAD_N}) raised {measured['error']}"
    ratio = measured["candidate"] / measured["reference"]
    score = speed_score(ratio)
    return score, (
        f"count_primes(~{WORKLOAD_N}) takes {measured['candidate'] * 1000:.3g} ms per call (best "
        f"of 5), {ratio:.3g} x a reference loop of {REFERENCE_LOOP:,} additions: speed {score} "
        f"(1.0 at 1/{SPEED_RANGE:g} of the loop's time or less, 0.0 at {SPEED_RANGE:g} x)"
    )


def evolve(
    seed: str | None, reflection_lm: Any, budget: int, stop_callbacks: Sequence[Any] = ()
) -> AnythingResult:
    """One run of at most ``budget`` evaluations from ``seed`` (``None``: the reflection model
    writes the first version from :data:`OBJECTIVE` and :data:`BACKGROUND`)."""
    return gepetto.optimize_anything(
        seed,
        evaluator=evaluate,
        objective=OBJECTIVE,
        background=BACKGROUND,
        config=GEPAConfig(
            engine=EngineConfig(max_metric_calls=budget),
            reflection=ReflectionConfig(reflection_lm=reflection_lm),
            stop_callbacks=list(stop_callbacks),
        ),
    )


def objectives(result: AnythingResult, candidate_id: int) -> dict[str, float]:
    """The candidate's correctness and speed, as the run measured them."""
    return dict((result.objective_scores or [{}] * (candidate_id + 1))[candidate_id])


def summary(result: AnythingResult) -> list[str]:
    """What the run achieved on both objectives, against the first candidate, and its front."""

    def line(label: str, candidate_id: int) -> str:
        found = objectives(result, candidate_id)
        score = result.val_aggregate_scores[candidate_id]
        return (
            f"{label:<8} #{candidate_id}: correctness {found.get('correctness', 0.0):.2f}, "
            f"speed {found.get('speed', 0.0):.2f}, score {score:.2f}"
        )

    scores = result.val_aggregate_scores
    lines = [f"seed {scores[0]:.2f} -> best {scores[result.best_idx]:.2f} (the plain score)"]
    lines += [line("seed", 0), line("best", result.best_idx), "Pareto front:"]
    lines += [line("", i) for i in result.pareto_front]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a real reflection model (default: scripted replies)")
    parser.add_argument("--seedless", action="store_true", help="no seed: the model writes it")
    parser.add_argument("--budget", type=int, default=10, help="metric calls (default 10)")
    args = parser.parse_args()
    replies = ([f"```\n{SEED}```"] if args.seedless else []) + SCRIPTED_REPLIES
    reflection_lm: Any = args.model or ScriptedLM(replies, repeat_last=True)
    result = evolve(None if args.seedless else SEED, reflection_lm, args.budget)
    print("\n".join(summary(result)), end="\n\n")
    print(result.best_candidate)


if __name__ == "__main__":
    main()
