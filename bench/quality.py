"""Quality at equal budget: gepetto's variants against gepa 0.1.4, mean of several seeds.

Two benchmarks; every run is a fresh subprocess that appends one JSON line to a results file
(default ``bench/results/quality.jsonl``). A run whose (mode, task, optimizer, seed, budget)
is already in the file, with the same options, is skipped: a long matrix runs in pieces and
survives interruption (Ctrl-C loses only the run in flight).

``--synthetic``: the fact workload of ``bench/_workload.py`` without sleeping (task and
reflection latency 0): seconds per run. Best validation score, score of the best candidate
on a held-out test split, metric calls, wall time; budgets 300 and 1000.

``--real``: real local models (``scripts/setup-local-llm``). Qwen2.5-Coder-0.5B answers
(temperature 0), Qwen2.5-Coder-1.5B reflects (temperature 0.7, max_tokens 400,
repeat_penalty 1.1), as in ``examples/ticket_routing.py``; tasks ``tickets`` (ticket
routing) and ``dates`` (date normalization), exact-match scoring, and the task suite's
further shapes: ``arithmetic`` (word problems, the number after ``Answer:``), ``extraction``
(five JSON fields, scored one by one) and ``tagging`` (several labels per review, scored as
a set), and ``atlas-rag`` (two components, a query rewriter and an answerer, over the
fictional Atlas corpus with BM25: ``gepetto[bm25]``); train/val/test of 30 examples (from
generator seeds 1/2/3; disjoint inputs but for ``dates``), ``max_concurrency=4``. The best
candidate of every run is scored on the test (and again on the validation) set here, the
same way for every optimizer.
Rows: the seed prompt, the hand-written prompt, gepa 0.1.4 (``gepa.optimize`` with a sync
adapter around gepetto's ``DefaultAdapter`` and gepa's own reflection prompt) and the
gepetto variants of :data:`GEPETTO_VARIANTS`. A budget-300 run takes about 10-20 minutes
on 2 idle cores (the 1.5B reflections dominate), so the default matrix (2 tasks x 3 seeds x
gepa and 4 variants = 30 runs) takes 5-10 hours: run it in pieces with ``--only``.

gepa is not a gepetto dependency: run this with the benchmark venv::

    python3 -m venv .venv-bench
    .venv-bench/bin/pip install gepa==0.1.4 matplotlib -e '.[local]'
    .venv-bench/bin/python bench/quality.py --synthetic
    .venv-bench/bin/python bench/quality.py --real --only tasks=dates,variants=default,gepa
    .venv-bench/bin/python bench/quality.py --real --variant 'k4={"parallel_proposals": 4}'
    .venv-bench/bin/python bench/quality.py --write-docs

``--unseen-test TASK`` re-scores the best prompt of each real run of TASK on the test examples
whose input is not also a training input (the ticket splits are disjoint now; before, 11 of
the 30 test messages were training messages).
``QUALITY_TRACE_DIR=dir`` keeps every reflection prompt and reply of the real runs in
``dir/<task>-<variant>-<seed>.jsonl``.
``--list`` shows the runs still to do; ``--force`` runs the selection again (the last row of a
run wins in the tables).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import importlib.util
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _code_task
import _harness
from _harness import git_commit, provenance, replace_section
from _quality_report import (
    GEPA,
    NO_HISTORY,
    PREVIOUS,
    REFERENCES,
    SUITE_SINCE,
    label,
    latest,
    load_rows,
    measured,
    paired_differences,
    real_table,
    row_key,
    suite_table,
    summarize,
    synthetic_table,
)

REFLECTION_LM_KEY = "reflection_lm_options"
"""A variant's key for other options of the reflection LM (real mode, gepetto variants):
``{"reflection_lm_options": {"temperature": 0.3}}`` replaces those of ``REFLECTION_OPTIONS``."""

# Variant name -> extra keyword arguments of gepetto.aoptimize / gepetto.optimize. Add new
# options here (or on the command line: --variant 'name={"option": value}').
GEPETTO_VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "history-0": {"reflection_history": 0},
    "history-6": {"reflection_history": 6},
    "merge": {"use_merge": True},
    "reflective-merge": {"use_merge": True, "merge_strategy": "reflective"},
    "incremental-val": {"val_evaluation_policy": "incremental"},
    "rejected-memory-3": {"rejected_memory": 3},
    "best-of-3": {"reflection_samples": 3},
    "guards-reject": {"proposal_guards": "reject"},
    "no-retry": {"reflection_retries": 0},
    "append": {"reflection_edit": "append"},
    "k4": {"parallel_proposals": 4},
    "drop-wrong": {"drop_wrong_examples": True},
    "current-best": {"candidate_selection_strategy": "current_best"},
    "incremental-mean": {"val_evaluation_policy": "incremental_mean"},
    "early-reject": {"early_reject": True},
    "no-early-reject": {"early_reject": False},
    "recheck-1": {"recheck_margin": 1},
    "reflection-temperature-0.3": {REFLECTION_LM_KEY: {"temperature": 0.3}},
    "focused": {"batch_sampler": "focused"},
    "random-sampler": {"batch_sampler": "random"},
    "drop-wrong-incremental": {
        "drop_wrong_examples": True,
        "val_evaluation_policy": "incremental",
    },
}

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "quality.jsonl"
START, END = "<!-- quality:start -->", "<!-- quality:end -->"
T = TypeVar("T")

SEEDS = (0, 1, 2)
SYNTHETIC_BUDGETS = (300, 1000)
SYNTHETIC_TEST = 60  # held-out fact examples (Zipf-drawn like train and val)
REAL_BUDGETS = (300,)

TASK_MODEL = "local/qwen2.5-coder-0.5b"
REFLECTION_MODEL = "local/qwen2.5-coder-1.5b"
REFLECTION_OPTIONS: dict[str, Any] = {
    "temperature": 0.7,
    "max_tokens": 400,
    "extra_body": {"repeat_penalty": 1.1},
}
SPLIT_SEEDS = (1, 2, 3)  # generator seeds of train, val, test
SPLIT_SIZE = 30
CONCURRENCY = 4


TICKET_ANSWER_FORMAT = "Answer with only one label: billing, technical, account or shipping."
"""The fixed answer-format line of ``tickets-fixed-format``: the ticket task with the answer
format kept out of the optimized text (``DefaultAdapter(system_prompt_template=...)``), for
gepetto and gepa alike. Not the Quality issue's setup: there the seed prompt has no format."""


