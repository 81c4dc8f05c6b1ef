"""The run's journal: records written to storage before the loop relies on them, and the
fingerprints that identify the run.

:class:`Journal` buffers the records the optimizer produces and writes them to the
:class:`~gepetto.storage.base.JournalStorage` in one transaction per :meth:`Journal.flush`.
The optimizer flushes before it hands out any task and after every result it is told, so no
work is started on a record that is not durable.

Opening a journal checks the run's *fingerprints* (hashes of the seed candidate, the
datasets and the adapter) and compares its recorded settings one by one
(:func:`~gepetto.engine.options.changed_settings`, beside the list of settings a resume may
change): resuming with other inputs or settings is refused with a message that names each
difference, unless ``fork=True`` starts a new run beside it in the same storage.

A storage that can lock runs (:class:`~gepetto.storage.base.RunLocking`, SQLite) is locked
for the run from :meth:`Journal.open` to :meth:`Journal.release`: a second process on the
same run is refused before it pays for anything, unless every process is a worker of a
shared run.

A fingerprint depends on nothing but the data: not on ``PYTHONHASHSEED`` (the order of a
set of strings), nor on memory addresses (the default ``repr`` of an object), so the same
inputs resume in any process. :func:`canonical` turns a value into plain JSON data:

- ``None``, ``bool``, ``int``, ``float`` and ``str`` stay as they are; ``bytes`` become
  ``{"__bytes__": hex}``;
- a mapping with string keys becomes a dict (its order does not matter); a mapping with
  other keys becomes ``{"__mapping__": [[key, value], ...]}`` sorted by the keys' canonical
  JSON; lists, tuples and other sequences become lists (a tuple is a list, as in JSON);
- a set or frozenset becomes ``{"__set__": [...]}``, its items sorted by their canonical
  JSON; a dataclass instance becomes ``{"__dataclass__": "module.Name", field: value, ...}``;
- any other object is its ``repr``, if that ``repr`` is its own: an object that has only
  ``object.__repr__`` (whose text holds its address), a function or lambda, a generator, or
  any ``repr`` holding ``at 0x...`` has no canonical form.

A value without a canonical form is refused (:class:`~gepetto.errors.ConfigError`, naming
where it is, e.g. ``trainset[3]['meta']``) unless the example holding it has an *id*: a
mapping key ``"id"`` or an attribute ``id`` holding a ``str`` or ``int``. Such an example is
fingerprinted by its id alone, so a resume takes it for the same example whatever else it
holds.

For plain JSON data the canonical JSON is what older gepetto versions wrote, so their
journals keep their fingerprints; :func:`legacy_fingerprint` gives the older hash of
anything else (a set, a dataclass), which a resume of such a journal also accepts.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
import time
import types
from collections.abc import Mapping, Sequence
from typing import Any

from gepetto.engine.config import SAMPLED_MINIBATCH_SIZE
from gepetto.engine.options import changed_settings
from gepetto.errors import ConfigError, GepettoError
from gepetto.records import Record, ReflectionStreamed, record_from_dict, record_to_dict
from gepetto.storage.base import (
    JOURNAL_SCHEMA_VERSION,
    HeldRun,
    JournalStorage,
    RunExists,
    RunHeader,
    RunInUse,
    RunLocking,
    StorageError,
)
from gepetto.types import LoadedExamples

logger = logging.getLogger("gepetto")

__all__ = [
    "Journal",
    "canonical",
    "dataset_fingerprint",
    "example_id",
    "fingerprint",
    "legacy_fingerprint",
]


class Journal:
    """Buffers records and writes them to a storage backend (or nowhere, without one).

    Args:
        storage: the backend, or ``None`` for a run that keeps nothing.
        run_id: the run's name in the storage.
    """

    def __init__(self, storage: JournalStorage | None, run_id: str = "default") -> None:
        self.storage = storage
        self.run_id = run_id
        self._pending: list[dict[str, Any]] = []
        self._own_seqs: set[int] = set()
        self._hold: HeldRun | None = None
        self._unwritten: RunHeader | None = None
        self._progress_failed = False
        self.synced_seq = 0
        """The last sequence number read from the storage."""

    def open(
        self,
        *,
        seed_candidate: Mapping[str, str],
        trainset: Sequence[Any],
        valset: Sequence[Any],
        settings: Mapping[str, Any],
        adapter: str | None,
        fork: bool = False,
        testset: Sequence[Any] = (),
        shared: bool = False,
    ) -> list[Record]:
        """Create the run, or check it is the same run and return its records.

        The run is locked first when the storage can lock runs (``shared`` for a worker of
        a shared run), and stays locked until :meth:`release`. A new run that is not shared
        is stored with its first records (:meth:`flush`), so a run refused before it starts
        leaves nothing in the storage; a shared run is stored at once (its workers need it).

        With ``fork``, a stored run, or one that another process holds, gets a new run beside
        it (``run_id-fork-1``, ...).

        Raises:
            ConfigError: an input has no stable fingerprint (before anything is stored), or
                the stored run has other inputs or settings and ``fork`` is false.
            RunInUse: another process runs it (see :class:`~gepetto.storage.base.RunLocking`).
            StorageError: the journal was written by a newer gepetto, or is damaged.
        """
        if self.storage is None:
            return []
        inputs = {"seed_candidate": dict(seed_candidate), "trainset": _examples(trainset)}
        inputs["valset"] = inputs["trainset"] if valset is trainset else _examples(valset)
        if testset:
            inputs["testset"] = _examples(testset)
        prints = _input_fingerprints(inputs, adapter)
        self._lock(shared, fork)
        try:
            return self._open_run(prints, inputs, settings, shared)
        except BaseException:
            self.release()
            raise

    def _lock(self, shared: bool, fork: bool) -> None:
        """Hold the run (a storage that cannot lock runs: nothing to do); with ``fork``,
        move to a new run beside a stored one or one that another process holds."""
        if self.storage is None:
            return
        base, taken = self.run_id, set[str]()
        if fork and self.storage.header(self.run_id) is not None:
            self.run_id = self._free_fork_id(base, taken)
        while isinstance(self.storage, RunLocking):
            try:
                self._hold = self.storage.lock_run(self.run_id, shared=shared)
                return
            except RunInUse:
                if not fork:
                    raise
                taken.add(self.run_id)
                self.run_id = self._free_fork_id(base, taken)

    def _open_run(
        self,
        prints: Mapping[str, str],
        inputs: Mapping[str, Any],
        settings: Mapping[str, Any],
        shared: bool,
    ) -> list[Record]:
        if self.storage is None:
            raise RuntimeError("a journal without storage has no run to open")
        header = self.storage.header(self.run_id)
        if header is None:
            new = RunHeader(
                self.run_id, JOURNAL_SCHEMA_VERSION, prints, dict(settings), time.time()
            )
            if not shared:  # created with the first records: a run that fails to start
                self._unwritten = new  # (a refused argument) leaves nothing behind
                return []
            try:
                self.storage.create(new)
                return []
            except RunExists:  # another worker created it at the same moment
                header = self.storage.header(self.run_id)
                if header is None:
                    raise
        self._check(header, prints, inputs, settings)
        stored = self.storage.read(self.run_id)
        self.synced_seq = stored[-1][0] if stored else 0
        return [self._record(seq, data) for seq, data in stored if not _is_progress(data)]

    def _record(self, seq: int, data: Mapping[str, Any]) -> Record:
        try:
            return record_from_dict(data)
        except (ValueError, TypeError, KeyError) as error:
            raise StorageError(
                f"record {seq} of run {self.run_id!r} cannot be read back ({type(error).__name__}:"
                f" {error}): the journal is damaged or was written by a newer gepetto. Restore "
                "it from a backup, or move it away to start the run over"
            ) from None

    def _check(
        self,
        header: RunHeader,
        prints: Mapping[str, str],
        inputs: Mapping[str, Any],
        settings: Mapping[str, Any],
    ) -> None:
        if header.schema_version > JOURNAL_SCHEMA_VERSION:
            raise StorageError(
                f"run {self.run_id!r} was written by a newer gepetto (journal version "
                f"{header.schema_version}); upgrade gepetto to resume it"
            )
        differing = []
        for key in sorted(set(prints) | set(header.fingerprints)):
            stored = header.fingerprints.get(key)
            if key == "settings" or stored == prints.get(key):
                continue  # "settings": an old journal's hash; settings are compared one by one
            if key in inputs and stored is not None and stored == legacy_fingerprint(inputs[key]):
                continue  # journaled before canonical fingerprints, with the same data
            differing.append(key if stored is not None else f"{key} (the journal records none)")
        changes = changed_settings(header.config, settings)
        if not differing and not changes:
            return
        parts = [f"a different {', '.join(differing)}"] if differing else []
        if changes:
            parts.append(f"different settings ({'; '.join(changes)})")
        widened = header.config.get("reflection_minibatch_size") == SAMPLED_MINIBATCH_SIZE
        if changes and widened and settings.get("reflection_minibatch_size") is None:
            parts[-1] += (
                " (parallel_proposals > 1 with parallel_strategy 'samples' widened the "
                f"minibatch to {SAMPLED_MINIBATCH_SIZE} when the run started: pass "
                f"reflection_minibatch_size={SAMPLED_MINIBATCH_SIZE})"
            )
        raise ConfigError(
            f"run {self.run_id!r} in this storage was started with {' and '.join(parts)}; "
            "resume it with the same inputs and settings (a resume may change the budget, "
            "stop conditions, parallelism, reflection model and observers), pass fork=True to "
            "start a new run beside it, or use another run_dir / run_id"
        )

    def _free_fork_id(self, base: str, taken: set[str]) -> str:
        """The first ``base-fork-N`` with no stored run, not in ``taken``."""
        if self.storage is None:
            raise RuntimeError("a journal without storage has no runs to fork")
        number = 1
        while (name := f"{base}-fork-{number}") in taken or self.storage.header(name) is not None:
            number += 1
        return name

    def release(self) -> None:
        """Release the run's lock, if it holds one (again is harmless)."""
        hold, self._hold = self._hold, None
        if hold is not None:
            hold.release()

    def add(self, record: Record) -> None:
        """Buffer a record until the next :meth:`flush`."""
        if self.storage is not None:
            self._pending.append(record_to_dict(record))

    def flush(self) -> None:
        """Write the buffered records in one transaction."""
        if self._pending and self.storage is not None:
            if self._unwritten is not None:
                self._create(self._unwritten)
            seqs = self.storage.append(self.run_id, self._pending)
            self._pending = []  # only once written: a failed append keeps them for a retry
            if isinstance(seqs, list):
                self._own_seqs.update(seqs)

    def write_progress(self, records: Sequence[ReflectionStreamed]) -> bool:
        """Write progress records at once, in their own transaction, outside the buffer that
        :meth:`flush` writes (so the run's own records keep their transactions).

        Progress is for live readers of the store and is never read back by the engine
        (:meth:`open` and :meth:`read_others` skip it). Best effort: before the run is
        stored (its first :meth:`flush`), or when the storage fails, nothing is written
        (the failure is logged once) and ``False`` is returned; the run goes on.
        """
        if self.storage is None or self._unwritten is not None or not records:
            return False
        try:
            seqs = self.storage.append(self.run_id, [record_to_dict(r) for r in records])
        except Exception as error:  # progress must never stop a run
            if not self._progress_failed:
                logger.warning("could not write streamed text to the run's store: %s", error)
            self._progress_failed = True
            return False
        if isinstance(seqs, list):
            self._own_seqs.update(seqs)
        return True

    def _create(self, header: RunHeader) -> None:
        if self.storage is None:
            raise RuntimeError("a journal without storage has no run to create")
        try:
            self.storage.create(header)
        except RunExists:
            raise StorageError(
                f"run {self.run_id!r} was created by another process while this one started "
                "it; two processes on one run would both spend its whole budget. Pass "
                "worker=True to every process to share one run, or use another run_id"
            ) from None
        self._unwritten = None

    def read_others(self) -> list[Record]:
        """Records other workers appended since the last read (a shared run), in order."""
        if self.storage is None:
            return []
        records = []
        for seq, data in self.storage.read(self.run_id, after=self.synced_seq):
            self.synced_seq = seq
            if seq in self._own_seqs:
                self._own_seqs.discard(seq)
            elif not _is_progress(data):
                records.append(self._record(seq, data))
        return records


