"""GEPA's merge: combine two candidates that improved different components of an ancestor.

Two pool members ``i`` and ``j`` that descend from a common ancestor ``a`` may each have
rewritten different components. The merged candidate keeps, component by component, the
text that moved away from ``a``:

====================================  ==============================================
component ``c``                       merged text (and its source)
====================================  ==============================================
only ``j`` changed it                 ``j``'s text
only ``i`` changed it                 ``i``'s text
both changed it                       the text of the better of ``i`` and ``j`` (by
                                      mean validation score; on a tie the lower id)
neither changed it                    ``a``'s text (equal to both parents')
====================================  ==============================================

"Changed" means "text differs from ``a``'s". When both parents changed a component to the
same text, the source is still the better parent (the text is the same either way).

A triplet ``(i, j, a)`` is a valid merge when ``i != j`` are both eligible (non-dominated),
neither is an ancestor of the other, ``a`` is a common ancestor with
``scores[a] <= min(scores[i], scores[j])``, the triplet has not been tried before, and the
merged candidate differs from both ``i`` and ``j`` and from every candidate already in the
pool. The last rule implies GEPA's "desirable predictors" rule: at least one component was
changed by exactly one of the parents (otherwise the merge would copy the better parent).

With ``strategy="reflective"`` the pair is chosen for what each parent does better
(:func:`find_complementary_merge`: the two non-dominated candidates that each win on the most
validation examples the other loses), and a component both parents changed is not taken
from the better parent but written by the reflection model from both texts
(:attr:`MergePlan.conflicts`); the other components follow the rule above.

Everything here is pure: no engine state, and the only randomness is the ``random.Random``
passed in, so a result is a deterministic function of the arguments and the ``rng`` state.

Example:
    >>> seed = {"a": "A0", "b": "B0"}
    >>> plan = find_merge(
    ...     candidates=[seed, {"a": "A1", "b": "B0"}, {"a": "A0", "b": "B2"}],
    ...     parents=[[], [0], [0]],
    ...     scores=[0.2, 0.5, 0.6],
    ...     eligible=[1, 2],
    ...     tried=(),
    ...     existing=(),
    ...     rng=random.Random(0),
    ... )
    >>> plan.parents, plan.ancestor, plan.texts, plan.sources
    ((1, 2), 0, {'a': 'A1', 'b': 'B2'}, {'a': 1, 'b': 2})
"""

from __future__ import annotations

import random
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from gepetto.types import candidate_hash

__all__ = [
    "MERGE_STRATEGIES",
    "MergePlan",
    "ancestors",
    "find_complementary_merge",
    "find_merge",
    "merge_conflicts",
    "merge_subsample",
    "merge_texts",
    "validation_wins",
]

MERGE_STRATEGIES = ("components", "reflective")
"""``"components"``: gepa's merge; ``"reflective"``: complementary parents, conflicting
components written by the reflection model."""


@dataclass(frozen=True)
class MergePlan:
    """A merge proposal: the merged texts and where each component comes from.

    Attributes:
        parents: ``(i, j)`` with ``i < j``, the two candidates merged.
        ancestor: the common ancestor ``a`` the parents are compared against.
        texts: the merged candidate, component -> text (in the ancestor's component order).
        sources: component -> id of the candidate its text comes from (``i``, ``j`` or ``a``).
        conflicts: the components both parents changed, to different texts, that a
            reflective merge has the reflection model write (in ``texts`` they hold the
            better parent's text meanwhile); empty for gepa's merge.
        wins: validation examples on which ``i``, and ``j``, scores higher than the other
            (filled by :func:`find_complementary_merge` only).
    """

    parents: tuple[int, int]
    ancestor: int
    texts: dict[str, str]
    sources: dict[str, int]
    conflicts: tuple[str, ...] = ()
    wins: tuple[int, int] = (0, 0)

    @property
    def triplet(self) -> tuple[int, int, int]:
        """``(i, j, a)``, the key to record in the ``tried`` collection of :func:`find_merge`."""
        return (self.parents[0], self.parents[1], self.ancestor)