Texts = str | dict[str, str]
"""A task's prompt: one text (the ``instructions`` component), or a text per component."""


@dataclass(frozen=True)
class RealTask:
    splits: Callable[[], list[list[dict[str, Any]]]]  # train, val, test
    seed_prompt: Texts
    handwritten_prompt: Texts
    max_tokens: int
    system_prompt_template: str | None = None  # DefaultAdapter's fixed part around the text
    evaluator: Callable[[], Any] | None = None  # (example, reply) -> (score, feedback)
    """None: exact match."""
    adapter: Callable[[Any], Any] | None = None  # task LM -> adapter; None: DefaultAdapter


def candidate_of(texts: Texts) -> dict[str, str]:
    """A task's prompt as a candidate: one text is the ``instructions`` component."""
    return {"instructions": texts} if isinstance(texts, str) else dict(texts)


def texts_of(candidate: dict[str, str]) -> Texts:
    """What a results row keeps of a candidate: the text, or every component's text."""
    return candidate["instructions"] if list(candidate) == ["instructions"] else dict(candidate)


def atlas_rag_adapter(task_lm: Any) -> Any:
    """The two-component task's system: rewrite the question as a search query, retrieve 3
    Atlas passages (BM25, in memory), answer from them (``RAGAdapter``'s score: retrieval and
    answer metrics together)."""
    from gepetto.adapters.rag import RAGAdapter
    from gepetto.adapters.rag.stores import BM25Store
    from gepetto.datasets import atlas_passages

    store = BM25Store()
    store.add(atlas_passages())
    return RAGAdapter(task_lm, store, k=3, max_concurrency=CONCURRENCY)


def real_tasks() -> dict[str, RealTask]:
    from gepetto import datasets
    from gepetto.adapters.rag import ANSWER, QUERY_REWRITE
    from gepetto.datasets import arithmetic, atlas, extraction, tagging
    from gepetto.datasets.splits import disjoint_splits, drawing_from

    def ticket_splits() -> list[list[dict[str, Any]]]:
        return datasets.ticket_routing_splits(SPLIT_SIZE, SPLIT_SEEDS)

    def date_splits() -> list[list[dict[str, Any]]]:
        # Not made disjoint: the recorded runs used these sets (val shares 1 input with train,
        # test none).
        return [datasets.date_normalization(SPLIT_SIZE, seed=s) for s in SPLIT_SEEDS]

    return {
        "tickets": RealTask(ticket_splits, datasets.SEED_PROMPT, datasets.HANDWRITTEN_PROMPT, 24),
        "tickets-fixed-format": RealTask(
            ticket_splits,
            datasets.SEED_PROMPT,
            datasets.HANDWRITTEN_PROMPT,
            24,
            "{text}\n\n" + TICKET_ANSWER_FORMAT,
        ),
        "dates": RealTask(
            date_splits,
            datasets.DATES_SEED_PROMPT,
            datasets.DATES_HANDWRITTEN_PROMPT,
            24,
        ),
        # The task suite's further shapes (issue #27): a numeric answer worked out step by
        # step, JSON fields scored one by one, several labels scored as a set.
        "arithmetic": RealTask(
            lambda: disjoint_splits(
                drawing_from(datasets.arithmetic_problems), SPLIT_SIZE, SPLIT_SEEDS
            ),
            arithmetic.SEED_PROMPT,
            arithmetic.HANDWRITTEN_PROMPT,
            200,
            evaluator=datasets.numeric_answer_evaluator,
        ),
        "extraction": RealTask(
            lambda: disjoint_splits(
                drawing_from(datasets.shipping_requests), SPLIT_SIZE, SPLIT_SEEDS
            ),
            extraction.SEED_PROMPT,
            extraction.HANDWRITTEN_PROMPT,
            120,
            evaluator=datasets.field_match_evaluator,
        ),
        "tagging": RealTask(
            lambda: datasets.review_tag_splits(SPLIT_SIZE, SPLIT_SEEDS),
            tagging.SEED_PROMPT,
            tagging.HANDWRITTEN_PROMPT,
            24,
            evaluator=datasets.tag_set_evaluator,
        ),
        # Two components (a query rewriter and an answerer), so the component selector
        # matters: RAG over the fictional Atlas corpus.
        "atlas-rag": RealTask(
            lambda: list(datasets.atlas_splits(SPLIT_SIZE, SPLIT_SIZE, SPLIT_SIZE)),
            {QUERY_REWRITE: atlas.ATLAS_SEED_QUERY_PROMPT, ANSWER: atlas.ATLAS_SEED_ANSWER_PROMPT},
            {QUERY_REWRITE: atlas.ATLAS_QUERY_PROMPT, ANSWER: atlas.ATLAS_ANSWER_PROMPT},
            32,
            adapter=atlas_rag_adapter,
        ),
    }


# ----- one run (in a subprocess) -----------------------------------------------------------