def _is_progress(data: Mapping[str, Any]) -> bool:
    """A stored progress record (:class:`~gepetto.records.ReflectionStreamed`): not state."""
    return data.get("kind") == "reflection_stream"


def _examples(examples: Sequence[Any]) -> list[Any]:
    """A dataset as a list; a gepa DataLoader's examples keep their ids."""
    return examples if isinstance(examples, LoadedExamples) else list(examples)


def _input_fingerprints(inputs: Mapping[str, Any], adapter: str | None) -> dict[str, str]:
    """The fingerprint of each input (datasets example by example, see
    :func:`dataset_fingerprint`) and the adapter's.

    Raises:
        ConfigError: a value without a stable form, named (``trainset[3]['meta']``).
    """
    prints = {"seed_candidate": fingerprint(inputs["seed_candidate"], "seed_candidate")}
    for name in ("trainset", "valset", "testset"):
        if name in inputs:
            prints[name] = dataset_fingerprint(inputs[name], name)
    prints["adapter"] = adapter or "unknown"
    return prints


def fingerprint(value: Any, where: str = "value") -> str:
    """A short sha256 of the canonical JSON of ``value``.

    Raises:
        ConfigError: a part of ``value`` has no canonical form.
    """
    return _hash(_text(canonical(value, where)))


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:24]


