"""The examples in examples/ run and print what they achieved against their seed.

The examples that need no model run in full. Those on the local models run as a user would
start them, at a small size and budget (``--budget``, ``--size``, ``--train/--val/--test``).
Where an example offers ``--scripted-reflection`` (the 1.5B reflection replaced by a fixed
better proposal), the test uses it and asserts the held-out score rises from the seed: the
real 0.5B task model answers every example at temperature 0 (nearly repeatable: llama.cpp's
answers can differ when requests share a batch, so the sizes leave a margin); the MCP, RAG
and DSPy examples are only run, their gain being asserted by other real-model tests (see
``RUN_ONLY_EXAMPLES``). The quick start always uses the real 1.5B reflection: it is
asserted never to end below its seed on validation; how much the reflection gains is
measured in docs/benchmarks.md, not here. The math example is only run (see its test).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gepetto.datasets.shop import SHOP_MULTIPLY_DESCRIPTION

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
_SCORES = re.compile(r"validation[^:\n]*: seed (\d\.\d\d) -> best (\d\.\d\d)")
_HELD_OUT = re.compile(r"held-out[^:\n]*: seed (\d\.\d+) -> best (\d\.\d+)")


def run_example(
    name: str, *args: str, cwd: Path, timeout: float = 900, directory: Path = EXAMPLES
) -> str:
    completed = subprocess.run(
        [sys.executable, str(directory / name), *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed.stdout


def seed_and_best(output: str, pattern: re.Pattern[str] = _SCORES) -> tuple[float, float]:
    """The seed's and the best candidate's scores from the example's printed line."""
    match = pattern.search(output)
    assert match, output
    seed, best = float(match[1]), float(match[2])
    assert 0.0 <= seed <= 1.0 and 0.0 <= best <= 1.0
    return seed, best


def test_scripted_quick_start(tmp_path: Path) -> None:
    seed, best = seed_and_best(run_example("quickstart_scripted.py", cwd=tmp_path))
    assert best > seed


SCRIPTED_EXAMPLES = {
    "structured_extraction": ("--budget", "14", "--size", "4"),
    # The agent's answers vary from run to run (llama.cpp's batching), and a tie keeps the
    # seed. On 4 validation orders the MCP agent tied at 1/4 once; on 8 held-out orders the
    # seed once scored 7/8 in CI, where it scored 3/8 and 4/8 here. On the 12 held-out
    # orders the seed scored 6/12 and 4/12 here, the scripted description 11/12 twice.
    "agent_tools": ("--budget", "18", "--train", "4", "--val", "6", "--test", "12"),
    "langchain_chain": ("--budget", "14", "--train", "3", "--val", "4", "--test", "6"),
}


# Examples whose gain is asserted elsewhere on the real 0.5B, run here end to end at a small
# size (the rise needs a size that took minutes of CI each): the MCP example's better
# `multiply` description by the agent_tools example (the same agent loop; only the way to
# the tools differs) and through a real MCP server by tests/adapters/test_mcp_adapter.py;
# the RAG example's prompts by tests/lm/test_real_rag.py (every store); the DSPy example's
# instructions by tests/lm/test_real_dspy.py. At the sizes that show it, the three took
# 309 s, 113 s and 73 s of a CI run here, and the RAG example's rise was thin (0.38 -> 0.41 on 10).
RUN_ONLY_EXAMPLES = {
    "mcp_tools": ("--budget", "8", "--train", "2", "--val", "2", "--test", "2"),
    "rag": ("--budget", "8", "--store", "qdrant", "--train", "1", "--val", "2", "--test", "3"),
    "dspy_program": ("--budget", "8", "--train", "2", "--val", "2", "--test", "3"),
}


