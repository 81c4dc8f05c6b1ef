"""Binding gepa's strategy objects to a run, and the validation loader that grows.

:func:`bind_gepa_objects` gives every wrapped gepa object of a run
(:mod:`gepetto.strategies.gepa_objects`) gepa's view of the run's state and the datasets as
gepa loaders. A valset given as a gepa ``DataLoader`` is then read again (``all_ids()``)
each time a gepa evaluation policy chooses examples, as gepa does: ids it gained become the
next validation examples, journaled as a :class:`~gepetto.records.ValsetGrowthRecord`
(the new ids and the fingerprint of their examples). The fronts, and gepa's view, key them
by the loader's ids.

:func:`restore_gepa_objects` is the resume side: the journaled growth is fetched from the
loader again (and checked against its fingerprint), and a warning says when gepa objects
cannot be replayed exactly.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING, Any

from gepetto.engine.journal import dataset_fingerprint
from gepetto.errors import ConfigError
from gepetto.gepa_state import GEPAStateView
from gepetto.records import Record, ValsetGrowthRecord
from gepetto.strategies.gepa_objects import REPLAY_WARNING, GepaRunAccess, GepaStrategy
from gepetto.types import DataLoader, ListDataLoader, LoadedExamples

if TYPE_CHECKING:
    from gepetto.engine.context import RunContext

__all__ = ["bind_gepa_objects", "restore_gepa_objects"]


class _ReadLoader:
    """A dataset as gepetto read it, served as a gepa ``DataLoader`` (it never grows)."""

    def __init__(self, examples: LoadedExamples) -> None:
        self._examples = examples
        self._positions = {example_id: n for n, example_id in enumerate(examples.ids)}

    def all_ids(self) -> list[Any]:
        return list(self._examples.ids)

    def fetch(self, ids: Sequence[Any]) -> list[Any]:
        return [self._examples[self._positions[example_id]] for example_id in ids]

    def __len__(self) -> int:
        return len(self._examples)


def _loader(examples: list[Any]) -> Any:
    if isinstance(examples, LoadedExamples):
        return _ReadLoader(examples)
    return ListDataLoader(examples)


def _ids(examples: list[Any]) -> Sequence[Hashable]:
    return examples.ids if isinstance(examples, LoadedExamples) else range(len(examples))


class _Valset:
    """The run's validation examples, the positions of their loader ids, and their growth."""

    def __init__(self, ctx: RunContext) -> None:
        self._ctx = ctx
        self.positions = {example_id: n for n, example_id in enumerate(_ids(ctx.valset))}

    def position(self, example_id: Hashable) -> int | None:
        return self.positions.get(example_id)

    def refresh(self) -> None:
        """Read the loader's ids again; journal and add the examples of new ones."""
        valset = self._ctx.valset
        if not isinstance(valset, LoadedExamples) or valset.loader is None:
            return
        new = [i for i in valset.loader.all_ids() if i not in self.positions]
        if not new:
            return
        examples = self.fetch(valset.loader, new)
        fingerprint = dataset_fingerprint(LoadedExamples(examples, new), "valset")
        iteration = self._ctx.state.iterations_started - 1
        self._ctx.record(ValsetGrowthRecord(tuple(new), fingerprint, iteration))
        self.add(valset, new, examples)

    @staticmethod
    def fetch(loader: DataLoader[Any, Any], ids: list[Any]) -> list[Any]:
        """The examples of ``ids`` from the valset's loader, checked.

        Raises:
            ConfigError: the ids repeat, or ``fetch`` gave another number of examples.
        """
        if len(set(ids)) != len(ids):
            raise ConfigError("valset: the DataLoader's all_ids() repeats an id")
        examples = list(loader.fetch(ids))
        if len(examples) != len(ids):
            raise ConfigError(
                f"valset: the DataLoader's fetch() returned {len(examples)} examples for "
                f"{len(ids)} ids; it must return one example per id, in order"
            )
        return examples

    def add(self, valset: LoadedExamples, ids: list[Any], examples: list[Any]) -> None:
        for example_id in ids:
            self.positions[example_id] = len(self.positions)
        valset.extend(examples)
        valset.ids = valset.ids + tuple(ids)


