"""Time to quality: when gepa 0.1.4 and gepetto's settings first reach gepa's final best.

Two noisy synthetic workloads that wait like real LM calls (``bench/_workload.py``):

- ``facts``: the wall-clock benchmark's (``bench/wallclock.py``): 40 hidden facts, the
  reflection "LM" adds the facts the feedback names, each wrong 30% of the time;
- ``regressions``: the same, but each reflection also drops each fact the parent already
  had with chance 0.15 (a child that loses what its parent solved, which a 3-example
  minibatch often does not show).

For each (workload, budget, seed) every setting runs in a fresh process with the same adapter,
reflection callable, data and budget. Reported per setting (means over the seeds): the
final best validation score; the wall time; the wall time at which the run first matched
gepa's final best with the same seed (*to gepa's best*); gepa's wall / that time
(*speed-up*); and the critical-path lower bound of reaching that score: the first candidate
at or above it is *d* reflection steps from the seed, and no amount of parallelism makes
it exist before ``L_task + d * (L_reflection + 3 * L_task)`` (see bench/wallclock.py).

``--dask`` measures instead the wall time of one gepetto run against the number of Dask
worker processes (``executor=distributed.Client(LocalCluster(...))`` on 127.0.0.1), for a
CPU-heavy evaluation (``CPUFactAdapter``: CPU work per example, which threads cannot
overlap under the GIL).

gepa is not a gepetto dependency: run this with the benchmark venv::

    python3 -m venv .venv-bench
    .venv-bench/bin/pip install gepa==0.1.4 'dask[distributed]==2026.8.0' -e .
    .venv-bench/bin/python bench/time_to_quality.py [--budgets 600 1000] [--seeds 3] \\
        [--jobs 2] [--write-docs]   # --write-docs: the latest table only
    .venv-bench/bin/python bench/time_to_quality.py --dask [--write-docs]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import git_commit, replace_section, run_isolated
from _workload import SEED_TEXT, CPUFactAdapter, FactAdapter, FactReflectionLM, make_task

ROOT = Path(__file__).resolve().parent.parent
TABLE_START, TABLE_END = (
    "<!-- time-to-quality-table:start -->",
    "<!-- time-to-quality-table:end -->",
)
DASK_START, DASK_END = "<!-- dask-workers:start -->", "<!-- dask-workers:end -->"
TASK_LATENCY, REFLECTION_LATENCY = 0.05, 0.5
MAX_CONCURRENCY = 16
WORKLOADS = {"facts": 0.0, "regressions": 0.15}  # chance a reflection forgets a known fact
SETTINGS: dict[str, dict[str, Any]] = {
    "K=1": {"parallel_proposals": 1},
    # parallel_strategy="auto": K=4 -> one proposal, best of 4 samples, minibatch 9;
    # K=8 -> two proposals, each the best of 4 samples, minibatch 9.
    "K=4": {"parallel_proposals": 4},
    "K=8": {"parallel_proposals": 8},
    # max_concurrency holds a validation (30) and a minibatch (9) at once: an accepted child
    # is also scored on the next minibatch during its validation (prefetch_minibatch=None).
    "K=4, max_concurrency 48": {"parallel_proposals": 4, "max_concurrency": 48},
    # K independent proposals in flight (the behaviour before parallel_strategy existed).
    "K=4 proposals": {"parallel_proposals": 4, "parallel_strategy": "proposals"},
    "K=8 proposals": {"parallel_proposals": 8, "parallel_strategy": "proposals"},
    # Best-of-n and minibatch sizes spelled out (the exploration in docs/benchmarks.md).
    "K=2, 4 samples": {"parallel_proposals": 2, "reflection_samples": 4},
    "K=4, 2 samples": {"parallel_proposals": 4, "reflection_samples": 2},
    "K=1, 4 samples": {"parallel_proposals": 1, "reflection_samples": 4},
    "K=4, minibatch 6": {"parallel_proposals": 4, "reflection_minibatch_size": 6},
    "K=1, 8 samples, minibatch 6": {
        "parallel_proposals": 1,
        "reflection_samples": 8,
        "reflection_minibatch_size": 6,
    },
    "K=1, 4 samples, minibatch 9": {
        "parallel_proposals": 1,
        "reflection_samples": 4,
        "reflection_minibatch_size": 9,
    },
    "K=1, minibatch 6": {"parallel_proposals": 1, "reflection_minibatch_size": 6},
    "K=4 proposals, minibatch 6": {
        "parallel_proposals": 4,
        "parallel_strategy": "proposals",
        "reflection_minibatch_size": 6,
    },
    "K=4 proposals, minibatch 6, incremental": {
        "parallel_proposals": 4,
        "parallel_strategy": "proposals",
        "reflection_minibatch_size": 6,
        "val_evaluation_policy": "incremental_mean",
    },
    # The rules for stale proposals measured one against the other (K independent proposals).
    "K=4 drop": {
        "parallel_proposals": 4,
        "parallel_strategy": "proposals",
        "stale_proposals": "drop",
        "spread_parents": False,
    },
    "K=4 rebase": {
        "parallel_proposals": 4,
        "parallel_strategy": "proposals",
        "stale_proposals": "rebase",
        "spread_parents": False,
    },
    "K=4 spread": {
        "parallel_proposals": 4,
        "parallel_strategy": "proposals",
        "stale_proposals": "drop",
        "spread_parents": True,
    },
    "K=8 drop": {
        "parallel_proposals": 8,
        "parallel_strategy": "proposals",
        "stale_proposals": "drop",
        "spread_parents": False,
    },
    "K=8 rebase": {
        "parallel_proposals": 8,
        "parallel_strategy": "proposals",
        "stale_proposals": "rebase",
        "spread_parents": False,
    },
    "K=8 spread": {
        "parallel_proposals": 8,
        "parallel_strategy": "proposals",
        "stale_proposals": "drop",
        "spread_parents": True,
    },
    "K=4 rebase, 2 samples": {
        "parallel_proposals": 4,
        "reflection_samples": 2,
        "stale_proposals": "rebase",
        "spread_parents": False,
    },
}


def depth(parents: list[list[int | None]], idx: int) -> int:
    """Reflection steps from the seed to candidate ``idx`` (first parent's chain)."""
    steps = 0
    while True:
        known = [p for p in parents[idx] if p is not None]
        if not known:
            return steps
        idx, steps = known[0], steps + 1


# ----- one run (in a subprocess) -----------------------------------------------------------


def run_one(spec: dict[str, Any]) -> dict[str, Any]:
    if spec.get("dask_workers") is not None:
        return run_dask(spec)
    task = make_task()
    lm = FactReflectionLM(
        REFLECTION_LATENCY, seed=spec["seed"], forget=WORKLOADS[spec["workload"]], sampled=True
    )
    timeline: list[tuple[float, float]] = []
    start = time.perf_counter()

    def improved(score: float) -> None:
        if not timeline or score > timeline[-1][1]:
            timeline.append((time.perf_counter() - start, score))

    if spec["setting"] == "gepa":
        import gepa
        from gepa.core.adapter import EvaluationBatch

        class Tracker:
            def on_valset_evaluated(self, event: dict[str, Any]) -> None:
                improved(event["average_score"])

        class Quiet:
            def log(self, message: str) -> None:
                pass

        adapter = FactAdapter(task.facts, TASK_LATENCY, EvaluationBatch)
        start = time.perf_counter()
        result: Any = gepa.optimize(
            seed_candidate={"instructions": SEED_TEXT},
            trainset=task.trainset,
            valset=task.valset,
            adapter=adapter,
            reflection_lm=lm,
            max_metric_calls=spec["budget"],
            cache_evaluation=True,
            callbacks=[Tracker()],
            logger=Quiet(),
            display_progress_bar=False,
            seed=spec["seed"],
        )
    else:
        import gepetto
        from gepetto import EvaluationBatch as GepettoBatch

        class Observer:
            def on_candidate_added(self, event: Any) -> None:
                improved(event.val_score)

        adapter = FactAdapter(task.facts, TASK_LATENCY, GepettoBatch)
        start = time.perf_counter()
        result = gepetto.optimize(
            {"instructions": SEED_TEXT},
            trainset=task.trainset,
            valset=task.valset,
            adapter=adapter,
            reflection_lm=lm,
            max_metric_calls=spec["budget"],
            callbacks=[Observer()],
            display_progress_bar=False,
            seed=spec["seed"],
            **{"max_concurrency": MAX_CONCURRENCY, **SETTINGS[spec["setting"]]},
        )
    wall = time.perf_counter() - start
    scores = list(result.val_aggregate_scores)
    return {
        **spec,
        "wall_s": wall,
        "calls": adapter.metric_calls,
        "best": max(scores),
        "reflections": lm.calls,
        "candidates": len(scores),
        "scores": scores,
        "depths": [depth(result.parents, i) for i in range(len(scores))],
        "timeline": timeline,
    }


def run_dask(spec: dict[str, Any]) -> dict[str, Any]:
    """One gepetto run of the CPU-heavy workload on ``dask_workers`` Dask worker processes
    (0: no executor, the adapter in gepetto's threads)."""
    import gepetto
    from gepetto import EvaluationBatch as GepettoBatch

    task = make_task()
    lm = FactReflectionLM(spec["reflection_latency"], seed=spec["seed"])
    adapter = CPUFactAdapter(task.facts, spec["task_latency"], GepettoBatch)
    options: dict[str, Any] = {
        "max_metric_calls": spec["budget"],
        "parallel_proposals": spec["k"],
        "max_concurrency": spec["max_concurrency"],
        "display_progress_bar": False,
        "seed": spec["seed"],
    }

    def optimize(**extra: Any) -> tuple[Any, float]:
        start = time.perf_counter()
        result = gepetto.optimize(
            {"instructions": SEED_TEXT},
            trainset=task.trainset,
            valset=task.valset,
            adapter=adapter,
            reflection_lm=lm,
            **options,
            **extra,
        )
        return result, time.perf_counter() - start

    startup = 0.0
    if spec["dask_workers"] == 0:
        result, wall = optimize()
    else:
        from distributed import Client, LocalCluster

        begin = time.perf_counter()
        # 127.0.0.1 only: distributed's address detection otherwise opens a socket outward.
        with (
            LocalCluster(
                n_workers=spec["dask_workers"],
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                scheduler_port=0,
                dashboard_address=None,
            ) as cluster,
            Client(cluster) as client,
        ):
            startup = time.perf_counter() - begin
            result, wall = optimize(executor=client)
    return {
        **spec,
        "wall_s": wall,
        "startup_s": startup,
        "calls": result.total_metric_calls,
        "best": result.best_score,
        "candidates": result.num_candidates,
        "reflections": lm.calls,
    }


# ----- the matrix --------------------------------------------------------------------------


def specs(
    budgets: list[int], seeds: int, settings: list[str], workloads: list[str]
) -> list[dict[str, Any]]:
    return [
        {"workload": workload, "budget": budget, "seed": seed, "setting": setting}
        for workload in workloads
        for budget in budgets
        for seed in range(seeds)
        for setting in ["gepa", *settings]
    ]


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    gepa_runs = {(r["workload"], r["budget"], r["seed"]): r for r in rows if r["setting"] == "gepa"}
    for row in rows:
        target = gepa_runs[(row["workload"], row["budget"], row["seed"])]["best"]
        hits = [t for t, score in row["timeline"] if score >= target - 1e-9]
        row["to_target_s"] = hits[0] if hits else None
        first = next((i for i, s in enumerate(row["scores"]) if s >= target - 1e-9), None)
        row["target_depth"] = row["depths"][first] if first is not None else None
    groups: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["workload"], row["budget"], row["setting"]), []).append(row)
    out = []
    for (workload, budget, setting), runs in groups.items():
        gepa_wall = statistics.mean(
            gepa_runs[(workload, budget, r["seed"])]["wall_s"] for r in runs
        )
        reached = [r for r in runs if r["to_target_s"] is not None]
        depths = [r["target_depth"] for r in reached]
        to_target = statistics.mean(r["to_target_s"] for r in reached) if reached else None
        out.append(
            {
                "workload": workload,
                "budget": budget,
                "setting": setting,
                "seeds": len(runs),
                "best": statistics.mean(r["best"] for r in runs),
                "best_per_seed": [r["best"] for r in sorted(runs, key=lambda r: r["seed"])],
                "wall_s": statistics.mean(r["wall_s"] for r in runs),
                "calls": statistics.mean(r["calls"] for r in runs),
                "reflections": statistics.mean(r["reflections"] for r in runs),
                "reached": len(reached),
                "to_target_s": to_target,
                "speedup": gepa_wall / to_target if to_target else None,
                "bound_s": (
                    TASK_LATENCY + statistics.mean(depths) * (REFLECTION_LATENCY + 3 * TASK_LATENCY)
                    if depths
                    else None
                ),
            }
        )
    order = ["gepa", *SETTINGS]
    out.sort(
        key=lambda r: (
            list(WORKLOADS).index(r["workload"]),
            r["budget"],
            order.index(r["setting"]) if r["setting"] in order else len(order),
        )
    )
    return out