def dataset_fingerprint(examples: Sequence[Any], name: str) -> str:
    """The fingerprint of a dataset: each example canonically, or by its id if it has one
    and no canonical form.

    Raises:
        ConfigError: an example without an id holds a value without a canonical form; the
            message names it (``trainset[3]['meta']``) and says how to give examples ids.
    """
    parts: list[Any] = []
    loader_ids = examples.ids if isinstance(examples, LoadedExamples) else None
    if loader_ids is not None:
        # A gepa DataLoader's ids name its examples: they are part of what the run read.
        try:
            parts.append({"__loader_ids__": _canonical(list(loader_ids), f"{name}.ids", set())})
        except _NoCanonicalForm as error:
            raise ConfigError(
                f"{error.where}: the DataLoader's ids need a stable form for the run's "
                f"fingerprint ({error.why}); use str or int ids"
            ) from None
    for position, example in enumerate(examples):
        try:
            parts.append(_canonical(example, f"{name}[{position}]", set()))
        except _NoCanonicalForm as error:
            identity = example_id(example)
            if identity is None and loader_ids is not None:
                identity = _loader_id(loader_ids[position])
            if identity is None:
                raise ConfigError(
                    f"{error.where} has no stable form for the run's fingerprint "
                    f"({error.why}), so a resumed run could not tell it is the same example. "
                    f"Give each example of {name} an id (a str or int under the key 'id' of a "
                    "dict example, or an attribute id) and gepetto identifies it by that id; "
                    "or make the value plain data (str, numbers, lists, dicts, sets, "
                    "dataclasses) or give its class a __repr__ that shows its content"
                ) from None
            parts.append({"__example_id__": identity})
    return _hash(_text(parts))