def ancestors(parents: Sequence[Sequence[int]], candidate_id: int) -> set[int]:
    """All ancestors of a candidate, transitively, not including the candidate itself.

    Args:
        parents: ``parents[k]`` lists the parents of candidate ``k`` (empty for the seed;
            two entries for a merge).
        candidate_id: the candidate whose ancestry is wanted.

    Returns:
        The ids reachable by following parent links from ``candidate_id``. Never contains
        ``candidate_id``, even if the (malformed) genealogy has a cycle through it.

    Raises:
        IndexError: if ``candidate_id`` or a parent id is not an index of ``parents``.

    Example:
        >>> sorted(ancestors([[], [0], [0], [1, 2], [3]], 4))
        [0, 1, 2, 3]
    """
    found: set[int] = set()
    stack = list(parents[candidate_id])
    while stack:
        node = stack.pop()
        if node in found:
            continue
        found.add(node)
        stack.extend(parents[node])
    found.discard(candidate_id)
    return found


def merge_texts(
    text_i: Mapping[str, str],
    text_j: Mapping[str, str],
    text_a: Mapping[str, str],
    ids: tuple[int, int, int],
    winner: int,
) -> tuple[dict[str, str], dict[str, int]]:
    """Merge two descendants of ``a`` component by component (see the module docstring).

    Args:
        text_i: the texts of parent ``i``.
        text_j: the texts of parent ``j``.
        text_a: the texts of the common ancestor ``a``; its keys (and their order) are the
            merged candidate's. ``text_i`` and ``text_j`` must have the same keys.
        ids: ``(i, j, a)``, used only to fill ``sources``.
        winner: ``i`` or ``j``, the source of components both parents changed.

    Returns:
        ``(texts, sources)``: the merged candidate and, per component, the id its text
        comes from.
    """
    i, j, a = ids
    texts: dict[str, str] = {}
    sources: dict[str, int] = {}
    for component, base in text_a.items():
        changed_i = text_i[component] != base
        changed_j = text_j[component] != base
        if changed_i and changed_j:
            source = winner
        elif changed_i:
            source = i
        elif changed_j:
            source = j
        else:
            source = a
        sources[component] = source
        origin = text_i if source == i else text_j if source == j else text_a
        texts[component] = origin[component]
    return texts, sources


