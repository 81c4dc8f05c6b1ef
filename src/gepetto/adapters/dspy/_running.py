"""Running a DSPy program on one example and scoring it with a DSPy metric (shared by the
instruction and the full-program adapters).

A DSPy metric comes in two shapes, both accepted:

- plain: ``metric(example, pred, trace=None)`` (or ``metric(example, pred)``);
- GEPA-style: ``metric(gold, pred, trace, pred_name, pred_trace)``: called with
  ``pred_name``/``pred_trace`` it may give feedback for one predictor.

It returns a number (``bool`` counts as 0/1), or ``dspy.Prediction(score=..., feedback=...)``
(or a dict with ``score`` and optionally ``feedback``). Everything kept from a run is plain
JSON (:func:`jsonable`), so gepetto can journal it and resume.
"""

from __future__ import annotations

import inspect
import math
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gepetto.errors import ConfigError

__all__ = [
    "ExampleRun",
    "MetricCaller",
    "Verdict",
    "example_inputs",
    "jsonable",
    "run_example",
]

_TEXT_LIMIT = 4000
"""A value's text longer than this is cut in trajectories and reflective records."""


def jsonable(value: Any, limit: int = _TEXT_LIMIT) -> Any:
    """Plain JSON data for a DSPy value: numbers, strings, lists and dicts as they are
    (non-finite floats and long strings as text), pydantic models dumped, anything else
    (``dspy.Image``, ``dspy.History``, ...) as its ``str``."""
    if value is None or isinstance(value, bool | int | str):
        return _cut(value, limit) if isinstance(value, str) else value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, Mapping):
        return {str(key): jsonable(item, limit) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(item, limit) for item in value]
    dump = getattr(value, "model_dump", None)
    if callable(dump) and not isinstance(value, type):
        try:
            return jsonable(dump(mode="json"), limit)
        except Exception:  # a custom type whose dump fails is shown as text
            pass
    return _cut(str(value), limit)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + " ...[cut]"


def example_inputs(example: Any) -> dict[str, Any]:
    """The program's keyword arguments for an example: ``example.inputs()`` of a
    ``dspy.Example`` built with ``.with_inputs(...)``.

    Raises:
        ConfigError: not a ``dspy.Example``, or one without input keys.
    """
    inputs = getattr(example, "inputs", None)
    if not callable(inputs):
        raise ConfigError(
            f"a DSPy example must be a dspy.Example, got {type(example).__name__}; build it "
            "as dspy.Example(question=..., answer=...).with_inputs('question')"
        )
    try:
        return dict(inputs())
    except ValueError as error:
        raise ConfigError(
            f"{example!r:.200} has no input keys ({error}); mark them with "
            ".with_inputs('question', ...)"
        ) from None


@dataclass
class Verdict:
    """A metric's answer: the score and the feedback (``""`` when it gave none)."""

    score: float
    feedback: str = ""


class MetricCaller:
    """Calls a DSPy metric of either shape (see the module docstring).

    Args:
        metric: the metric.
        failure_score: the score of an example whose program or metric failed.

    Raises:
        ConfigError: ``metric`` is not callable or takes neither ``(example, pred)`` nor
            ``(gold, pred, trace, pred_name, pred_trace)``.
    """

    def __init__(self, metric: Callable[..., Any], failure_score: float = 0.0) -> None:
        if not callable(metric):
            raise ConfigError(f"metric must be callable, got {type(metric).__name__}")
        try:
            signature = inspect.signature(metric)
        except (TypeError, ValueError):  # a builtin without a signature: assume plain
            signature = None
        self.gepa_style = signature is not None and _binds(signature, 5)
        self.takes_trace = signature is None or _binds(signature, 3)
        if signature is not None and not (self.takes_trace or _binds(signature, 2)):
            raise ConfigError(
                f"metric {getattr(metric, '__qualname__', metric)!r} must take (example, pred, "
                "trace=None) or (gold, pred, trace, pred_name, pred_trace); its signature is "
                f"{signature}"
            )
        self.metric = metric
        self.failure_score = failure_score
        name = getattr(metric, "__qualname__", type(metric).__qualname__)
        self.name = f"{getattr(metric, '__module__', '')}.{name}".lstrip(".")

    def score(self, example: Any, prediction: Any) -> Verdict:
        """The program-level verdict (called with ``trace=None``, as ``dspy.Evaluate``
        does). A metric that raises or returns a non-number gives ``failure_score``."""
        args: tuple[Any, ...] = (
            (example, prediction, None)
            if self.takes_trace
            else (
                example,
                prediction,
            )
        )
        if self.gepa_style:
            args = (example, prediction, None, None, None)
        return self._call(args)

    def predictor_feedback(
        self, example: Any, prediction: Any, trace: list[Any], name: str, call: tuple[Any, ...]
    ) -> str | None:
        """Feedback for one predictor call from a GEPA-style metric, or ``None`` (a plain
        metric, or one that gave no feedback for it)."""
        if not self.gepa_style:
            return None
        verdict = self._call((example, prediction, trace, name, [call]))
        return verdict.feedback or None

    def _call(self, args: tuple[Any, ...]) -> Verdict:
        try:
            result = self.metric(*args)
        except Exception as error:
            return Verdict(self.failure_score, f"The metric raised {_error_text(error)}")
        return _as_verdict(result, self.failure_score)


