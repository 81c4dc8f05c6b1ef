"""A whole DSPy program, as Python source, is the text the optimizer rewrites.

The one component (``"program"``) is a self-contained Python script that imports ``dspy`` and
assigns a ``dspy.Module`` to the name ``program``: its signatures, modules and control flow
can all change, not just instructions::

    import gepetto
    from gepetto.adapters.dspy import FULL_PROGRAM_REFLECTION_TEMPLATE, DspyFullProgramAdapter

    SEED = '''import dspy
    program = dspy.Predict("question -> answer")
    '''
    adapter = DspyFullProgramAdapter(metric, lm=dspy_lm("local/qwen2.5-coder-0.5b"))
    result = gepetto.optimize({"program": SEED}, trainset, valset, adapter=adapter,
                              reflection_lm="openai/gpt-4.1",
                              reflection_prompt_template=FULL_PROGRAM_REFLECTION_TEMPLATE,
                              max_metric_calls=200)
    program = adapter.build_program(result.best_candidate)

A candidate whose source does not compile, raises while it runs, or defines no
``dspy.Module`` named ``program`` scores ``failure_score`` on every example, and the error
(with the line it points at) is the feedback the reflection reads; the run goes on.

**The source is executed in this process**, with this process's rights, as gepa's full
program adapter does: use a reflection model you trust, and run the optimization where a
bad program can do no harm.

The reflective dataset has one record per example: the program's inputs and outputs, the
calls its predictors made, and the feedback. The proposal is made by gepetto's reflection
(metered, cached, journaled like any other); :data:`FULL_PROGRAM_REFLECTION_TEMPLATE` is a
reflection prompt written for programs (pass it as ``reflection_prompt_template``).
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Mapping
from typing import Any

from gepetto.adapters.dspy._imports import import_dspy
from gepetto.adapters.dspy._running import MetricCaller, jsonable
from gepetto.adapters.dspy.instructions import run_batch
from gepetto.errors import ConfigError
from gepetto.types import EvaluationBatch

__all__ = ["FULL_PROGRAM_REFLECTION_TEMPLATE", "PROGRAM", "DspyFullProgramAdapter"]

PROGRAM = "program"
"""The component holding the program's source (and the name the source must assign)."""

FULL_PROGRAM_REFLECTION_TEMPLATE = """You are improving a Python program written with DSPy.
In DSPy, a signature (a string "question -> answer" or a dspy.Signature class whose
docstring holds the instructions) says what a step takes and returns; dspy.Predict and
dspy.ChainOfThought run one signature with the language model; a dspy.Module subclass
chains steps in its forward() method and returns a dspy.Prediction.

The current program:
```
<curr_param>
```

How it did on some examples (inputs, outputs, the calls of its steps, and feedback):
```
<side_info>
```

Find what went wrong and change the program to fix it: sharper instructions in the
signatures, a better split into steps, or plain Python where the model is unreliable.
Keep what works. The result must be a complete Python script that imports dspy and
assigns the final dspy.Module to a variable named `program`. Reply with the whole new
script in one fenced code block."""
"""A reflection prompt for whole programs (``<curr_param>`` and ``<side_info>`` as in
gepetto's templates)."""


