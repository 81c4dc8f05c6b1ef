"""The contract every adapter passes, as one plain function.

Run it from a test of your adapter::

    from gepetto.testing.adapter_contract import check_adapter_contract

    def test_my_adapter_keeps_the_contract():
        check_adapter_contract(
            lambda: MyAdapter(ScriptedLM(...)),
            candidate={"instructions": "Answer briefly."},
            examples=[{"input": "2+2", "answer": "4"}, {"input": "3+3", "answer": "6"}],
            failing_example={"input": "boom", "answer": "?"},  # the system raises on it
        )

What is checked (gepa's adapter protocol, and what gepetto's run relies on):

- one output and one score per example, scores finite real numbers, in batch order (the
  batch reversed gives the scores reversed; each example alone gives its batch score, when
  ``deterministic``);
- the batch and the candidate are not mutated (by ``evaluate`` nor by
  ``make_reflective_dataset``);
- an example on which the system raises becomes a finite score, with a trajectory, and
  records in the reflective dataset that mention ``failure_text`` when given, not an
  exception;
- trajectories are present when ``capture_traces=True`` and absent (``None``) otherwise;
- trajectories, outputs and the reflective dataset are JSON-serializable (a run stores its
  evaluations, and an interrupted run resumes without paying twice);
- ``make_reflective_dataset`` returns records (dicts) for the requested components only.

``make_adapter`` is a zero-argument factory; each check gets a fresh adapter. Sync and
``async def`` methods both work (the checks run their own event loop: call them from a
plain test, not from inside a running loop). A failed check raises :class:`AssertionError`
saying what went wrong.
"""

from __future__ import annotations

import asyncio
import copy
import json
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from gepetto.adapter import call_maybe_async

__all__ = ["check_adapter_contract"]

AdapterFactory = Callable[[], Any]


def _need_assertions() -> None:
    if not __debug__:  # pragma: no cover - python -O strips the checks' assert statements
        raise RuntimeError("the adapter contract checks need assertions: run without -O")


def check_adapter_contract(
    make_adapter: AdapterFactory,
    candidate: Mapping[str, str],
    examples: Sequence[Any],
    *,
    failing_example: Any = None,
    failure_text: str | None = None,
    components: Sequence[str] | None = None,
    deterministic: bool = True,
) -> None:
    """Check an adapter against the adapter contract (see the module docstring).

    Args:
        make_adapter: a zero-argument factory of the adapter.
        candidate: a candidate the adapter accepts (component name -> text).
        examples: at least two examples on which the system works.
        failing_example: an example on which the system raises (a failing model call, a
            crashing program), or ``None`` to skip that check.
        failure_text: text the reflective dataset must show for the failing example (the
            error message, say), or ``None``.
        components: the components to build reflective datasets for (default: all of
            ``candidate``).
        deterministic: the adapter gives an example the same score alone and in a batch;
            ``False`` skips the order checks that rely on it (a sampling LM).

    Raises:
        AssertionError: the first broken rule, with what was returned.
    """
    _need_assertions()
    if len(examples) < 2:
        raise ValueError("check_adapter_contract needs at least two examples")
    names = list(components if components is not None else candidate)
    asyncio.run(_check_shapes(make_adapter(), dict(candidate), list(examples)))
    if deterministic:
        asyncio.run(_check_order(make_adapter, dict(candidate), list(examples)))
    asyncio.run(_check_reflective_dataset(make_adapter(), dict(candidate), list(examples), names))
    if failing_example is not None:
        asyncio.run(
            _check_failure(
                make_adapter(), dict(candidate), examples[0], failing_example, failure_text, names
            )
        )


async def _evaluate(adapter: Any, batch: list[Any], candidate: dict[str, str], traces: bool) -> Any:
    result = await call_maybe_async(adapter.evaluate, batch, candidate, traces)
    for field in ("outputs", "scores", "trajectories"):
        assert hasattr(result, field), f"evaluate returned {type(result).__name__} without {field}"
    return result


def _assert_scores(scores: object, size: int) -> list[float]:
    assert isinstance(scores, Sequence) and not isinstance(scores, str), (
        f"scores must be a list, got {type(scores).__name__}"
    )
    assert len(scores) == size, f"{len(scores)} scores for {size} examples"
    for score in scores:
        assert not isinstance(score, bool) and isinstance(score, numbers.Real), (
            f"score {score!r} is not a real number"
        )
        assert math.isfinite(float(score)), f"score {score!r} is not finite"
    return [float(s) for s in scores]


def _assert_json(value: object, what: str) -> None:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise AssertionError(f"{what} is not JSON-serializable ({error}): {value!r:.300}") from None