def _binds(signature: inspect.Signature, count: int) -> bool:
    try:
        signature.bind(*([None] * count))
    except TypeError:
        return False
    return True


def _as_verdict(result: Any, failure_score: float) -> Verdict:
    score: Any = result
    feedback: Any = None
    if not isinstance(result, bool | int | float):
        getter = result.get if isinstance(result, Mapping) else getattr(result, "get", None)
        if callable(getter) and getter("score") is not None:
            score, feedback = getter("score"), getter("feedback")
        elif hasattr(result, "score"):
            score, feedback = result.score, getattr(result, "feedback", None)
    try:
        value = float(score)
    except (TypeError, ValueError):
        return Verdict(
            failure_score,
            f"The metric returned {result!r:.200}; it must return a number or "
            "dspy.Prediction(score=..., feedback=...)",
        )
    if not math.isfinite(value):
        return Verdict(failure_score, f"The metric returned a non-finite score {value}")
    return Verdict(value, "" if feedback is None else str(feedback))


def _error_text(error: BaseException) -> str:
    return f"{type(error).__name__}: {str(error).strip()}"


def _where(error: BaseException) -> str:
    """`` (at file:line in function)`` of the frame that raised, or ``""``."""
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return ""
    frame = frames[-1]
    return f" (at {frame.filename}:{frame.lineno} in {frame.name})"


@dataclass
class ExampleRun:
    """One example through the program: its prediction (or error), the calls each
    predictor made, and the metric's verdict. Everything but ``prediction`` and ``trace``
    is plain JSON."""

    inputs: dict[str, Any]
    prediction: Any = None
    trace: list[Any] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    parse_failure: dict[str, Any] | None = None
    verdict: Verdict = field(default_factory=lambda: Verdict(0.0))

    def trajectory(self, calls: list[dict[str, Any]]) -> dict[str, Any]:
        """The JSON trajectory: inputs, outputs, score, feedback, error and ``calls``."""
        return {
            "inputs": jsonable(self.inputs),
            "outputs": self.outputs,
            "score": self.verdict.score,
            "feedback": self.verdict.feedback,
            "error": self.error,
            "calls": calls,
        }


def run_example(
    dspy: Any,
    program: Any,
    example: Any,
    metric: MetricCaller,
    lm: Any,
    names: Mapping[int, str],
) -> ExampleRun:
    """Run ``program`` on ``example`` (with ``lm`` as DSPy's LM when given, and tracing on)
    and score it; any failure becomes ``metric.failure_score`` with the error as feedback.

    ``names`` maps ``id(predictor)`` to its name in the program, to name a predictor whose
    output did not parse.
    """
    try:
        inputs = example_inputs(example)
    except ConfigError as error:
        run = ExampleRun(inputs={}, error=str(error))
        run.verdict = Verdict(metric.failure_score, str(error))
        return run
    run = ExampleRun(inputs=inputs)
    settings: dict[str, Any] = {"trace": []}
    if lm is not None:
        settings["lm"] = lm
    with dspy.context(**settings):
        try:
            run.prediction = program(**inputs)
        except Exception as error:
            run.error = _error_text(error)
            run.parse_failure = _parse_failure(dspy, error, program, names)
            where = "" if run.parse_failure is not None else _where(error)
            run.verdict = Verdict(metric.failure_score, f"The program raised {run.error}{where}")
        run.trace = list(dspy.settings.trace or [])
    if run.error is None:
        run.outputs = prediction_fields(run.prediction)
        run.verdict = metric.score(example, run.prediction)
    return run


def prediction_fields(prediction: Any) -> dict[str, Any]:
    """A prediction's fields as JSON (``{"output": str(prediction)}`` for a non-Prediction)."""
    items = getattr(prediction, "items", None)
    if callable(items):
        try:
            return {str(k): jsonable(v) for k, v in items()}
        except Exception:  # an object whose items() is not a mapping's
            pass
    return {"output": jsonable(prediction)}


def _parse_failure(
    dspy: Any, error: BaseException, program: Any, names: Mapping[int, str]
) -> dict[str, Any] | None:
    """``{"predictor", "raw"}`` when a predictor's reply did not parse (AdapterParseError)."""
    parse_error = getattr(dspy.utils.exceptions, "AdapterParseError", None)
    if parse_error is None or not isinstance(error, parse_error):
        return None
    signature = getattr(error, "signature", None)
    name = None
    for predictor in program.predictors():
        if signature is not None and predictor.signature.equals(signature):
            name = names.get(id(predictor))
            break
    return {"predictor": name, "raw": jsonable(getattr(error, "lm_response", "") or "")}
