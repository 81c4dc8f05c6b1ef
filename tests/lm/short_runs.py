"""Stop conditions that keep the real-model tests short.

The 1.5B reflection model takes 15-60 s per reply on two shared cores, and a proposal whose
reply is unusable, unchanged or already tried is asked again (``reflection_retries``), so a
run's second iteration can cost as much as the first. The real-model tests check that one
real reflection goes through the whole path (prompt, reply, child, its evaluation); they do
not need a second.
"""

from __future__ import annotations

from gepetto.stopping import RunStatus


def after_one_iteration(status: RunStatus) -> bool:
    """Stop once the first iteration is done (a seedless run's written seed is not one)."""
    return status.iterations >= 1
