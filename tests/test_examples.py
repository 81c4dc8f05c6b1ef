"""The examples in examples/ run and print what they achieved against their seed.

The examples that need no model run in full. Those on the local models run as a user would
start them, with a small budget where they take one (``--budget``, ``--size``), so the test
shows they work end to end, not how much they gain (docs/benchmarks.md has those numbers).
The framework examples (DSPy, LangChain, MCP, RAG, the two-objective code evolution) are
not run here: their adapters' end-to-end tests run the same pipelines on the local models
(tests/lm/test_real_*.py), and the code-evolution example's scripted mode is run by
tests/test_code_evolution_two_objectives.py.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
_SCORES = re.compile(r"seed (\d\.\d\d) -> best (\d\.\d\d)")


def run_example(name: str, *args: str, cwd: Path, timeout: float = 900) -> str:
    completed = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed.stdout


def seed_and_best(output: str) -> tuple[float, float]:
    match = _SCORES.search(output)
    assert match, output
    seed, best = float(match[1]), float(match[2])
    assert 0.0 <= seed <= 1.0 and 0.0 <= best <= 1.0
    return seed, best


def test_scripted_quick_start(tmp_path: Path) -> None:
    seed, best = seed_and_best(run_example("quickstart_scripted.py", cwd=tmp_path))
    assert best > seed


@pytest.mark.slow
@pytest.mark.llm
@pytest.mark.timeout(1200)
@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("quickstart.py", ()),
        ("math_word_problems.py", ("--budget", "20", "--size", "4")),
        ("structured_extraction.py", ("--budget", "20", "--size", "4")),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_example_on_the_local_models(name: str, args: tuple[str, ...], tmp_path: Path) -> None:
    output = run_example(name, *args, cwd=tmp_path)
    seed, best = seed_and_best(output)  # validation: the best is never below the seed
    assert best >= seed
    assert "held-out" in output
    assert "hand-written reference" in output or name == "quickstart.py"


@pytest.mark.slow
@pytest.mark.llm
@pytest.mark.timeout(1200)
def test_custom_adapter_example(tmp_path: Path) -> None:
    output = run_example("custom_adapter.py", "--budget", "16", cwd=tmp_path)
    assert "adapter contract: ok" in output
    seed, best = seed_and_best(output)
    assert best >= seed  # both on the validation set: the best is never below the seed


@pytest.mark.slow
@pytest.mark.llm
@pytest.mark.timeout(1200)
def test_save_and_resume_example(tmp_path: Path) -> None:
    output = run_example("save_and_resume.py", "--budget", "30", "--run-dir", "run", cwd=tmp_path)
    assert "were kept, not recomputed: True" in output
    first = re.search(r"interrupted: \d+ candidates, (\d+) calls", output)
    second = re.search(r"resumed: +\d+ candidates, (\d+) calls", output)
    assert first and second, output
    assert int(first[1]) <= 15 < int(second[1]) <= 30