def find_merge(
    candidates: Sequence[Mapping[str, str]],
    parents: Sequence[Sequence[int]],
    scores: Sequence[float],
    eligible: Sequence[int],
    tried: Collection[tuple[int, int, int]],
    existing: Collection[str],
    rng: random.Random,
    max_attempts: int = 10,
) -> MergePlan | None:
    """Find a valid merge ``(i, j, a)`` of two eligible candidates, or ``None``.

    Each attempt draws a new unordered pair of eligible candidates (uniformly, without
    replacement, so no pair is examined twice) and examines its common ancestors newest
    first (highest id first: ids grow with creation, so a common ancestor is always tried
    before its own ancestors). The first ancestor that makes a valid triplet wins; if none
    does, the attempt fails and the next pair is drawn.

    Contract (every returned plan satisfies all of these):

    - ``i < j``, both in ``eligible``, and neither is an ancestor of the other;
    - ``a`` is an ancestor of both, with ``scores[a] <= min(scores[i], scores[j])``;
    - ``(i, j, a)`` is not in ``tried``;
    - ``texts``/``sources`` follow the merge rule of the module docstring, with the better
      of ``i``/``j`` (ties: the lower id, ``i``) as the source of components both changed;
    - ``texts`` differs from ``candidates[i]`` and from ``candidates[j]``, and its
      :func:`~gepetto.types.candidate_hash` is not in ``existing``.

    Triplets whose three candidates do not have the same components are skipped. With
    ``max_attempts`` at least the number of eligible pairs the search is exhaustive: it
    returns ``None`` only if no valid plan exists.

    Args:
        candidates: texts by candidate id.
        parents: ``parents[k]`` lists the parents of candidate ``k`` (empty for the seed).
        scores: mean validation score by candidate id.
        eligible: ids allowed as merge parents (normally the non-dominated ones); order and
            duplicates do not matter.
        tried: ``(i, j, a)`` triplets already tried (``i < j``); never returned again.
        existing: hashes of every candidate already in the pool (or already tried).
        rng: the only source of randomness; the result is deterministic for its state.
        max_attempts: how many pairs to examine at most.

    Returns:
        A :class:`MergePlan`, or ``None`` if none was found within ``max_attempts`` pairs.

    Raises:
        ValueError: if ``candidates``, ``parents`` and ``scores`` differ in length, or
            ``max_attempts`` is negative.
    """
    if not len(candidates) == len(parents) == len(scores):
        raise ValueError(
            "candidates, parents and scores must have one entry per candidate, got "
            f"{len(candidates)}, {len(parents)} and {len(scores)}"
        )
    if max_attempts < 0:
        raise ValueError(f"max_attempts must be >= 0, got {max_attempts}")
    pool = sorted(set(eligible))
    n = len(pool)
    n_pairs = n * (n - 1) // 2
    if n_pairs == 0 or max_attempts == 0:
        return None
    tried_set = tried if isinstance(tried, set | frozenset) else set(tried)
    existing_set = existing if isinstance(existing, set | frozenset) else set(existing)
    ancestry: dict[int, set[int]] = {}

    def ancestors_of(candidate_id: int) -> set[int]:
        if candidate_id not in ancestry:
            ancestry[candidate_id] = ancestors(parents, candidate_id)
        return ancestry[candidate_id]

    for pair_index in rng.sample(range(n_pairs), min(max_attempts, n_pairs)):
        i, j = _pair_at(pair_index, n)
        i, j = pool[i], pool[j]
        ancestors_i, ancestors_j = ancestors_of(i), ancestors_of(j)
        if i in ancestors_j or j in ancestors_i:
            continue
        plan = _plan_for_pair(
            candidates, scores, i, j, ancestors_i & ancestors_j, tried_set, existing_set
        )
        if plan is not None:
            return plan
    return None


def merge_conflicts(
    text_i: Mapping[str, str], text_j: Mapping[str, str], text_a: Mapping[str, str]
) -> tuple[str, ...]:
    """The components both parents changed from the ancestor's text, to different texts
    (in the ancestor's order): what a reflective merge asks the reflection model to write.

    Example:
        >>> merge_conflicts({"a": "A1", "b": "B1"}, {"a": "A2", "b": "B0"}, {"a": "A0", "b": "B0"})
        ('a',)
    """
    return tuple(
        name
        for name, base in text_a.items()
        if text_i[name] != base and text_j[name] != base and text_i[name] != text_j[name]
    )