def _loader_id(identity: Any) -> str | int | None:
    if isinstance(identity, str) or (isinstance(identity, int) and not isinstance(identity, bool)):
        return identity
    try:
        return _text(_canonical(identity, "id", set()))
    except _NoCanonicalForm:
        return None


def example_id(example: Any) -> str | int | None:
    """The example's id (a mapping key ``"id"`` or an attribute ``id``: a str or an int),
    or ``None``."""
    if isinstance(example, Mapping):
        found = example.get("id")
    else:
        try:
            found = getattr(example, "id", None)
        except Exception:  # an attribute that raises: no id
            return None
    if isinstance(found, str) or (isinstance(found, int) and not isinstance(found, bool)):
        return found
    return None


def canonical(value: Any, where: str = "value") -> Any:
    """Plain JSON data that stands for ``value`` (see the module docstring).

    Args:
        value: any value.
        where: how to name ``value`` in an error (``"trainset[3]"``).

    Raises:
        ConfigError: a part of ``value`` has no canonical form; the message names it.
    """
    try:
        return _canonical(value, where, set())
    except _NoCanonicalForm as error:
        raise ConfigError(
            f"{error.where} has no stable form for the run's fingerprint ({error.why}); make "
            "it plain data (str, numbers, lists, dicts, sets, dataclasses) or give its class "
            "a __repr__ that shows its content"
        ) from None


