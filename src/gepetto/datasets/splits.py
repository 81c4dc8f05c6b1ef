"""Disjoint train/val/test splits from a seeded example generator.

:func:`disjoint_splits` draws one split per generator seed, each avoiding the inputs of the
splits before it, so no example input is in two splits.

Example:
    >>> def draw(size, seed, exclude):
    ...     inputs = (f"q{seed + i}" for i in range(10))
    ...     return [{"input": q} for q in inputs if q not in exclude][:size]
    >>> [[e["input"] for e in split] for split in disjoint_splits(draw, 2, (0, 1))]
    [['q0', 'q1'], ['q2', 'q3']]
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["Draw", "disjoint_splits", "drawing_from"]

Draw = Callable[[int, int, set[str]], list[dict[str, Any]]]
"""``draw(size, seed, exclude)``: ``size`` examples from generator seed ``seed``, none whose
``"input"`` is in ``exclude`` (read during the call only)."""


def disjoint_splits(draw: Draw, size: int, seeds: Iterable[int]) -> list[list[dict[str, Any]]]:
    """One split of ``size`` examples per seed (train, val, test for three seeds), no input
    in two splits: each split excludes the inputs of the splits before it."""
    splits: list[list[dict[str, Any]]] = []
    used: set[str] = set()
    for seed in seeds:
        split = draw(size, seed, used)
        used.update(example["input"] for example in split)
        splits.append(split)
    return splits


def drawing_from(generate: Callable[[int, int], list[dict[str, Any]]]) -> Draw:
    """A :data:`Draw` for a generator without an ``exclude`` argument (``generate(n,
    seed)``): the first ``size`` distinct inputs of ``generate(2 * size, seed)`` that are
    not excluded.

    Raises:
        ValueError: (when drawing) fewer than ``size`` such inputs.
    """

    def draw(size: int, seed: int, exclude: set[str]) -> list[dict[str, Any]]:
        kept: dict[str, dict[str, Any]] = {}
        for example in generate(2 * size, seed):
            if example["input"] not in exclude:
                kept.setdefault(example["input"], example)
        if len(kept) < size:
            raise ValueError(f"seed {seed} gives only {len(kept)} new inputs, {size} wanted")
        return list(kept.values())[:size]

    return draw