def find_complementary_merge(
    candidates: Sequence[Mapping[str, str]],
    parents: Sequence[Sequence[int]],
    scores: Sequence[float],
    val_scores: Sequence[Mapping[int, float]],
    eligible: Sequence[int],
    tried: Collection[tuple[int, int, int]],
    existing: Collection[str],
    rng: random.Random,
    min_overlap: int = 1,
) -> MergePlan | None:
    """The reflective merge's pair: two eligible candidates that each do better where the
    other does worse, or ``None``.

    A pair qualifies when ``i < j`` are both in ``eligible``, neither is an ancestor of the
    other, they have the same components and share at least ``min_overlap`` validation
    examples, each scores strictly higher than the other on at least one of them, and the
    triplet with their newest common ancestor ``a`` is not in ``tried``. When the pair has
    no conflicting component (see :func:`merge_conflicts`) its merge is gepa's, and it also
    must differ from both parents and from every hash in ``existing``.

    Among the qualifying pairs the one whose weaker side wins most (``min(wins_i,
    wins_j)``) is chosen, then the most wins in all; ties are broken by ``rng``. The plan's
    texts follow :func:`merge_texts` (the better parent by mean validation score gives the
    conflicting components until the reflection model rewrites them).

    Args:
        candidates: texts by candidate id.
        parents: ``parents[k]`` lists the parents of candidate ``k`` (empty for the seed).
        scores: mean validation score by candidate id (which parent is the better).
        val_scores: per candidate, validation example id -> score.
        eligible: ids allowed as parents (normally the non-dominated ones).
        tried: ``(i, j, a)`` triplets already tried; never returned again.
        existing: hashes of every candidate already in the pool (or already tried).
        rng: the only source of randomness.
        min_overlap: validation examples the two must share.

    Raises:
        ValueError: if ``candidates``, ``parents``, ``scores`` and ``val_scores`` differ in
            length.

    Example:
        >>> plan = find_complementary_merge(
        ...     candidates=[{"p": "seed"}, {"p": "knows x"}, {"p": "knows y"}],
        ...     parents=[[], [0], [0]],
        ...     scores=[0.0, 0.5, 0.5],
        ...     val_scores=[{1: 0.0, 2: 0.0}, {1: 1.0, 2: 0.0}, {1: 0.0, 2: 1.0}],
        ...     eligible=[1, 2],
        ...     tried=(),
        ...     existing=(),
        ...     rng=random.Random(0),
        ... )
        >>> plan.parents, plan.ancestor, plan.conflicts, plan.wins
        ((1, 2), 0, ('p',), (1, 1))
    """
    if not len(candidates) == len(parents) == len(scores) == len(val_scores):
        raise ValueError(
            "candidates, parents, scores and val_scores must have one entry per candidate, "
            f"got {len(candidates)}, {len(parents)}, {len(scores)} and {len(val_scores)}"
        )
    pool = sorted(set(eligible))
    rng.shuffle(pool)  # ties between equally complementary pairs: a random one
    lineage = {k: ancestors(parents, k) for k in pool}
    best: tuple[tuple[int, int], MergePlan] | None = None
    for position, first in enumerate(pool):
        for second in pool[position + 1 :]:
            i, j = min(first, second), max(first, second)
            if i in lineage[j] or j in lineage[i]:
                continue
            text_i, text_j = candidates[i], candidates[j]
            common = lineage[i] & lineage[j]
            if not common or text_i.keys() != text_j.keys():
                continue
            a = max(common)
            if (i, j, a) in tried or candidates[a].keys() != text_i.keys():
                continue
            wins = validation_wins(val_scores[i], val_scores[j], min_overlap)
            if wins is None or min(wins) == 0:
                continue
            rank = (min(wins), sum(wins))
            if best is not None and rank <= best[0]:
                continue
            winner = j if scores[j] > scores[i] else i
            texts, sources = merge_texts(text_i, text_j, candidates[a], (i, j, a), winner)
            conflicts = merge_conflicts(text_i, text_j, candidates[a])
            if not conflicts and (texts in (text_i, text_j) or candidate_hash(texts) in existing):
                continue
            best = (rank, MergePlan((i, j), a, texts, sources, conflicts, wins))
    return best[1] if best is not None else None


def validation_wins(
    scores_i: Mapping[int, float], scores_j: Mapping[int, float], min_overlap: int = 1
) -> tuple[int, int] | None:
    """How many shared examples each side scores strictly higher on, or ``None`` when they
    share fewer than ``min_overlap``.

    Example:
        >>> validation_wins({1: 1.0, 2: 0.0, 3: 0.5}, {1: 0.0, 2: 1.0, 3: 0.5})
        (1, 1)
    """
    shared = scores_i.keys() & scores_j.keys()
    if len(shared) < min_overlap:
        return None
    wins_i = sum(1 for e in shared if scores_i[e] > scores_j[e])
    wins_j = sum(1 for e in shared if scores_j[e] > scores_i[e])
    return wins_i, wins_j