def table(summary: list[dict[str, Any]]) -> str:
    head = (
        "| workload | budget | setting | seeds | best val (mean) | best per seed | wall s "
        "| metric calls | reflections | reached gepa's best | to gepa's best s "
        "| speed-up vs gepa's wall | lower bound s |\n"
        "|---|--:|---|--:|--:|---|--:|--:|--:|--:|--:|--:|--:|\n"
    )

    def number(value: float | None, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    lines = [
        f"| {r['workload']} | {r['budget']:,} | "
        f"{'gepa 0.1.4' if r['setting'] == 'gepa' else 'gepetto ' + r['setting']} "
        f"| {r['seeds']} | **{r['best']:.3f}** | "
        + " / ".join(f"{b:.2f}" for b in r["best_per_seed"])
        + f" | {r['wall_s']:.1f} | {r['calls']:.0f} | {r['reflections']:.0f} "
        f"| {r['reached']} of {r['seeds']} | {number(r['to_target_s'], '.1f')} "
        f"| {number(r['speedup'], '.1f')}{'x' if r['speedup'] else ''} "
        f"| {number(r['bound_s'], '.2f')} |"
        for r in summary
    ]
    return head + "\n".join(lines) + "\n"


DASK_NOTE = (
    "\n`parallel_proposals=4` runs as one proposal of 4 samples here "
    '(`parallel_strategy="auto"`), one proposal in flight, so the search is '
    "deterministic: every row evaluates the same candidates (same metric calls, best and "
    "candidates), and the rows differ only in where the evaluations run.\n"
)


def dask_table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| Dask workers | wall s | x 1 worker | cluster start s | metric calls | best val "
        "| candidates |\n|---|--:|--:|--:|--:|--:|--:|\n"
    )
    one = next((r["wall_s"] for r in rows if r["dask_workers"] == 1), None)
    lines = [
        f"| {'none (threads)' if r['dask_workers'] == 0 else r['dask_workers']} "
        f"| {r['wall_s']:.1f} | {(one / r['wall_s']) if one else 0:.2f}x "
        f"| {r['startup_s']:.1f} | {r['calls']} | {r['best']:.3f} | {r['candidates']} |"
        for r in rows
    ]
    return head + "\n".join(lines) + "\n"