def task_adapter(task: RealTask) -> tuple[Any, Any]:
    """The task model's client (temperature 0) and the exact-match ``DefaultAdapter`` on it,
    as every real run and re-scoring uses them; the caller closes the client."""
    from gepetto.adapters import DefaultAdapter, exact_match_evaluator
    from gepetto.lm.registry import resolve_lm

    task_lm = resolve_lm(TASK_MODEL, temperature=0, max_tokens=task.max_tokens)
    if task.adapter is not None:
        return task_lm, task.adapter(task_lm)
    adapter = DefaultAdapter(
        task_lm,
        task.evaluator() if task.evaluator is not None else exact_match_evaluator(),
        system_prompt_template=task.system_prompt_template,
        max_concurrency=CONCURRENCY,
    )
    return task_lm, adapter


def run_one(spec: dict[str, Any]) -> dict[str, Any]:
    started = time.perf_counter()
    measured = run_synthetic(spec) if spec["mode"] == "synthetic" else run_real(spec)
    return {
        **spec,
        **measured,
        "process_s": time.perf_counter() - started,
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": git_commit(),
        "python": sys.version.split()[0],
        "load": os.getloadavg()[0],
    }


def run_synthetic(spec: dict[str, Any]) -> dict[str, Any]:
    import gepetto
    from _workload import SEED_TEXT, FactAdapter, FactReflectionLM, make_task

    task = make_task(test=SYNTHETIC_TEST)
    lm = FactReflectionLM(0.0, seed=spec["seed"])
    seed_candidate = {"instructions": SEED_TEXT}
    if spec["name"] == GEPA:
        import gepa
        from gepa.core.adapter import EvaluationBatch

        adapter = FactAdapter(task.facts, 0.0, EvaluationBatch)
        start = time.perf_counter()
        result = gepa.optimize(
            seed_candidate=seed_candidate,
            trainset=task.trainset,
            valset=task.valset,
            adapter=adapter,
            reflection_lm=lm,
            max_metric_calls=spec["budget"],
            cache_evaluation=True,
            logger=_Quiet(),
            display_progress_bar=False,
            seed=spec["seed"],
        )
        wall = time.perf_counter() - start
        best = result.candidates[result.best_idx]
        reported, candidates = result.total_metric_calls, len(result.candidates)
    else:
        adapter = FactAdapter(task.facts, 0.0, gepetto.EvaluationBatch)
        start = time.perf_counter()
        outcome = gepetto.optimize(
            seed_candidate,
            trainset=task.trainset,
            valset=task.valset,
            adapter=adapter,
            reflection_lm=lm,
            max_metric_calls=spec["budget"],
            display_progress_bar=False,
            seed=spec["seed"],
            **spec["kwargs"],
        )
        wall = time.perf_counter() - start
        best = outcome.best_candidate
        reported, candidates = outcome.total_metric_calls, outcome.num_candidates
    scorer = FactAdapter(task.facts, 0.0, gepetto.EvaluationBatch)  # not the run's counter

    def score(examples: list[Any]) -> float:
        return statistics.mean(scorer.evaluate(examples, best).scores)

    return {
        "wall_s": wall,
        "metric_calls": adapter.metric_calls,  # examples the adapter really evaluated
        "reported_calls": reported,
        "reflection_calls": lm.calls,
        "candidates": candidates,
        "val": score(task.valset),
        "test": score(task.testset),
        "best_prompt": best["instructions"],
    }


class _Quiet:
    def log(self, message: str) -> None:
        pass


class LoopThread:
    """An event loop in a daemon thread, so sync code (gepa) can run the async LM clients."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


class GepaAdapter:
    """gepa's sync adapter protocol around gepetto's async ``DefaultAdapter``."""

    propose_new_texts = None  # gepa 0.1.4 reads it unconditionally; None = reflection LM

    def __init__(self, inner: Any, loop: LoopThread) -> None:
        from gepa.core.adapter import EvaluationBatch

        self.inner, self.loop, self.batch_cls = inner, loop, EvaluationBatch

    def evaluate(self, batch: list[Any], candidate: dict[str, str], capture_traces: bool = False):  # type: ignore[no-untyped-def]
        out = self.loop.run(self.inner.evaluate(batch, candidate, capture_traces))
        return self.batch_cls(
            outputs=out.outputs,
            scores=out.scores,
            trajectories=out.trajectories,
            objective_scores=out.objective_scores,
        )

    def make_reflective_dataset(self, candidate, eval_batch, components_to_update):  # type: ignore[no-untyped-def]
        return self.inner.make_reflective_dataset(candidate, eval_batch, components_to_update)


CODE_TASKS = {"durations-code": None, "durations-spec": _code_task.SPEC}
"""The suite's ``optimize_anything`` tasks (``bench/_code_task.py``) and their
``background``: the tests alone, or with the rules they check written out. Their own budget
(``_code_task.BUDGET`` metric calls, each a candidate run on all training cases)."""


def code_splits() -> list[list[dict[str, Any]]]:
    from gepetto.datasets.durations import duration_case_splits

    return duration_case_splits(SPLIT_SIZE, SPLIT_SEEDS)


def real_task_names() -> list[str]:
    return [*real_tasks(), *CODE_TASKS]


def reflection_client(spec: dict[str, Any], **task_options: Any) -> Any:
    """The 1.5B reflection client of a real run: ``REFLECTION_OPTIONS``, then the task's
    (``task_options``), then the variant's ``reflection_lm_options``; the caller closes it."""
    from gepetto.lm.registry import resolve_lm

    variant_options = spec["kwargs"].get(REFLECTION_LM_KEY, {})
    return resolve_lm(REFLECTION_MODEL, **{**REFLECTION_OPTIONS, **task_options, **variant_options})


