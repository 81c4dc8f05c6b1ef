"""A DSPy program as a GEPA adapter: the instructions of each of its predictors are the
texts the optimizer rewrites.

One component per named predictor (``program.named_predictors()``), its text the
predictor's ``signature.instructions``::

    import dspy
    import gepetto
    from gepetto.adapters.dspy import DspyAdapter, dspy_lm

    class Pipeline(dspy.Module):
        def __init__(self):
            self.rewrite = dspy.Predict("question -> search_query")
            self.answer = dspy.Predict("question, search_query -> answer")
        def forward(self, question):
            query = self.rewrite(question=question).search_query
            return self.answer(question=question, search_query=query)

    def metric(example, pred, trace=None):
        return example.answer.lower() == pred.answer.lower()

    adapter = DspyAdapter(Pipeline(), metric, lm=dspy_lm("local/qwen2.5-coder-0.5b"))
    result = gepetto.optimize(adapter.seed_candidate(), trainset, valset, adapter=adapter,
                              reflection_lm="local/qwen2.5-coder-1.5b", max_metric_calls=60)
    optimized = adapter.build_program(result.best_candidate)

Examples are ``dspy.Example`` objects with input keys (``.with_inputs(...)``). The metric is
a plain DSPy metric ``(example, pred, trace=None)`` or a GEPA-style one ``(gold, pred,
trace, pred_name, pred_trace)``, returning a number or ``dspy.Prediction(score=...,
feedback=...)`` (see :mod:`gepetto.adapters.dspy._running`). Scores come from the metric
called with ``trace=None``; with traces, a GEPA-style metric is also asked, for each
predictor call, for that predictor's feedback.

A trajectory is plain JSON: the example's inputs, the program's outputs, score, feedback,
error, and every predictor call with its inputs, outputs and feedback. The reflective
dataset of a predictor has one record per example (``Inputs``, ``Generated Outputs``,
``Feedback``): its call (the one whose output did not parse, else the last one); an example
that failed before the predictor ran shows the error. A program that raises on an example
(a failed LM call, an output that does not parse, a bug) scores ``failure_score`` with the
error as feedback; only that example is lost.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from gepetto.adapters.dspy._imports import import_dspy
from gepetto.adapters.dspy._running import (
    ExampleRun,
    MetricCaller,
    jsonable,
    run_example,
)
from gepetto.errors import ConfigError
from gepetto.types import EvaluationBatch

__all__ = ["DspyAdapter"]

_CALLS_PER_EXAMPLE = 4
"""Calls of one predictor kept per example in a trajectory (a loop may call it often)."""


class DspyAdapter:
    """Optimizes the instructions of every predictor of a DSPy program.

    Args:
        program: a ``dspy.Module`` with at least one predictor; it is never modified
            (each evaluation runs a deep copy with the candidate's instructions).
        metric: the DSPy metric (see the module docstring).
        lm: the ``dspy.LM`` the program runs with; default: DSPy's configured LM
            (``dspy.configure(lm=...)``) at the time of each evaluation. A predictor with
            its own LM (``predictor.lm``) keeps it.
        num_threads: examples of one batch run at once (threads; default 4).
        failure_score: the score of an example whose program or metric failed.
        add_format_failure_as_feedback: when a predictor's output did not parse, show the
            reflection its raw reply and the format it must follow (default true).

    Raises:
        ConfigError: no predictors, a bad metric, or ``num_threads`` below 1.
        ImportError: DSPy is not installed (``pip install 'gepetto[dspy]'``).
    """

    def __init__(
        self,
        program: Any,
        metric: Callable[..., Any],
        *,
        lm: Any = None,
        num_threads: int | None = None,
        failure_score: float = 0.0,
        add_format_failure_as_feedback: bool = True,
    ) -> None:
        self._dspy = import_dspy()
        if not isinstance(program, self._dspy.Module):
            raise ConfigError(f"program must be a dspy.Module, got {type(program).__name__}")
        names = [name for name, _ in program.named_predictors()]
        if not names:
            raise ConfigError(
                f"{type(program).__name__} has no predictors (dspy.Predict, "
                "dspy.ChainOfThought, ...): there are no instructions to optimize"
            )
        if num_threads is not None and num_threads < 1:
            raise ConfigError(f"num_threads must be >= 1, got {num_threads}")
        self.program = program
        self.metric = MetricCaller(metric, failure_score)
        self.lm = lm
        self.num_threads = num_threads or 4
        self.failure_score = failure_score
        self.add_format_failure_as_feedback = add_format_failure_as_feedback
        self.predictor_names = names

    # ----- configuration ---------------------------------------------------------------------

    def seed_candidate(self) -> dict[str, str]:
        """The program's current instructions, one component per named predictor."""
        return {
            name: predictor.signature.instructions
            for name, predictor in self.program.named_predictors()
        }

    def build_program(self, candidate: Mapping[str, str]) -> Any:
        """A deep copy of the program with the candidate's instructions (a predictor the
        candidate does not name keeps its own).

        Raises:
            ConfigError: the candidate names a predictor the program does not have.
        """
        unknown = sorted(set(candidate) - set(self.predictor_names))
        if unknown:
            raise ConfigError(
                f"the candidate names {unknown}, which are not predictors of "
                f"{type(self.program).__name__} (its predictors: {self.predictor_names})"
            )
        program = self.program.deepcopy()
        for name, predictor in program.named_predictors():
            if name in candidate:
                predictor.signature = predictor.signature.with_instructions(candidate[name])
        return program

    def fingerprint(self) -> str:
        """What a resumed run must share: the program's class and predictors (with their
        fields), the metric and the LM's model."""
        predictors = ", ".join(
            f"{name}({', '.join(p.signature.input_fields)} -> "
            f"{', '.join(p.signature.output_fields)})"
            for name, p in self.program.named_predictors()
        )
        model = getattr(self.lm, "model", None) if self.lm is not None else "dspy.settings.lm"
        return (
            f"DspyAdapter(program={type(self.program).__qualname__}[{predictors}], "
            f"metric={self.metric.name}, lm={model})"
        )

    # ----- evaluate --------------------------------------------------------------------------

    def evaluate(
        self, batch: list[Any], candidate: dict[str, str], capture_traces: bool = False
    ) -> EvaluationBatch[dict[str, Any], dict[str, Any]]:
        """Run the program with the candidate's instructions on every example and score it."""
        program = self.build_program(candidate)
        names = {id(predictor): name for name, predictor in program.named_predictors()}
        runs = run_batch(self._dspy, program, batch, self.metric, self.lm, names, self.num_threads)
        return EvaluationBatch(
            outputs=[run.outputs for run in runs],
            scores=[run.verdict.score for run in runs],
            trajectories=[
                self._trajectory(run, example, names)
                for run, example in zip(runs, batch, strict=True)
            ]
            if capture_traces
            else None,
        )

    def _trajectory(
        self, run: ExampleRun, example: Any, names: Mapping[int, str]
    ) -> dict[str, Any]:
        calls: list[dict[str, Any]] = []
        kept: dict[str, int] = {}
        for entry in run.trace:
            predictor, inputs, outputs = entry
            name = names.get(id(predictor))
            if name is None or kept.get(name, 0) >= _CALLS_PER_EXAMPLE:
                continue
            kept[name] = kept.get(name, 0) + 1
            feedback = None
            if run.error is None:
                feedback = self.metric.predictor_feedback(
                    example, run.prediction, run.trace, name, tuple(entry)
                )
            calls.append(
                {
                    "predictor": name,
                    "inputs": jsonable(dict(inputs)),
                    "outputs": jsonable(
                        dict(outputs.items()) if hasattr(outputs, "items") else outputs
                    ),
                    "feedback": feedback or run.verdict.feedback or _score_feedback(run),
                }
            )
        failure = run.parse_failure
        if failure is not None and failure.get("predictor") is not None:
            calls.append(
                {
                    "predictor": failure["predictor"],
                    "inputs": None,
                    "outputs": failure["raw"],
                    "parse_failure": True,
                    "feedback": run.verdict.feedback,
                }
            )
        return run.trajectory(calls)

    # ----- reflection ------------------------------------------------------------------------

    def make_reflective_dataset(
        self,
        candidate: dict[str, str],
        eval_batch: EvaluationBatch[Any, Any],
        components_to_update: list[str],
    ) -> dict[str, list[dict[str, Any]]]:
        """Per predictor, one record per example: its call's inputs, outputs and feedback."""
        program = self.build_program(candidate) if self.add_format_failure_as_feedback else None
        formats = _format_rules(program) if program is not None else {}
        dataset: dict[str, list[dict[str, Any]]] = {}
        for name in components_to_update:
            records = [
                record
                for trajectory in eval_batch.trajectories or []
                if (record := self._record(trajectory, name, formats)) is not None
            ]
            dataset[name] = records
        return dataset

    def _record(
        self, trajectory: Mapping[str, Any], name: str, formats: Mapping[str, str]
    ) -> dict[str, Any] | None:
        calls = [c for c in trajectory.get("calls", []) if c.get("predictor") == name]
        failed = [c for c in calls if c.get("parse_failure")]
        if failed:
            call = failed[0]
            feedback = (
                "The output could not be parsed as the expected fields. The model's raw reply "
                f"was:\n{call['outputs']}"
            )
            if self.add_format_failure_as_feedback and name in formats:
                feedback += f"\nThe reply must follow this structure:\n{formats[name]}"
            return {
                "Inputs": trajectory.get("inputs", {}),
                "Generated Outputs": call["outputs"],
                "Feedback": feedback,
            }
        if calls:
            call = calls[-1]
            return {
                "Inputs": call["inputs"],
                "Generated Outputs": call["outputs"],
                "Feedback": call["feedback"],
            }
        if trajectory.get("error"):
            return {
                "Inputs": trajectory.get("inputs", {}),
                "Generated Outputs": "(the program failed before this predictor ran)",
                "Feedback": trajectory.get("feedback") or trajectory["error"],
            }
        return None  # the program did not call this predictor on this example


def _score_feedback(run: ExampleRun) -> str:
    return f"This trajectory got a score of {run.verdict.score}."


def _format_rules(program: Any) -> dict[str, str]:
    """Per predictor, the output structure DSPy's ChatAdapter asks for (its field markers)."""
    rules: dict[str, str] = {}
    for name, predictor in program.named_predictors():
        fields = predictor.signature.output_fields
        rules[name] = "\n".join(f"[[ ## {field} ## ]]\n<{field}>" for field in fields) + (
            "\n[[ ## completed ## ]]"
        )
    return rules


def run_batch(
    dspy: Any,
    program: Any,
    batch: Sequence[Any],
    metric: MetricCaller,
    lm: Any,
    names: Mapping[int, str],
    num_threads: int,
) -> list[ExampleRun]:
    """Every example of ``batch`` through ``program`` (up to ``num_threads`` at once), in
    batch order."""
    if len(batch) <= 1 or num_threads == 1:
        return [run_example(dspy, program, example, metric, lm, names) for example in batch]
    with ThreadPoolExecutor(max_workers=min(num_threads, len(batch))) as pool:
        return list(
            pool.map(lambda example: run_example(dspy, program, example, metric, lm, names), batch)
        )
