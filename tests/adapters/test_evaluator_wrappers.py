"""gepa's synchronous wrappers and stdio capture, as code built on gepa calls them."""

from __future__ import annotations

import io
import sys
import threading
from typing import Any

import pytest

import gepetto.optimize_anything as oa
from gepetto import ConfigError, Image
from gepetto.adapters.evaluator_wrappers import (
    BatchEvaluatorWrapper,
    EvaluatorWrapper,
    OptimizeAnythingAdapter,
)
from gepetto.adapters.side_info import StreamCaptureManager, ThreadLocalStreamCapture
from gepetto.proposers.prompts import InstructionProposalSignature


def test_the_evaluator_wrapper_captures_log_and_prints_per_call() -> None:
    def evaluator(candidate: str, example: Any = None, **kwargs: Any) -> tuple[float, dict]:
        oa.log("saw", candidate)
        print("printed", example)
        return 0.5, {"log": "mine"}

    wrapped = EvaluatorWrapper(
        evaluator, single_instance_mode=False, capture_stdio=True, str_candidate_mode=True
    )
    before = sys.stdout
    with pytest.warns(UserWarning, match="conflicts"):
        score, output, info = wrapped({"current_candidate": "abc"}, example=7)
    assert (score, output) == (0.5, None)
    assert info == {"log": "mine", "_gepa_log": "saw abc\n", "stdout": "printed 7\n"}
    assert sys.stdout is before


def test_the_evaluator_wrapper_raises_or_scores_zero() -> None:
    def broken(candidate: dict) -> float:
        oa.log("before")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        EvaluatorWrapper(broken, single_instance_mode=True)({"x": "1"})
    result = EvaluatorWrapper(broken, single_instance_mode=True, raise_on_exception=False)(
        {"x": "1"}
    )
    assert result == (0.0, None, {"error": "boom", "log": "before\n"})


def test_the_batch_wrapper_follows_gepa() -> None:
    seen: list[Any] = []

    def batch(pairs: list, opt_states: list) -> list:
        seen.append((pairs, opt_states))
        return [0.5, (0.7, None), (0.9, "output", {"n": 3})][: len(pairs)]

    wrapper = BatchEvaluatorWrapper(batch, str_candidate_key="t", single_instance_mode=True)
    results = wrapper([({"t": "a"}, 1), ({"t": "b"}, 2), ({"t": "c"}, 3)], opt_states=["s"] * 3)
    assert results == [(0.5, {}), (0.7, {}), (0.9, {"n": 3})]
    assert seen[0] == ([("a", None), ("b", None), ("c", None)], ["s"] * 3)
    with pytest.raises(ValueError, match="returned 1 results but expected 2"):
        BatchEvaluatorWrapper(lambda pairs: [1.0])([({}, 1), ({}, 2)])
    with pytest.raises(TypeError, match="side_info must be a dict"):
        BatchEvaluatorWrapper(lambda pairs: [(1.0, "x")])([({}, 1)])

    def down(pairs: list) -> list:
        raise RuntimeError("cluster down")

    failed = BatchEvaluatorWrapper(down, raise_on_exception=False)([({}, 1)])
    assert failed == [(0.0, {"error": "cluster down", "_gepa_transient_failure": True})]


def test_gepas_internal_adapter_class_says_what_to_use() -> None:
    with pytest.raises(ConfigError, match="AnythingAdapter"):
        OptimizeAnythingAdapter(evaluator=lambda c: 1.0)


def test_stream_capture_is_per_thread_and_reference_counted() -> None:
    original = io.StringIO()
    stream = ThreadLocalStreamCapture(original)
    results: dict[int, str] = {}

    def worker(n: int) -> None:
        stream.start_capture()
        assert not stream.isatty()
        stream.write(f"thread-{n}")
        results[n] = stream.stop_capture()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stream.write("outside")
    assert results == {n: f"thread-{n}" for n in range(4)}
    assert original.getvalue() == "outside"
    assert stream.writable() and not stream.readable()

    manager, before = StreamCaptureManager(), sys.stdout
    first, _ = manager.acquire()
    assert manager.acquire()[0] is first and sys.stdout is first
    manager.release()
    assert sys.stdout is first
    manager.release()
    manager.release()  # one too many: nothing happens
    assert sys.stdout is before


def test_the_instruction_proposal_signature_renders_images() -> None:
    image = Image(url="https://example.com/a.png")
    rendered = InstructionProposalSignature.prompt_renderer(
        {
            "current_instruction_doc": "Do the thing.",
            "dataset_with_feedback": [{"Plot": image, "Feedback": "too dark"}],
            "prompt_template": None,
        }
    )
    assert isinstance(rendered, list)
    text, part = rendered[0]["content"]
    assert "Do the thing." in text["text"] and "[IMAGE-1" in text["text"]
    assert part == image.to_openai_content_part()
    assert InstructionProposalSignature.output_extractor("```\nnew\n```") == {
        "new_instruction": "new"
    }
    with pytest.raises(ConfigError, match="placeholder"):
        InstructionProposalSignature.validate_prompt_template("no placeholders")


def test_the_seed_prompt_has_gepas_sections() -> None:
    prompt = oa._build_seed_generation_prompt("Go fast.", "On GPUs.", [{"i": n} for n in range(5)])
    for section in ("## Goal", "## Domain Context & Constraints", "## Sample Inputs"):
        assert section in prompt
    assert "Example 3" in prompt and "Example 4" not in prompt
    assert "## Sample Inputs" not in oa._build_seed_generation_prompt("Go fast.")
    assert oa._generate_seed_candidate(lambda p: "```\nseed\n```", "Go.") == {
        oa._STR_CANDIDATE_KEY: "seed"
    }