def optimizer_options(spec: dict[str, Any]) -> dict[str, Any]:
    """A gepetto variant's options of the optimizer (its reflection-LM options left out)."""
    return {k: v for k, v in spec["kwargs"].items() if k != REFLECTION_LM_KEY}


class RealRun:
    """What a real run opens: an event-loop thread and the model clients (closed on exit),
    with their calls counted per role in :attr:`calls`."""

    def __init__(self) -> None:
        self.loop = LoopThread()
        self.calls = {"task": 0, "reflection": 0}
        self._clients: list[Any] = []

    def counted(self, client: Any, role: str) -> Any:
        """Count ``client``'s calls as ``role`` and close it with the run."""
        self._clients.append(client)
        client.add_listener(lambda record: _count(self.calls, role))
        return client

    def reflection(self, spec: dict[str, Any], **task_options: Any) -> Any:
        """The run's reflection model (see :func:`reflection_client`), counted and traced."""
        return _traced(self.counted(reflection_client(spec, **task_options), "reflection"), spec)

    def __enter__(self) -> RealRun:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            for client in self._clients:
                self.loop.run(client.aclose())
        finally:
            self.loop.close()


def run_code(spec: dict[str, Any]) -> dict[str, Any]:
    """One run of the code task: score the seed or hand-written code, or search with gepa or
    a gepetto variant; the best code is scored on the test and validation cases after."""
    from gepetto.datasets import durations

    train, val, test = code_splits()
    if spec["name"] in REFERENCES:
        code = durations.SEED_CODE if spec["name"] == "seed-prompt" else durations.HANDWRITTEN_CODE
        scores = {
            "test": _code_task.score_code(code, test)[0],
            "val": _code_task.score_code(code, val)[0],
        }
        return {"startup_s": 0.0, **scores, "best_prompt": code}
    with RealRun() as run:
        start = time.perf_counter()
        reflect = run.reflection(spec, max_tokens=_code_task.REFLECTION_MAX_TOKENS)
        evaluate = _code_task.evaluator_on(train, lambda: _count(run.calls, "task"))
        startup = time.perf_counter() - start
        start = time.perf_counter()
        background = CODE_TASKS[spec["task"]]
        if spec["name"] == GEPA:
            found = _code_task.gepa_search(
                durations.SEED_CODE,
                evaluate,
                lambda prompt: run.loop.run(reflect(prompt)),
                spec["seed"],
                background,
            )
        else:
            found = run.loop.run(
                _code_task.gepetto_search(
                    durations.SEED_CODE,
                    evaluate,
                    reflect,
                    spec["seed"],
                    background,
                    optimizer_options(spec),
                )
            )
        wall = time.perf_counter() - start
    best = found.pop("best_code")
    return {
        "startup_s": startup,
        "wall_s": wall,
        "metric_calls": run.calls["task"],  # candidate runs on the training cases
        "reflection_calls": run.calls["reflection"],
        "test": _code_task.score_code(best, test)[0],
        "val": _code_task.score_code(best, val)[0],
        **found,
        "best_prompt": best,
    }


def run_real(spec: dict[str, Any]) -> dict[str, Any]:
    """One real-model run: score a reference prompt, or search with gepa or a gepetto
    variant; the best candidate is scored on the test and validation sets after."""
    if spec["task"] in CODE_TASKS:
        return run_code(spec)
    task = real_tasks()[spec["task"]]
    train, val, test = task.splits()
    with RealRun() as run:
        start = time.perf_counter()
        task_lm, adapter = task_adapter(task)
        run.counted(task_lm, "task")

        def accuracy(prompt: Texts, examples: list[dict[str, Any]]) -> float:
            batch = run.loop.run(adapter.evaluate(examples, candidate_of(prompt)))
            return statistics.mean(batch.scores)

        if spec["name"] in REFERENCES:
            prompt = task.seed_prompt if spec["name"] == "seed-prompt" else task.handwritten_prompt
            startup = time.perf_counter() - start
            scores = {"test": accuracy(prompt, test), "val": accuracy(prompt, val)}
            return {"startup_s": startup, **scores, "best_prompt": prompt}
        reflect = run.reflection(spec)
        startup = time.perf_counter() - start
        start = time.perf_counter()
        seed_candidate = candidate_of(task.seed_prompt)
        if spec["name"] == GEPA:
            found = _gepa_real(spec, seed_candidate, train, val, adapter, reflect, run.loop)
        else:
            found = run.loop.run(_gepetto_real(spec, seed_candidate, train, val, adapter, reflect))
        wall = time.perf_counter() - start
        searched = dict(run.calls)  # before the test scoring's task-LM calls
        best = found.pop("best_prompt")
        return {
            "startup_s": startup,
            "wall_s": wall,
            "metric_calls": searched["task"],  # task-LM calls in the search (no cache: 1/example)
            "reflection_calls": searched["reflection"],
            "test": accuracy(best, test),
            "val": accuracy(best, val),
            **found,
            "best_prompt": best,
        }


def _count(calls: dict[str, int], role: str) -> None:
    calls[role] += 1


def _traced(reflection_lm: Any, spec: dict[str, Any]) -> Any:
    """The reflection LM, or with ``$QUALITY_TRACE_DIR`` set, a callable around it that appends
    every prompt and reply to ``<dir>/<task>-<name>-<seed>.jsonl`` (diagnosis of proposals;
    the run itself is unchanged)."""
    folder = os.environ.get("QUALITY_TRACE_DIR")
    if not folder:
        return reflection_lm
    path = Path(folder) / f"{spec['task']}-{spec['name']}-{spec['seed']}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)

    async def reflect(prompt: Any) -> str:
        started = time.perf_counter()
        reply: str = await reflection_lm(prompt)
        line = {"prompt": prompt, "reply": reply, "seconds": time.perf_counter() - started}
        with path.open("a") as out:
            out.write(json.dumps(line) + "\n")
        return reply

    return reflect