class _RunValsetLoader:
    """The run's validation examples as the gepa ``DataLoader`` a gepa policy reads: the
    user's loader is read again first, and the ids are every id the run has seen, in the
    order it saw them (a resumed run sees the journaled ones even if the loader does not
    show them yet; an id never leaves the valset)."""

    def __init__(self, ctx: RunContext, valset: _Valset) -> None:
        self._ctx, self._valset = ctx, valset

    def all_ids(self) -> list[Any]:
        self._valset.refresh()
        return list(self._valset.positions)

    def fetch(self, ids: Sequence[Any]) -> list[Any]:
        positions = self._valset.positions
        return [self._ctx.valset[positions[example_id]] for example_id in ids]

    def __len__(self) -> int:
        self._valset.refresh()
        return len(self._valset.positions)


def _gepa_objects(ctx: RunContext) -> list[GepaStrategy]:
    config = ctx.config
    strategies: tuple[object, ...] = (
        config.candidate_selector,
        config.batch_sampler,
        config.component_selector,
        config.acceptance,
        config.evaluation_policy,
    )
    return [s for s in strategies if isinstance(s, GepaStrategy)]


def bind_gepa_objects(ctx: RunContext) -> None:
    """Bind the run's wrapped gepa objects to it (nothing to do without any).

    Raises:
        ConfigError: a gepa evaluation policy reads a ``DataLoader`` valset in a run shared
            by several workers (the valset could grow in one process only).
    """
    objects = _gepa_objects(ctx)
    if not objects:
        return
    if (
        ctx.worker is not None
        and isinstance(ctx.config.evaluation_policy, GepaStrategy)
        and isinstance(ctx.valset, LoadedExamples)
    ):
        raise ConfigError(
            "a gepa val_evaluation_policy re-reads a DataLoader valset, which may grow in "
            "one worker only; a run shared by several workers needs gepetto's policies "
            "('full_eval', 'incremental') or a valset given as a list"
        )
    valset = _Valset(ctx)
    ctx.valset_index = valset
    train_positions = {example_id: n for n, example_id in enumerate(_ids(ctx.trainset))}
    train_ids = list(_ids(ctx.trainset))
    access = GepaRunAccess(
        view=GEPAStateView(ctx.state, ctx.valset),
        trainset=_loader(ctx.trainset),
        valset=_RunValsetLoader(ctx, valset),
        train_position=train_positions.get,
        val_position=valset.position,
        train_id=train_ids.__getitem__,
        refresh_valset=valset.refresh,
    )
    for strategy in objects:
        strategy.bind(access)


def restore_gepa_objects(ctx: RunContext, records: list[Record]) -> None:
    """On resume: fetch the journaled growth of the valset again; warn about gepa objects
    that a resumed run cannot replay.

    Raises:
        ConfigError: the valset grew during the run and its loader cannot give the added
            examples again (or gives other ones).
    """
    growth = [r for r in records if isinstance(r, ValsetGrowthRecord)]
    if growth:
        _regrow(ctx, growth)
    unreplayable = [type(s.wrapped).__name__ for s in _gepa_objects(ctx) if not s.replayable]
    if records and unreplayable:
        warnings.warn(REPLAY_WARNING.format(names=", ".join(unreplayable)), stacklevel=2)


def _regrow(ctx: RunContext, growth: list[ValsetGrowthRecord]) -> None:
    valset, index = ctx.valset, ctx.valset_index
    if not isinstance(valset, LoadedExamples) or valset.loader is None or index is None:
        raise ConfigError(
            "cannot resume: the run's valset (a gepa DataLoader) grew during the run, and "
            "the valset given now is not a DataLoader read by a gepa evaluation policy"
        )
    for record in growth:
        ids = list(record.loader_ids)
        try:
            examples = index.fetch(valset.loader, ids)
        except (KeyError, IndexError, LookupError) as error:
            raise ConfigError(
                f"cannot resume: the valset grew during the run (ids {ids!r}), and its "
                f"DataLoader cannot fetch them now ({type(error).__name__}: {error}); resume "
                "with a loader that can fetch every id the run saw, or start a new run"
            ) from None
        if dataset_fingerprint(LoadedExamples(examples, ids), "valset") != record.fingerprint:
            raise ConfigError(
                f"cannot resume: the valset's DataLoader gives other examples for the ids "
                f"{ids!r} it gained during the run than it gave then"
            )
        index.add(valset, ids, examples)
