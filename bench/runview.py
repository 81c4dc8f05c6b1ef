"""How fast a large run opens in every view of :mod:`gepetto.runview`.

The run is synthetic but shaped as a real one, written straight to a SQLite journal: a seed,
then iterations (an iteration record, the parent's and the child's minibatch evaluations of 3
examples, a reflection, a decision); every third iteration's child is accepted, validated on
all 200 validation examples and admitted. 500 candidates × 200 validation examples make
about 110k metric calls and 10k records. Measured in a fresh process (no warm cache):

- *open*: :func:`~gepetto.runview.open_run` (open the file, read, decode and replay every
  record);
- each data function and its ``to_json()`` serialized with :func:`json.dumps` (what a web
  app sends), and the size of that JSON;
- *poll*: one more iteration appended, then ``refresh()`` and ``progress(after=)`` /
  ``lineage(after=)`` (what a live viewer pays per update).

    python bench/runview.py [--candidates 500] [--examples 200] [--write-docs]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _harness import provenance, replace_section
from gepetto.records import (
    CandidateRecord,
    DecisionRecord,
    EvaluationRecord,
    IterationRecord,
    Record,
    ReflectionRecord,
    record_to_dict,
)
from gepetto.runview import (
    candidate_detail,
    lineage,
    open_run,
    progress,
    score_matrix,
    summary,
)
from gepetto.storage import SQLiteStorage
from gepetto.storage.base import RunHeader
from gepetto.types import candidate_hash

START, END = "<!-- runview:start -->", "<!-- runview:end -->"
TARGET_S = 1.0


class SyntheticRun:
    """Writes a run's records: ``accept_every``-th iteration admits a candidate."""

    def __init__(self, examples: int, seed: int = 0) -> None:
        self.examples = examples
        self.random = random.Random(seed)
        self.texts: list[dict[str, str]] = []
        self.iteration = 0
        self.calls = 0

    def _val(self, texts: dict[str, str], purpose: str, iteration: int) -> EvaluationRecord:
        quality = self.random.random()
        scores = tuple(float(self.random.random() < quality) for _ in range(self.examples))
        self.calls += self.examples
        return EvaluationRecord(
            candidate_hash(texts), "val", purpose, iteration,  # type: ignore[arg-type]
            tuple(range(self.examples)), scores, None, self.examples,
        )  # fmt: skip

    def _candidate(self, texts: dict[str, str], parents: tuple[int, ...], it: int) -> Record:
        self.texts.append(texts)
        return CandidateRecord(
            len(self.texts) - 1, texts, parents, "seed" if not parents else "reflection", it,
            self.calls, candidate_hash(texts), ("instructions",) if parents else (),
        )  # fmt: skip

    def seed(self) -> list[Record]:
        texts = {"instructions": "Answer the question.\n" * 5}
        return [self._val(texts, "seed_validation", -1), self._candidate(texts, (), -1)]

    def step(self, accept: bool) -> list[Record]:
        it, self.iteration = self.iteration, self.iteration + 1
        parent = self.random.randrange(len(self.texts))
        batch = tuple(self.random.sample(range(self.examples), 3))
        child = {"instructions": self.texts[parent]["instructions"] + f"Rule {it}.\n"}
        minibatch = (0.0, 1.0, 0.0)
        self.calls += 6
        records: list[Record] = [
            IterationRecord(it, parent, batch),
            EvaluationRecord(
                candidate_hash(self.texts[parent]), "train", "parent_minibatch", it, batch,
                minibatch, None, 3,
            ),
            ReflectionRecord(it, parent, ("instructions",), child, {}, 1),
            EvaluationRecord(
                candidate_hash(child), "train", "child_minibatch", it, batch,
                (1.0, 1.0, 0.0) if accept else minibatch, None, 3,
            ),
        ]  # fmt: skip
        if accept:
            records.append(self._val(child, "validation", it))
            records.append(self._candidate(child, (parent,), it))
            records.append(
                DecisionRecord(it, parent, len(self.texts) - 1, "accepted", "improved 1 -> 2")
            )
        else:
            records.append(DecisionRecord(it, parent, None, "rejected", "not better: 1 -> 1"))
        return records