@pytest.mark.slow
@pytest.mark.llm
@pytest.mark.timeout(900)
@pytest.mark.parametrize("name", sorted([*SCRIPTED_EXAMPLES, *RUN_ONLY_EXAMPLES]))
def test_example_with_scripted_reflection(name: str, tmp_path: Path) -> None:
    """The held-out score rises from the seed (only run: ``RUN_ONLY_EXAMPLES``)."""
    args = (*(SCRIPTED_EXAMPLES | RUN_ONLY_EXAMPLES)[name], "--scripted-reflection")
    output = run_example(f"{name}.py", *args, cwd=tmp_path)
    seed, best = seed_and_best(output, _HELD_OUT)
    if name in SCRIPTED_EXAMPLES:
        assert best > seed, output[-3000:]
    val_seed, val_best = seed_and_best(output)
    assert val_best >= val_seed  # a tie keeps the seed
    if name == "agent_tools":  # the scripted description is what won
        assert f"tool:multiply: {SHOP_MULTIPLY_DESCRIPTION}" in output
    if name == "mcp_tools":
        # The tool texts were seeded from the server's list_tools (the example's own tools),
        # and one server process served the whole run.
        assert "tool:lookup_price: The unit price of an item, in dollars." in output
        texts = ("The product of two numbers.", SHOP_MULTIPLY_DESCRIPTION)
        assert any(f"tool:multiply: {text}\n" in output for text in texts)
        assert "server restarts: 0" in output


@pytest.mark.slow
@pytest.mark.llm
@pytest.mark.timeout(900)
def test_math_word_problems_example_runs_end_to_end(tmp_path: Path) -> None:
    """Arithmetic on the 0.5B is too noisy at a test's size to assert a gain: with 8 problems
    per split, the hand-written prompt scored 0.75 on held-out against the seed's 0.62 once,
    and tied the seed on validation (the search keeps the seed on a tie)."""
    args = ("--budget", "8", "--size", "2", "--scripted-reflection")  # val 2, mb 2 + 2, val 2
    output = run_example("math_word_problems.py", *args, cwd=tmp_path)
    seed, best = seed_and_best(output)
    assert best >= seed
    seed_and_best(output, _HELD_OUT)
    assert "hand-written reference" in output


@pytest.mark.slow
@pytest.mark.llm
@pytest.mark.timeout(1200)
def test_quick_start_on_the_local_models(tmp_path: Path) -> None:
    """The quick start's code as written, at budget 18 instead of 40: the seed's validation
    (12 calls) and one real reflection of the 1.5B (50-60 s a reply on 2 cores, twice when
    the first reply is unusable or unchanged) whose child is scored on the minibatch, then
    the held-out scoring; 1.5-3.5 minutes, to keep CI under its time limit.
    The budget leaves no room to validate a child, so the seed stays the best: this shows
    the example runs end to end on the real models and prints its scores, not a gain."""
    source = (EXAMPLES / "quickstart.py").read_text()
    assert source.count("max_metric_calls=40") == 1
    (tmp_path / "quickstart.py").write_text(
        source.replace("max_metric_calls=40", "max_metric_calls=18")
    )
    output = run_example("quickstart.py", cwd=tmp_path, directory=tmp_path)
    seed, best = seed_and_best(output)  # validation: the best is never below the seed
    assert best >= seed
    assert "held-out" in output


@pytest.mark.slow
@pytest.mark.llm
@pytest.mark.timeout(1200)
def test_custom_adapter_example(tmp_path: Path) -> None:
    args = ("--budget", "18", "--scripted-reflection")  # seed val 6, minibatch 3 + 3, val 6
    output = run_example("custom_adapter.py", *args, cwd=tmp_path)
    assert "adapter contract: ok" in output
    seed, best = seed_and_best(output)  # validation: the example has no held-out set
    assert best > seed


@pytest.mark.slow
@pytest.mark.llm
@pytest.mark.timeout(1200)
def test_save_and_resume_example(tmp_path: Path) -> None:
    output = run_example(
        "save_and_resume.py",
        *("--budget", "16", "--size", "4", "--run-dir", "run", "--scripted-reflection"),
        cwd=tmp_path,
    )
    assert "were kept, not recomputed: True" in output
    first = re.search(r"interrupted: \d+ candidates, (\d+) calls", output)
    second = re.search(r"resumed: +\d+ candidates, (\d+) calls", output)
    assert first and second, output
    assert int(first[1]) <= 8 < int(second[1]) <= 16
    seed, best = seed_and_best(output)
    assert best > seed