class DspyFullProgramAdapter:
    """Evolves a DSPy program's source code (see the module docstring).

    Args:
        metric: the DSPy metric, plain or GEPA-style (see :mod:`gepetto.adapters.dspy`).
        lm: the ``dspy.LM`` the programs run with; default: DSPy's configured LM.
        component: the candidate's component holding the source (default ``"program"``).
        num_threads: examples of one batch run at once (default 4).
        failure_score: the score of an example that failed (bad source included).

    Raises:
        ConfigError: a bad metric or ``num_threads`` below 1.
        ImportError: DSPy is not installed (``pip install 'gepetto[dspy]'``).
    """

    def __init__(
        self,
        metric: Callable[..., Any],
        *,
        lm: Any = None,
        component: str = PROGRAM,
        num_threads: int | None = None,
        failure_score: float = 0.0,
    ) -> None:
        self._dspy = import_dspy()
        if num_threads is not None and num_threads < 1:
            raise ConfigError(f"num_threads must be >= 1, got {num_threads}")
        self.metric = MetricCaller(metric, failure_score)
        self.lm = lm
        self.component = component
        self.num_threads = num_threads or 4
        self.failure_score = failure_score

    def fingerprint(self) -> str:
        """What a resumed run must share: the component, the metric and the LM's model."""
        model = getattr(self.lm, "model", None) if self.lm is not None else "dspy.settings.lm"
        return (
            f"DspyFullProgramAdapter(component={self.component}, metric={self.metric.name}, "
            f"lm={model})"
        )

    def load_program(self, source: str) -> tuple[Any, str | None]:
        """``(program, None)`` for source that defines a ``dspy.Module`` named ``program``,
        else ``(None, what went wrong)``: the syntax error, the exception with the end of
        its traceback, or the missing or wrong ``program``."""
        try:
            code = compile(source, "<candidate program>", "exec")
        except SyntaxError as error:
            shown = (error.text or "").rstrip()
            return None, (
                f"The program does not compile: SyntaxError: {error.msg} (line {error.lineno})"
                + (f"\n    {shown}" if shown else "")
            )
        namespace: dict[str, Any] = {"__name__": "gepetto_dspy_candidate"}
        try:
            exec(code, namespace)
        except Exception as error:
            lines = traceback.format_exception(error)
            return None, "Running the program's source raised:\n" + "".join(lines[-4:]).strip()
        program = namespace.get(PROGRAM)
        if program is None:
            return None, (
                "The source defines no `program`: assign the final dspy.Module (a dspy.Predict, "
                "a dspy.ChainOfThought, or an instance of your dspy.Module subclass) to a "
                "variable named `program`."
            )
        if not isinstance(program, self._dspy.Module):
            return None, (
                f"`program` is a {type(program).__name__}, not a dspy.Module: assign an "
                "instance (for example `program = MyModule()`, not the class)."
            )
        return program, None

    def build_program(self, candidate: Mapping[str, str]) -> Any:
        """The candidate's program.

        Raises:
            ConfigError: its source does not give a program (the message says why).
        """
        program, problem = self.load_program(candidate[self.component])
        if program is None:
            raise ConfigError(f"the candidate's program cannot be built: {problem}")
        return program

    def evaluate(
        self, batch: list[Any], candidate: dict[str, str], capture_traces: bool = False
    ) -> EvaluationBatch[dict[str, Any], dict[str, Any]]:
        """Build the candidate's program and run it on every example; a program that cannot
        be built scores ``failure_score`` everywhere, its error as the feedback."""
        program, problem = self.load_program(candidate[self.component])
        if program is None:
            return EvaluationBatch(
                outputs=[{} for _ in batch],
                scores=[self.failure_score for _ in batch],
                trajectories=[
                    {
                        "inputs": _inputs(example),
                        "outputs": {},
                        "score": self.failure_score,
                        "feedback": problem,
                        "error": problem,
                        "calls": [],
                    }
                    for example in batch
                ]
                if capture_traces
                else None,
            )
        names = {id(predictor): name for name, predictor in program.named_predictors()}
        runs = run_batch(self._dspy, program, batch, self.metric, self.lm, names, self.num_threads)
        trajectories = None
        if capture_traces:
            trajectories = [
                run.trajectory(
                    [
                        {
                            "predictor": names.get(id(predictor), type(predictor).__name__),
                            "inputs": jsonable(dict(inputs)),
                            "outputs": jsonable(
                                dict(outputs.items()) if hasattr(outputs, "items") else outputs
                            ),
                        }
                        for predictor, inputs, outputs in run.trace
                    ]
                )
                for run in runs
            ]
        return EvaluationBatch(
            outputs=[run.outputs for run in runs],
            scores=[run.verdict.score for run in runs],
            trajectories=trajectories,
        )

    def make_reflective_dataset(
        self,
        candidate: dict[str, str],
        eval_batch: EvaluationBatch[Any, Any],
        components_to_update: list[str],
    ) -> dict[str, list[dict[str, Any]]]:
        """One record per example for the program's component."""
        records = [
            {
                "Program Inputs": t.get("inputs", {}),
                "Program Outputs": t.get("outputs") or "(none: the program failed)",
                "Program Trace": [
                    {
                        "Called Module": c["predictor"],
                        "Inputs": c["inputs"],
                        "Generated Outputs": c["outputs"],
                    }
                    for c in t.get("calls", [])
                ],
                "Feedback": t.get("feedback")
                or f"This trajectory got a score of {t.get('score')}.",
            }
            for t in eval_batch.trajectories or []
        ]
        return {name: list(records) for name in components_to_update if name == self.component}


def _inputs(example: Any) -> Any:
    try:
        return jsonable(dict(example.inputs()))
    except Exception:  # not a dspy.Example with inputs: shown as it is
        return jsonable(example)