def build(path: Path, candidates: int, examples: int) -> SyntheticRun:
    storage = SQLiteStorage(path)
    storage.create(RunHeader("default", config={"max_metric_calls": 200_000}, created_at=1.0))
    run = SyntheticRun(examples)
    storage.append("default", [record_to_dict(r) for r in run.seed()])
    step = 0
    while len(run.texts) < candidates:
        storage.append("default", [record_to_dict(r) for r in run.step(step % 3 == 2)])
        step += 1
    storage.close()
    return run


def timed(function: Callable[[], Any]) -> tuple[tuple[float, float], Any]:
    """``((wall seconds, CPU seconds of this process), value)``: on a loaded machine the wall
    time includes waiting for a core, the CPU time does not."""
    start, cpu = time.perf_counter(), time.process_time()
    value = function()
    return (time.perf_counter() - start, time.process_time() - cpu), value


def measure(candidates: int, examples: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        journal = Path(folder) / "journal.sqlite"
        run = build(journal, candidates, examples)
        row: dict[str, Any] = {"calls": run.calls, "candidates": len(run.texts)}
        seconds, view = timed(lambda: open_run(journal))
        row["records"] = view.last_seq
        row["open"], row["open_cpu"] = seconds
        best = summary(view).best_id or 0
        views: dict[str, Callable[[], Any]] = {
            "summary": lambda: summary(view),
            "progress": lambda: progress(view),
            "score_matrix": lambda: score_matrix(view),
            "lineage": lambda: lineage(view),
            "candidate": lambda: candidate_detail(view, best),
        }
        for name, function in views.items():
            seconds, text = timed(lambda f=function: json.dumps(f().to_json()))  # type: ignore[misc]
            row[name], row[name + "_cpu"] = seconds
            row[name + "_kb"] = len(text) / 1000
        seen = view.last_seq
        storage = SQLiteStorage(journal)
        storage.append("default", [record_to_dict(r) for r in run.step(True)])
        storage.close()

        def poll() -> str:
            view.refresh()
            new = (progress(view, after=seen).to_json(), lineage(view, after=seen).to_json())
            return json.dumps(new)

        (row["poll"], row["poll_cpu"]), _ = timed(poll)
        view.close()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--candidates", type=int, default=500)
    parser.add_argument("--examples", type=int, default=200)
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    row = measure(args.candidates, args.examples)
    print(json.dumps(row), file=sys.stderr)
    views = ("summary", "progress", "score_matrix", "lineage", "candidate")
    slowest = max(row["open"], *(row[v] for v in views))
    slowest_cpu = max(row["open_cpu"], *(row[v + "_cpu"] for v in views))
    table = [
        "| view | wall s | CPU s | JSON kB |",
        "|:--|--:|--:|--:|",
        f"| open (read and replay {row['records']:,} records) | {row['open']:.3f} | "
        f"{row['open_cpu']:.3f} | |",
        *(f"| {v} | {row[v]:.3f} | {row[v + '_cpu']:.3f} | {row[v + '_kb']:.0f} |" for v in views),
        f"| poll: refresh + progress/lineage after one new iteration | {row['poll']:.4f} | "
        f"{row['poll_cpu']:.4f} | |",
    ]
    section = (
        f"{START}\n## Run views (runview)\n\n"
        f"A synthetic run of {row['candidates']} candidates × {args.examples} validation examples"
        f" and {row['calls']:,} metric calls (`bench/runview.py`: records written straight to a"
        " SQLite journal; a fresh process). Each view's time includes `to_json()` and"
        " `json.dumps`. Target: every view within 1 s of opening the run.\n\n"
        + provenance("python bench/runview.py --write-docs", load)
        + "\n".join(table)
        + f"\n\nSlowest: {slowest:.2f} s wall, {slowest_cpu:.2f} s CPU (the target is"
        f" {TARGET_S:.0f} s; the wall time counts the waits for a core of a loaded machine)."
        f"\n{END}"
    )
    print(section)
    if args.write_docs:
        replace_section(section, START, END)


if __name__ == "__main__":
    main()