def _gepa_real(
    spec: dict[str, Any],
    seed_candidate: dict[str, str],
    train: list[dict[str, Any]],
    val: list[dict[str, Any]],
    adapter: Any,
    reflection_lm: Any,
    loop: LoopThread,
) -> dict[str, Any]:
    import gepa

    def reflect(prompt: Any) -> str:
        return loop.run(reflection_lm(prompt))  # type: ignore[no-any-return]

    result = gepa.optimize(
        seed_candidate=seed_candidate,
        trainset=train,
        valset=val,
        adapter=GepaAdapter(adapter, loop),
        reflection_lm=reflect,
        max_metric_calls=spec["budget"],
        cache_evaluation=True,  # like gepetto's default
        logger=_Quiet(),
        display_progress_bar=False,
        seed=spec["seed"],
    )
    return {
        "best_prompt": texts_of(dict(result.candidates[result.best_idx])),
        "val_reported": result.val_aggregate_scores[result.best_idx],
        "reported_calls": result.total_metric_calls,
        "candidates": len(result.candidates),
    }


async def _gepetto_real(
    spec: dict[str, Any],
    seed_candidate: dict[str, str],
    train: list[dict[str, Any]],
    val: list[dict[str, Any]],
    adapter: Any,
    reflection_lm: Any,
) -> dict[str, Any]:
    import gepetto

    outcomes: dict[str, int] = {}
    saved = [0]

    class OutcomeCounter:
        """How the iterations ended (accepted, or the kind of rejection) and the flags of
        the proposals (for diagnosis)."""

        def on_candidate_added(self, event: Any) -> None:
            outcomes["accepted"] = outcomes.get("accepted", 0) + 1

        def on_candidate_rejected(self, event: Any) -> None:
            kind = f"{event.outcome}: {re.sub(r'[0-9.]+', '#', event.reason)[:80]}"
            outcomes[kind] = outcomes.get(kind, 0) + 1
            not_evaluated = re.search(r"(\d+) not evaluated$", event.reason)
            if not_evaluated:  # early_reject: the child minibatch examples it did not pay for
                saved[0] += int(not_evaluated.group(1))

        def on_reflection_finished(self, event: Any) -> None:
            for why in event.flags.values():  # guard flags and repairs, one count per kind
                for part in why.split("; "):
                    if " (" in part:  # not a piece of a quote that held "; "
                        kind = "flag: " + re.sub(r"[0-9]+", "#", part.split(" (")[0])
                        outcomes[kind] = outcomes.get(kind, 0) + 1

    result = await gepetto.aoptimize(
        seed_candidate,
        train,
        val,
        adapter=adapter,
        reflection_lm=reflection_lm,
        max_metric_calls=spec["budget"],
        max_concurrency=CONCURRENCY,
        display_progress_bar=False,
        seed=spec["seed"],
        callbacks=[OutcomeCounter()],
        **optimizer_options(spec),
    )
    return {
        "outcomes": dict(sorted(outcomes.items(), key=lambda item: -item[1])),
        "early_reject_saved": saved[0],
        "best_prompt": texts_of(dict(result.best_candidate)),
        "val_reported": result.best_score,
        "reported_calls": result.total_metric_calls,
        "candidates": result.num_candidates,
        "iterations": result.num_iterations,
        "stop_reason": result.stop_reason,
        # per pool member: parents, validation mean, validation examples scored
        "pool": [
            [parents, round(score, 4), len(subscores)]
            for parents, score, subscores in zip(
                result.parents, result.val_aggregate_scores, result.val_subscores, strict=True
            )
        ],
    }


# ----- the matrix and the results file -----------------------------------------------------


def plan(
    mode: str,
    variants: dict[str, dict[str, Any]],
    budgets: Iterable[int],
    only: dict[str, list[str]],
) -> list[dict[str, Any]]:
    """Every run of the matrix, in an order that makes a partial run useful (seed 0 first)."""
    tasks = ["facts"] if mode == "synthetic" else real_task_names()
    if mode == "synthetic":  # its reflection is a stand-in, not an LM with options
        variants = {k: v for k, v in variants.items() if REFLECTION_LM_KEY not in v}
    names = [GEPA, *variants]
    seeds = [int(s) for s in only.get("seeds", SEEDS)]
    budgets = [int(b) for b in only.get("budgets", budgets)]
    tasks = [t for t in tasks if "tasks" not in only or t in only["tasks"]]
    wanted = only.get("variants")
    specs: list[dict[str, Any]] = []

    def add(task: str, name: str, seed: int | None, budget: int | None) -> None:
        if task in CODE_TASKS and budget is not None:
            budget = _code_task.BUDGET
        if wanted is None or name in wanted:
            kwargs = variants.get(name, {})
            spec = {"mode": mode, "task": task, "name": name, "kwargs": kwargs}
            specs.append({**spec, "seed": seed, "budget": budget})

    if mode == "real":
        for task in tasks:
            for name in REFERENCES:
                add(task, name, None, None)
    for budget in budgets:
        for seed in seeds:
            for task in tasks:
                for name in names:
                    add(task, name, seed, budget)
    return specs


