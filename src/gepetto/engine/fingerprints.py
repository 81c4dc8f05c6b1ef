"""Fingerprints of a run's inputs: the same data gives the same hash in every process.

A resumed run is refused when its inputs differ from the journaled ones, so a fingerprint
must not depend on anything but the data: not on ``PYTHONHASHSEED`` (the order of a set of
strings), nor on memory addresses (the default ``repr`` of an object). :func:`canonical`
turns a value into plain JSON data:

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

For plain JSON data the canonical JSON is what gepetto wrote before this module existed, so
old journals keep their fingerprints; :func:`legacy_fingerprint` gives the old hash of
anything else (a set, a dataclass), which a resume of an old journal also accepts.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import types
from collections.abc import Mapping, Sequence
from typing import Any

from gepetto.errors import ConfigError, GepettoError
from gepetto.types import LoadedExamples

__all__ = [
    "canonical",
    "dataset_fingerprint",
    "example_id",
    "fingerprint",
    "legacy_fingerprint",
]

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


def fingerprint(value: Any, where: str = "value") -> str:
    """A short sha256 of the canonical JSON of ``value``.

    Raises:
        ConfigError: a part of ``value`` has no canonical form.
    """
    return _hash(_text(canonical(value, where)))


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:24]


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


def legacy_fingerprint(value: Any) -> str | None:
    """The fingerprint gepetto wrote before canonical forms (``repr`` for anything that is
    not JSON), or ``None`` if it cannot be computed."""
    try:
        text = json.dumps(value, sort_keys=True, ensure_ascii=False, default=repr)
    except (TypeError, ValueError, RecursionError):
        return None
    return _hash(text)