def _canonical(value: Any, where: str, active: set[int]) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, bytes | bytearray):
        return {"__bytes__": bytes(value).hex()}
    if id(value) in active:
        raise _NoCanonicalForm(where, "it contains itself")
    active.add(id(value))
    try:
        return _container(value, where, active)
    except RecursionError:
        raise _NoCanonicalForm(where, "it is nested too deeply") from None
    finally:
        active.discard(id(value))


def _container(value: Any, where: str, active: set[int]) -> Any:
    if isinstance(value, Mapping):
        if all(isinstance(key, str) for key in value):
            return {
                key: _canonical(item, f"{where}[{key!r}]", active) for key, item in value.items()
            }
        pairs = [
            [
                _canonical(key, f"{where} (key {key!r})", active),
                _canonical(item, f"{where}[{key!r}]", active),
            ]
            for key, item in value.items()
        ]
        return {"__mapping__": sorted(pairs, key=lambda pair: _text(pair[0]))}
    if isinstance(value, set | frozenset):
        items = [_canonical(item, f"{where} (item {item!r})", active) for item in value]
        return {"__set__": sorted(items, key=_text)}
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [_canonical(item, f"{where}[{n}]", active) for n, item in enumerate(value)]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        kind = type(value)
        data: dict[str, Any] = {"__dataclass__": f"{kind.__module__}.{kind.__qualname__}"}
        for field in dataclasses.fields(value):
            data[field.name] = _canonical(
                getattr(value, field.name), f"{where}.{field.name}", active
            )
        return data
    return _own_repr(value, where)


def _own_repr(value: Any, where: str) -> str:
    kind = type(value)
    if isinstance(value, _NO_FORM_TYPES):
        raise _NoCanonicalForm(where, f"a {kind.__name__} is code, not data")
    if not any("__repr__" in vars(cls) for cls in kind.__mro__ if cls is not object):
        raise _NoCanonicalForm(
            where, f"a {kind.__qualname__} object has no __repr__ of its own, only its address"
        )
    text = repr(value)
    if _ADDRESS.search(text):
        raise _NoCanonicalForm(where, f"its repr {text[:80]!r} holds a memory address")
    return text


_ADDRESS = re.compile(r"\bat 0x[0-9a-fA-F]+")
_NO_FORM_TYPES = (
    types.FunctionType,
    types.LambdaType,
    types.MethodType,
    types.GeneratorType,
    types.CoroutineType,
    types.AsyncGeneratorType,
)


class _NoCanonicalForm(GepettoError):
    """A value at ``where`` has no canonical form, for the reason ``why``."""

    def __init__(self, where: str, why: str) -> None:
        super().__init__(f"{where}: {why}")
        self.where = where
        self.why = why


def _text(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def legacy_fingerprint(value: Any) -> str | None:
    """The fingerprint gepetto wrote before canonical forms (``repr`` for anything that is
    not JSON), or ``None`` if it cannot be computed."""
    try:
        text = json.dumps(value, sort_keys=True, ensure_ascii=False, default=repr)
    except (TypeError, ValueError, RecursionError):
        return None
    return _hash(text)