def pending(specs: list[dict[str, Any]], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    done = {(row_key(r), json.dumps(r["kwargs"], sort_keys=True)) for r in rows}
    return [s for s in specs if (row_key(s), json.dumps(s["kwargs"], sort_keys=True)) not in done]


def run_isolated(spec: dict[str, Any]) -> dict[str, Any]:
    """One run of ``spec`` in a fresh process, its progress on standard error."""
    return _harness.run_isolated(__file__, spec, quiet=False)


def execute(specs: list[dict[str, Any]], path: Path, jobs: int) -> None:
    lock = threading.Lock()
    counter = iter(range(1, len(specs) + 1))
    path.parent.mkdir(parents=True, exist_ok=True)

    stop = threading.Event()

    def one(spec: dict[str, Any]) -> None:
        if stop.is_set():
            return
        what = f"{spec['mode']} {spec['task']} {label(spec)}"
        if spec["seed"] is not None:
            what += f" seed {spec['seed']} budget {spec['budget']}"
        try:
            row = run_isolated(spec)
        except subprocess.CalledProcessError as error:
            if not stop.is_set():
                print(f"FAILED (exit {error.returncode}): {what}", file=sys.stderr, flush=True)
            return
        with lock:
            with path.open("a") as results:
                results.write(json.dumps(row) + "\n")
            print(
                f"[{next(counter)}/{len(specs)}] {what}: test {row['test']:.3f}, val "
                f"{row['val']:.3f}, {row.get('metric_calls', 0)} metric calls, "
                f"{row.get('reflection_calls', 0)} reflections, "
                f"{row.get('wall_s', row['process_s']):.1f} s",
                file=sys.stderr,
                flush=True,
            )

    pool = ThreadPoolExecutor(jobs)
    try:
        list(pool.map(one, specs))
    except KeyboardInterrupt:  # the runs in flight got the signal too: they end unrecorded
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
        raise SystemExit(
            "interrupted: the finished runs are in the file; re-run to continue"
        ) from None
    pool.shutdown()


COMMANDS = """```bash
python3 -m venv .venv-bench
.venv-bench/bin/pip install gepa==0.1.4 matplotlib -e '.[local]'
scripts/setup-local-llm   # models + llama-server (built once per machine; `make demo` too)
.venv-bench/bin/python bench/quality.py --synthetic           # about 10 s
.venv-bench/bin/python bench/quality.py --real --list         # the runs still to do
.venv-bench/bin/python bench/quality.py --real                # 5-10 hours: re-run to continue
.venv-bench/bin/python bench/quality.py --real --only tasks=dates,variants=default,gepa,seeds=0
.venv-bench/bin/python bench/quality.py --real \\
    --only tasks=tickets-fixed-format,variants=seed-prompt,hand-written,default,gepa
.venv-bench/bin/python bench/quality.py --real --variant 'k4={"parallel_proposals": 4}'
.venv-bench/bin/python bench/quality.py --write-docs          # this section, from the file
```

Runs use the llama-server built by `scripts/setup-local-llm` (cached in
`~/.cache/gepetto/llama-server`). `--force` runs a selection again (the last row of a
run wins in the tables).
"""


def write_docs(rows: list[dict[str, Any]], path: Path) -> None:
    import gepa  # noqa: F401  (fails early without the benchmark venv)

    order = [*REFERENCES, GEPA, "default", NO_HISTORY, PREVIOUS, *GEPETTO_VARIANTS]
    for prefix in (NO_HISTORY, PREVIOUS):
        order += [f"{prefix}+{name}" for name in ("examples", *GEPETTO_VARIANTS)]
    summary = summarize(rows, list(dict.fromkeys(order)))
    variants = ", ".join(
        f"`{name}` ({', '.join(f'`{k}={v!r}`' for k, v in kwargs.items()) or 'the defaults'})"
        for name, kwargs in GEPETTO_VARIANTS.items()
    )
    measured_tasks = {s["task"] for s in summary if s["mode"] == "real"}
    tasks = [t for t in real_task_names() if t in measured_tasks] + sorted(
        measured_tasks - {*real_task_names()}
    )
    titles = {
        "tickets": "Ticket routing",
        "dates": "Date normalization",
        "tickets-overlapping": "Ticket routing, first data set (overlapping splits)",
        "tickets-fixed-format": "Ticket routing with a fixed answer-format line",
        "arithmetic": "Arithmetic word problems",
        "extraction": "Structured extraction (JSON fields)",
        "tagging": "Review tagging (several labels)",
        "atlas-rag": "RAG over the Atlas corpus (two components)",
        "durations-code": "A function improved against tests alone (`optimize_anything`, "
        "single-task)",
        "durations-spec": "A function improved against tests, its rules described "
        "(`optimize_anything`, single-task)",
    }
    real = "".join(f"\n#### {titles.get(t, t)}\n\n{real_table(summary, t)}" for t in tasks)
    section = (
        f"{START}\n## Quality at equal budget\n\n"
        "What the search finds with a given number of metric calls (`bench/quality.py`): "
        f"gepetto's variants ({variants}; `GEPETTO_VARIANTS` at the top of the file) and "
        "gepa 0.1.4 (`gepa.optimize`, `cache_evaluation=True` like gepetto's default, its own "
        "reflection prompt), with the same adapter, reflection LM, data, budget and optimizer "
        "seeds 0, 1, 2; every other option at its default. Each run is a fresh process and "
        f"one JSON line of `{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}` "
        "(re-running skips the runs already there). *metric calls* are the examples really "
        "evaluated during the search (gepa can overshoot its budget; gepetto never does); the "
        "best candidate of each run is scored on the test and validation sets after the "
        "search, the same way for every optimizer; bold = mean test score over the seeds. "
        "Rows marked *previous template* ran with the rules-only default reflection template "
        "used before 2026-11-28 (`bench/reflection_probe.py` has it as `rules-only`); "
        "*no history* marks runs made while `reflection_history` defaulted to 0 (before the "
        "evening of 2026-11-28; the `reflection_history=3` runs of that time are the "
        "*gepetto defaults* rows now); *examples, no history* is the current default "
        "template's first three seeds, run as a `--variant` before it became the default "
        "(seed 0 and ticket seed 1 also before a reply repeating the current text was asked "
        "for again). Real runs before 2026-11-29 (the *gepetto defaults* rows, and the "
        "variants measured on them) scored every child on its whole minibatch: `early_reject`, "
        "the default since, changes no decision, only what a rejected child costs; its runs "
        "are the *early rejection* rows. In *Ticket routing with a fixed answer-format line* "
        f"(2026-11-29: the ticket task with `{TICKET_ANSWER_FORMAT}` after the optimized text, "
        "`DefaultAdapter(system_prompt_template=...)`, for every row; optimizer seeds 0-3) "
        "all gepetto rows have early rejection.\n\n"
        "Commands (from the repository root; gepa stays out of gepetto's own venv):\n\n"
        f"{COMMANDS}\n"
        + provenance(".venv-bench/bin/python bench/quality.py --write-docs", os.getloadavg()[0])
        + "### The task suite: gepetto's defaults against gepa 0.1.4\n\n"
        "Seven tasks of different shapes on the real local models (described under *Real "
        "local models* below), budget 300 metric calls (the code task "
        f"{_code_task.BUDGET}: each call runs a candidate function on all 30 training cases); "
        "test score mean ± standard deviation over optimizer seeds (the number of seeds in "
        "brackets); *hand-written* is the task's reference prompt (for the code task, a "
        "careful implementation); metric calls, reflection calls and wall minutes are means "
        f"per run. gepetto rows are runs from {SUITE_SINCE} UTC on (today's defaults).\n\n"
        + suite_table(rows)
        + "\n### Synthetic fact workload\n\n"
        "The workload of the wall-clock benchmark (`bench/_workload.py`: 40 hidden facts, "
        "Zipf-distributed over 60 train and 30 validation examples, plus 60 held-out test "
        "examples drawn the same way) without any waiting: task and reflection latency 0. The "
        "reflection stand-in adds the facts the feedback names, each with a wrong value 30% "
        "of the time, so quality per metric call is the share of facts learned and kept. "
        "*test* counts facts of test examples, some never seen in train or validation.\n\n"
        + measured(rows, "synthetic")
        + "\n"
        + synthetic_table(summary)
        + "\nMinibatch samplers (issue #27's adaptive minibatches), paired with the defaults "
        "(`epoch_shuffled`) seed by seed: *focused* draws toward the examples the parent "
        "likely fails and grows the batch until it likely holds a failure; *random-sampler* "
        "draws uniformly, as *focused* does when nothing is known, so it separates the "
        "focusing from the loss of epoch coverage.\n\n"
        + paired_differences(rows, "synthetic", ["focused", "random-sampler"])
        + "\n### Real local models\n\n"
        "Qwen2.5-Coder-0.5B answers (temperature 0, max_tokens 24 unless said), "
        "Qwen2.5-Coder-1.5B reflects (temperature 0.7, max_tokens 400, repeat_penalty 1.1), "
        "both in local llama.cpp servers on 2 CPU cores, `max_concurrency=4`; train/val/test "
        "of 30 examples from generator seeds 1/2/3 (no input in two splits, but for dates: "
        "val shares one input with train, test none). Tasks: `ticket_routing` (four labels, "
        "three routing rules taught by the feedback) and `date_normalization` (`YYYY-MM-DD`, "
        "three date conventions taught by the feedback), exact match; and the task suite's "
        "further shapes (issue #27): `arithmetic_problems` (max_tokens 200, the number after "
        "`Answer:`), `shipping_requests` (max_tokens 120, five JSON fields scored one by one), "
        "`review_tags` (several of six labels, scored as shared over all named) and "
        "*atlas-rag* (two components, a query rewriter and an answerer, over the fictional "
        "Atlas corpus with BM25, k=3, max_tokens 32; `RAGAdapter`'s score of retrieval and "
        "answer metrics); and the `optimize_anything` task: the code of `parse_duration(text)` "
        "(`gepetto.datasets.durations`), single-task search, each candidate run in the sandbox "
        "on the 30 training cases (score: the share passed; feedback: the failed cases), the "
        "best code scored on the validation and test cases after; the 1.5B writes the code "
        "(max_tokens 800), with the rules described in `background` (*durations-spec*) or the "
        "tests alone (*durations-code*); `gepa.optimize_anything` and "
        "`gepetto.optimize_anything` with their own defaults and templates. *seed prompt* and "
        "*hand-written* are the task's vague seed and reference prompts, evaluated once. "
        "gepa's adapter is gepetto's `DefaultAdapter` behind gepa's sync protocol (its async "
        "`evaluate` on a private event loop), its reflection LM a sync callable on the same "
        "1.5B client. *val* is the best candidate re-scored after the search; *val in the "
        "search* is the score the optimizer chose it on (scoring the same prompt twice on the "
        "local server at temperature 0 is not always identical: 13/30 in the search and 11/30 "
        "re-scored in one smoke run). "
        "*wall min* = the search, without model start-up and the final scoring. *Ticket "
        "routing, first data set* are the runs on the generator's earlier, smaller template "
        "set, whose splits shared messages (11 of the 30 test messages were training "
        "messages); kept for reference, not comparable with the table above it.\n\n"
        + measured(rows, "real")
        + real
        + END
    )
    replace_section(section, START, END)


async def unseen_test(task_name: str, rows: list[dict[str, Any]]) -> str:
    """The latest real runs of a task, their best prompts re-scored by the task model on the
    test examples whose input is not also a training input (the date splits, and the ticket
    splits before they were made disjoint, share some inputs); a markdown table, means per
    optimizer."""
    task = real_tasks()[task_name]
    train, _, test = task.splits()
    train_inputs = {e.get("input", e.get("question")) for e in train}
    unseen = [e for e in test if e.get("input", e.get("question")) not in train_inputs]
    runs = [r for r in latest(rows) if r["mode"] == "real" and r["task"] == task_name]
    task_lm, adapter = task_adapter(task)
    scores: dict[str, list[tuple[float, float]]] = {}
    try:
        for row in sorted(runs, key=lambda r: (r["name"], r["seed"] or 0)):
            batch = await adapter.evaluate(unseen, candidate_of(row["best_prompt"]))
            scores.setdefault(label(row), []).append((row["test"], statistics.mean(batch.scores)))
    finally:
        await task_lm.aclose()
    lines = [
        f"{len(unseen)} of {len(test)} test examples are not training inputs.",
        "",
        "| optimizer | runs | test | unseen test | unseen test per run |",
        "|---|--:|--:|--:|---|",
    ]
    for name, pairs in scores.items():
        per_run = " / ".join(f"{u:.2f}" for _, u in pairs)
        lines.append(
            f"| {name} | {len(pairs)} | {statistics.mean(t for t, _ in pairs):.2f} "
            f"| {statistics.mean(u for _, u in pairs):.2f} | {per_run} |"
        )
    return "\n".join(lines)


def parse_only(values: list[str]) -> dict[str, list[str]]:
    """``tasks=a,b,variants=c,seeds=0,1`` (or repeated ``--only``) -> {key: [values]}."""
    keys = {key: key for key in ("tasks", "variants", "seeds", "budgets")}
    keys["optimizers"] = "variants"
    selection: dict[str, list[str]] = {}
    current = None
    for item in (t.strip() for value in values for t in value.split(",")):
        token = item
        if "=" in item:
            key, _, token = item.partition("=")
            if key not in keys:
                raise SystemExit(f"--only: unknown key {key!r}; use {sorted(set(keys))}")
            current = keys[key]
            selection.setdefault(current, [])
        if current is None:
            raise SystemExit("--only: start with a key, for example tasks=dates")
        if token:
            selection[current].append(token)
    return selection


def parse_variants(values: list[str]) -> dict[str, dict[str, Any]]:
    variants = {name: dict(kwargs) for name, kwargs in GEPETTO_VARIANTS.items()}
    for value in values:
        name, _, kwargs = value.partition("=")
        if not name or name in (GEPA, *REFERENCES):
            raise SystemExit(f"--variant: bad name in {value!r}")
        parsed = json.loads(kwargs or "{}")
        if not isinstance(parsed, dict):
            raise SystemExit(f"--variant {name}: the options must be a JSON object")
        variants[name] = parsed
    return variants


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--synthetic", action="store_true", help="run the synthetic matrix")
    parser.add_argument("--real", action="store_true", help="run the real-model matrix")
    parser.add_argument("--budgets", help="comma-separated metric-call budgets")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="KEY=A,B,...",
        help="select tasks=, variants= (also gepa, seed-prompt, hand-written), seeds=, budgets=",
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=JSON",
        help="add or redefine a gepetto variant (aoptimize keyword arguments)",
    )
    parser.add_argument("--results", type=Path, default=RESULTS, help="the JSON-lines file")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (real: keep 1)")
    parser.add_argument("--list", action="store_true", help="list the pending runs and stop")
    parser.add_argument(
        "--force", action="store_true", help="run the selection again even if in the file"
    )
    parser.add_argument("--write-docs", action="store_true", help="update docs/benchmarks.md")
    parser.add_argument(
        "--unseen-test",
        metavar="TASK",
        help="re-score the best prompts of TASK's real runs on the test examples not in train",
    )
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(json.loads(args.one))))
        return
    if args.unseen_test:
        if args.unseen_test not in real_tasks():
            parser.error(f"--unseen-test: choose from {sorted(real_tasks())}")
        print(asyncio.run(unseen_test(args.unseen_test, load_rows(args.results))))
        return
    if not (args.synthetic or args.real or args.write_docs):
        parser.error("choose --synthetic, --real and/or --write-docs")
    variants = parse_variants(args.variant)
    only = parse_only(args.only)
    known = {"variants": {GEPA, *REFERENCES, *variants}, "tasks": {"facts", *real_task_names()}}
    for key, names in known.items():
        if unknown := set(only.get(key, ())) - names:
            parser.error(f"--only {key}: unknown {sorted(unknown)}; known: {sorted(names)}")
    specs: list[dict[str, Any]] = []
    modes = [("synthetic", args.synthetic, SYNTHETIC_BUDGETS), ("real", args.real, REAL_BUDGETS)]
    for mode, chosen, default in modes:
        if chosen:
            budgets = [int(b) for b in args.budgets.split(",")] if args.budgets else default
            specs += plan(mode, variants, budgets, only)
    todo = specs if args.force else pending(specs, load_rows(args.results))
    print(f"{len(specs)} runs selected, {len(todo)} to do", file=sys.stderr)
    if args.list:
        for spec in todo:
            print(json.dumps(spec))
        return
    if any(s["name"] == GEPA for s in todo) and importlib.util.find_spec("gepa") is None:
        raise SystemExit("gepa is not installed: use .venv-bench (see --help) or --only variants=")
    execute(todo, args.results, args.jobs)
    if args.write_docs:
        write_docs(load_rows(args.results), args.results)
        print(f"updated {(ROOT / 'docs' / 'benchmarks.md').relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
