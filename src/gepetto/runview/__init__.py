"""Reading a run from its store: the data every view of a run is drawn from.

A run is read from what it leaves behind, never from the optimizer's memory, so any number
of viewers can watch a live run without slowing it, and a finished or interrupted run reads
the same way:

- :func:`open_store` opens a run folder (``run_dir``), a journal file, ``sqlite:///path``
  or ``postgresql://...`` for reading; :func:`list_runs` names its runs;
- :class:`RunView` (or :func:`open_run`) replays one run's journal and keeps it up to date:
  :meth:`RunView.refresh` reads only the records written since the last call;
- the data functions compute each view from a :class:`RunView`: :func:`summary` (status,
  budget, cost, best, front, stop reason), :func:`progress` (best and front-mean score
  against metric calls, time and cost), :func:`score_matrix` (candidates × validation
  examples), :func:`lineage` (the tree and every accept/reject decision with its reason),
  :func:`candidate_detail` (texts, scores, parents, a diff to each parent, the reflection
  prompt and reply that made it) and :func:`compare_runs`.

Each data function returns a frozen dataclass; its ``to_json()`` returns plain JSON data
(dicts and lists; non-finite floats become ``None``). :func:`progress` and :func:`lineage`
take ``after=``, the ``last_seq`` of a previous answer, and then list only what is newer.

Times and reflection prompts come from the run folder's event log (``events.jsonl``); a
store without one (a storage URL) has the same data without them (``None``).

Errors: :class:`NotARun` (nothing there, a folder without a journal, no such run id) and
:class:`~gepetto.storage.base.StorageError` (a damaged journal), each with a one-line
message that says what to do.

Example::

    with open_run("runs/my-run") as view:
        print(summary(view).best_score)
        seen = view.last_seq
        view.refresh()  # later: only the records written since are read
        new_points = progress(view, after=seen).points
"""

from __future__ import annotations

from gepetto.runview._compare import RunComparison, compare_runs
from gepetto.runview._data import (
    CandidateDetail,
    Lineage,
    ProgressSeries,
    RunListing,
    RunStatus,
    RunSummary,
    ScoreMatrix,
    candidate_detail,
    component_diff,
    decision_json,
    lineage,
    list_runs,
    progress,
    run_status,
    score_matrix,
    summary,
)
from gepetto.runview._store import EVENT_LOG_NAME, EventLog, NotARun, RunStore, open_store
from gepetto.runview._view import DecisionEntry, ProgressPoint, RunView, open_run

__all__ = [
    "EVENT_LOG_NAME",
    "CandidateDetail",
    "DecisionEntry",
    "EventLog",
    "Lineage",
    "NotARun",
    "ProgressPoint",
    "ProgressSeries",
    "RunComparison",
    "RunListing",
    "RunStatus",
    "RunStore",
    "RunSummary",
    "RunView",
    "ScoreMatrix",
    "candidate_detail",
    "compare_runs",
    "component_diff",
    "decision_json",
    "lineage",
    "list_runs",
    "open_run",
    "open_store",
    "progress",
    "run_status",
    "score_matrix",
    "summary",
]