def _pair_at(index: int, n: int) -> tuple[int, int]:
    """The ``index``-th pair ``(p, q)``, ``p < q < n``, in lexicographic order."""
    p = 0
    while index >= n - 1 - p:
        index -= n - 1 - p
        p += 1
    return p, p + 1 + index


def _plan_for_pair(
    candidates: Sequence[Mapping[str, str]],
    scores: Sequence[float],
    i: int,
    j: int,
    common: set[int],
    tried: Collection[tuple[int, int, int]],
    existing: Collection[str],
) -> MergePlan | None:
    """The valid plan for ``i < j`` with the newest possible common ancestor, if any."""
    text_i, text_j = candidates[i], candidates[j]
    if text_i.keys() != text_j.keys():
        return None
    floor = min(scores[i], scores[j])
    winner = j if scores[j] > scores[i] else i
    for a in sorted(common, reverse=True):
        text_a = candidates[a]
        if (i, j, a) in tried or not scores[a] <= floor or text_a.keys() != text_i.keys():
            continue
        texts, sources = merge_texts(text_i, text_j, text_a, (i, j, a), winner)
        if texts in (text_i, text_j) or candidate_hash(texts) in existing:
            continue
        return MergePlan(parents=(i, j), ancestor=a, texts=texts, sources=sources)
    return None


def merge_subsample(
    scores_i: Mapping[int, float],
    scores_j: Mapping[int, float],
    per_group: int,
    rng: random.Random,
) -> list[int]:
    """A stratified validation subsample on which to compare a merge with its parents.

    The examples both parents were evaluated on fall into three groups: ``i`` scored
    higher, ``j`` scored higher, tie (including incomparable NaN scores). Up to
    ``per_group`` examples are drawn from each; when a group is short, the missing slots
    are filled from the groups that still have examples, one at a time in turn (``i``-wins,
    ``j``-wins, ties), so the subsample stays as balanced as possible.

    Args:
        scores_i: example id -> score of parent ``i``.
        scores_j: example id -> score of parent ``j``.
        per_group: target number of examples per group.
        rng: the only source of randomness.

    Returns:
        Sorted, distinct example ids evaluated by both parents; exactly
        ``min(3 * per_group, overlap)`` of them. Deterministic for the ``rng`` state (the
        mappings' iteration order does not matter).

    Raises:
        ValueError: if ``per_group`` is negative.

    Example:
        >>> merge_subsample({1: 1.0, 2: 0.0, 3: 0.5}, {1: 0.0, 2: 1.0, 3: 0.5}, 1,
        ...                 random.Random(0))
        [1, 2, 3]
    """
    if per_group < 0:
        raise ValueError(f"per_group must be >= 0, got {per_group}")
    overlap = sorted(scores_i.keys() & scores_j.keys())
    i_wins = [e for e in overlap if scores_i[e] > scores_j[e]]
    j_wins = [e for e in overlap if scores_j[e] > scores_i[e]]
    ties = [e for e in overlap if not (scores_i[e] > scores_j[e] or scores_j[e] > scores_i[e])]
    groups = (i_wins, j_wins, ties)
    quotas = [min(per_group, len(group)) for group in groups]
    shortfall = min(3 * per_group, len(overlap)) - sum(quotas)
    while shortfall > 0:
        for k, group in enumerate(groups):
            if shortfall > 0 and quotas[k] < len(group):
                quotas[k] += 1
                shortfall -= 1
    chosen: list[int] = []
    for group, quota in zip(groups, quotas, strict=True):
        chosen.extend(rng.sample(group, quota))
    return sorted(chosen)