def provenance(command: str, load: float) -> str:
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"Command: `{command}`  \nDate: {date}  \nCommit: `{git_commit()}`  \n"
        f"Python {sys.version.split()[0]}; {os.cpu_count()} cores; 1-min load average "
        f"before the run: {load:.2f}\n\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", type=int, nargs="+", default=[600])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (separate processes)")
    parser.add_argument(
        "--without-gepa", action="store_true", help="no gepa runs (with --raw, to merge)"
    )
    parser.add_argument("--dask", action="store_true", help="wall time vs Dask workers")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2, 4])
    parser.add_argument("--write-docs", action="store_true", help="update docs/benchmarks.md")
    parser.add_argument("--raw", help="also write every run's measurements to this JSON file")
    parser.add_argument(
        "--from-raw", nargs="+", help="skip running: summarize runs saved with --raw"
    )
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(json.loads(args.one))))
        return
    load = os.getloadavg()[0]
    script = Path(__file__)
    if args.dask:
        rows = []
        for workers in args.workers:
            spec = {
                "dask_workers": workers, "budget": 300, "k": 4, "max_concurrency": 8,
                "task_latency": 0.05, "reflection_latency": 0.2, "seed": 0,
            }  # fmt: skip
            row = run_isolated(script, spec)
            print(f"dask workers {workers}: {row['wall_s']:.1f} s", file=sys.stderr, flush=True)
            rows.append(row)
        body = dask_table(rows)
        print(body)
        if args.write_docs:
            command = ".venv-bench/bin/python bench/time_to_quality.py --dask --write-docs"
            replace_section(
                f"{DASK_START}\n## Wall time against Dask workers\n\n"
                "One gepetto run (budget 300, `parallel_proposals=4`, `max_concurrency=8`, "
                "seed 0) of `CPUFactAdapter` (`bench/_workload.py`: 50 ms of CPU work per "
                "example, one after the other; reflection 200 ms of waiting), with "
                "`executor=distributed.Client(LocalCluster(n_workers=N, threads_per_worker=1, "
                "processes=True, host='127.0.0.1'))`, and without an executor (the adapter "
                "in gepetto's threads, where the GIL runs one example at a time). *cluster "
                "start* is outside *wall*. The machine has "
                f"{os.cpu_count()} cores, so workers beyond that share them.\n\n"
                + provenance(command, load)
                + body
                + DASK_NOTE
                + DASK_END,
                DASK_START,
                DASK_END,
            )
        return
    if args.from_raw:
        rows = [row for raw in args.from_raw for row in json.loads(Path(raw).read_text())["rows"]]
    else:
        todo = specs(args.budgets, args.seeds, args.settings, args.workloads)
        if args.without_gepa:
            todo = [spec for spec in todo if spec["setting"] != "gepa"]
        todo.sort(key=lambda s: -s["budget"] * (4 if s["setting"] in ("gepa", "K=1") else 1))

        def run(spec: dict[str, Any]) -> dict[str, Any]:
            row = run_isolated(script, spec)
            print(
                f"{row['workload']} {row['budget']} {row['setting']} seed {row['seed']}: "
                f"{row['wall_s']:.1f} s, best {row['best']:.3f}",
                file=sys.stderr,
                flush=True,
            )
            return row

        with ThreadPoolExecutor(args.jobs) as pool:
            rows = list(pool.map(run, todo))
        if args.raw:
            Path(args.raw).write_text(json.dumps({"rows": rows}))
        if args.without_gepa:
            return
    body = table(summarize(rows))
    print(body)
    if args.write_docs:
        options = f" --budgets {' '.join(map(str, args.budgets))}" if args.budgets != [600] else ""
        options += f" --seeds {args.seeds}" if args.seeds != 3 else ""
        options += f" --jobs {args.jobs}" if args.jobs != 1 else ""
        command = f".venv-bench/bin/python bench/time_to_quality.py{options} --write-docs"
        # Only the latest table: the section's text around it (what the rows say, the
        # earlier measurements) is written by hand.
        replace_section(
            f"{TABLE_START}\n" + provenance(command, load) + body + TABLE_END,
            TABLE_START,
            TABLE_END,
        )


if __name__ == "__main__":
    main()