async def _check_shapes(adapter: Any, candidate: dict[str, str], examples: list[Any]) -> None:
    batch = copy.deepcopy(examples)
    kept_batch, kept_candidate = copy.deepcopy(batch), copy.deepcopy(candidate)
    for traces in (False, True):
        result = await _evaluate(adapter, batch, candidate, traces)
        assert batch == kept_batch, "evaluate mutated the batch"
        assert candidate == kept_candidate, "evaluate mutated the candidate"
        assert len(result.outputs) == len(batch), (
            f"{len(result.outputs)} outputs for {len(batch)} examples"
        )
        _assert_scores(result.scores, len(batch))
        _assert_json(list(result.outputs), "the outputs")
        if traces:
            assert result.trajectories is not None, "capture_traces=True but trajectories=None"
            assert len(result.trajectories) == len(batch), (
                f"{len(result.trajectories)} trajectories for {len(batch)} examples"
            )
            _assert_json(list(result.trajectories), "the trajectories")
        else:
            assert result.trajectories is None, (
                "capture_traces=False but trajectories were returned (they are only built when "
                "the reflection needs them)"
            )
        objectives = getattr(result, "objective_scores", None)
        if objectives is not None:
            assert len(objectives) == len(batch), "one objective_scores entry per example"


async def _check_order(
    make_adapter: AdapterFactory, candidate: dict[str, str], examples: list[Any]
) -> None:
    forward = _assert_scores(
        (await _evaluate(make_adapter(), list(examples), candidate, False)).scores, len(examples)
    )
    backward = _assert_scores(
        (await _evaluate(make_adapter(), examples[::-1], candidate, False)).scores, len(examples)
    )
    assert backward == forward[::-1], (
        f"scores are not in batch order: {forward} forward, {backward} for the reversed batch"
    )
    for position, example in enumerate(examples):
        alone = _assert_scores(
            (await _evaluate(make_adapter(), [example], candidate, False)).scores, 1
        )
        assert alone == [forward[position]], (
            f"example {position} scores {alone[0]} alone but {forward[position]} in the batch"
        )


async def _reflective_dataset(
    adapter: Any, candidate: dict[str, str], result: Any, names: list[str]
) -> Mapping[str, Any]:
    kept_candidate = copy.deepcopy(candidate)
    kept_scores, kept_traces = list(result.scores), copy.deepcopy(result.trajectories)
    dataset = await call_maybe_async(adapter.make_reflective_dataset, candidate, result, names)
    assert candidate == kept_candidate, "make_reflective_dataset mutated the candidate"
    assert list(result.scores) == kept_scores and result.trajectories == kept_traces, (
        "make_reflective_dataset mutated the evaluation batch"
    )
    assert isinstance(dataset, Mapping), (
        f"make_reflective_dataset returned {type(dataset).__name__}, not a dict"
    )
    assert set(dataset) <= set(names), (
        f"make_reflective_dataset returned components {sorted(dataset)} for {names}"
    )
    for name, records in dataset.items():
        assert isinstance(records, Sequence) and not isinstance(records, str), (
            f"the records of {name!r} are {type(records).__name__}, not a list"
        )
        assert all(isinstance(r, Mapping) for r in records), f"a record of {name!r} is not a dict"
    _assert_json(dict(dataset), "the reflective dataset")
    return dataset


async def _check_reflective_dataset(
    adapter: Any, candidate: dict[str, str], examples: list[Any], names: list[str]
) -> None:
    result = await _evaluate(adapter, list(examples), candidate, True)
    everything = await _reflective_dataset(adapter, candidate, result, names)
    assert any(everything.get(name) for name in names), "the reflective dataset has no records"
    for name in names:
        await _reflective_dataset(adapter, candidate, result, [name])


async def _check_failure(
    adapter: Any,
    candidate: dict[str, str],
    good: Any,
    failing: Any,
    failure_text: str | None,
    names: list[str],
) -> None:
    batch = [good, failing]
    try:
        result = await _evaluate(adapter, batch, candidate, True)
    except Exception as error:
        raise AssertionError(
            f"evaluate raised {type(error).__name__}: {error} for a failing example; a failure "
            "must become a score with feedback"
        ) from error
    _assert_scores(result.scores, 2)
    assert result.trajectories is not None and len(result.trajectories) == 2, (
        "a failing example must still have its trajectory"
    )
    _assert_json(list(result.trajectories), "the trajectories of a failing example")
    dataset = await _reflective_dataset(adapter, candidate, result, names)
    if failure_text is not None:
        shown = json.dumps(dict(dataset), ensure_ascii=False)
        assert failure_text in shown, (
            f"the reflective dataset does not show the failure ({failure_text!r}): {shown:.500}"
        )
