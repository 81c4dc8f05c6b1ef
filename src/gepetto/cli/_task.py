"""Task files: what ``gepetto optimize TASK`` optimizes.

A task file is either

- a **Python file** that defines ``seed_candidate``, ``trainset``, ``valset`` (optional:
  default ``trainset``) and ``adapter`` (or ``task_lm``, with an optional ``evaluator``), and
  optionally ``reflection_lm`` and ``options`` (a dict of any :func:`gepetto.optimize`
  keyword). It is run as a module, with its own folder first on ``sys.path`` (so it can
  import its neighbours);
- a **TOML file** (``.toml``) or, when PyYAML is installed, a **YAML file** (``.yaml`` /
  ``.yml``) with the same keys: ``seed_candidate`` (a table of texts); ``trainset`` and
  ``valset`` as inline lists or as the path of a ``.json`` (a list) or ``.jsonl`` file;
  ``task_lm`` and ``reflection_lm`` as model strings (``"local/qwen2.5-coder-0.5b"``);
  ``adapter`` and ``evaluator`` as references ``"module:attribute"`` or
  ``"file.py:attribute"``, with ``()`` after the attribute to call it without arguments and
  use what it returns (``"gepetto.adapters:exact_match_evaluator()"``,
  ``"my_system.py:MyAdapter()"``); and an ``[options]`` table. Relative paths are
  relative to the task file.

Every problem is a :class:`TaskError` (a :class:`~gepetto.errors.ConfigError`) with a
one-line message naming the file and what to change; nothing is optimized before the whole
file is read.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import sys
import tomllib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from gepetto.api import aoptimize
from gepetto.engine.options import GepettoOptions
from gepetto.errors import ConfigError

__all__ = [
    "OPTION_NAMES",
    "Task",
    "TaskError",
    "check_option_names",
    "load_task",
    "yaml_available",
]

_INPUTS = ("seed_candidate", "trainset", "valset", "adapter", "task_lm", "evaluator")
OPTION_NAMES = frozenset(
    name
    for name in [*inspect.signature(aoptimize).parameters, *GepettoOptions.__annotations__]
    if name not in (*_INPUTS, "reflection_lm", "options", "config")
)
"""The keywords a task's ``options`` may hold (every :func:`gepetto.optimize` keyword but
the inputs, ``reflection_lm`` and ``config``)."""


class TaskError(ConfigError):
    """A task file cannot be used (missing, unreadable, a missing or wrong name)."""


def yaml_available() -> bool:
    """Whether YAML task files can be read (PyYAML is installed)."""
    return importlib.util.find_spec("yaml") is not None


@dataclass
class Task:
    """A loaded task: the inputs and options of one :func:`gepetto.optimize` call."""

    path: Path
    seed_candidate: Mapping[str, str]
    trainset: Any
    valset: Any = None
    adapter: Any = None
    task_lm: Any = None
    evaluator: Any = None
    reflection_lm: Any = None
    options: dict[str, Any] = field(default_factory=dict)
    testset: Any = None


def load_task(path: str | Path) -> Task:
    """Load a task file (see the module docstring).

    Raises:
        TaskError: the file is missing, of an unknown kind, or not a valid task.
    """
    task_path = Path(path)
    if not task_path.is_file():
        what = "is a folder" if task_path.is_dir() else "does not exist"
        raise TaskError(f"task file {task_path} {what}: pass a .py, .toml or .yaml task file")
    suffix = task_path.suffix.lower()
    if suffix == ".py":
        values = _python_values(task_path)
    elif suffix == ".toml":
        values = _toml_values(task_path)
    elif suffix in (".yaml", ".yml"):
        values = _yaml_values(task_path)
    else:
        raise TaskError(
            f"task file {task_path} has an unknown kind ({suffix or 'no suffix'}): use .py, "
            ".toml" + (", .yaml or .yml" if yaml_available() else " (YAML needs PyYAML)")
        )
    return _task(task_path, values)


def _python_values(path: Path) -> dict[str, Any]:
    module = _run_module(path)
    names = (*_INPUTS, "reflection_lm", "options", "testset")
    return {name: getattr(module, name) for name in names if hasattr(module, name)}


def _run_module(path: Path) -> ModuleType:
    name = f"gepetto_task_{path.stem}_{uuid.uuid4().hex[:8]}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise TaskError(f"task file {path} cannot be loaded as a Python module")
    module = importlib.util.module_from_spec(spec)
    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except ConfigError:
        raise
    except Exception as error:
        raise TaskError(
            f"task file {path} raised {type(error).__name__}: {_one_line(error)}"
        ) from error
    finally:
        if sys.path and sys.path[0] == folder:
            sys.path.pop(0)
    return module


def _toml_values(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            data = tomllib.load(file)
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise TaskError(f"task file {path} is not valid TOML: {_one_line(error)}") from None
    return _resolve_declared(path, data)


def _yaml_values(path: Path) -> dict[str, Any]:
    if not yaml_available():
        raise TaskError(
            f"task file {path} is YAML, but PyYAML is not installed: pip install pyyaml, or "
            "write the task as TOML"
        )
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise TaskError(f"task file {path} is not valid YAML: {_one_line(error)}") from None
    if not isinstance(data, dict):
        raise TaskError(f"task file {path} must hold a mapping of names (seed_candidate, ...)")
    return _resolve_declared(path, data)


_DECLARED = {*_INPUTS, "reflection_lm", "options", "testset"}


def _resolve_declared(path: Path, data: Mapping[str, Any]) -> dict[str, Any]:
    """A TOML/YAML task's values: datasets loaded, references imported."""
    unknown = sorted(set(data) - _DECLARED)
    if unknown:
        raise TaskError(
            f"task file {path}: unknown key {unknown[0]!r}; the keys are "
            f"{', '.join(sorted(_DECLARED))} (optimize keywords go under [options])"
        )
    values: dict[str, Any] = dict(data)
    for name in ("trainset", "valset", "testset"):
        if isinstance(values.get(name), str):
            values[name] = _dataset_file(path, name, values[name])
    for name in ("adapter", "evaluator"):
        if name in values:
            values[name] = _reference(path, name, values[name])
    for name in ("task_lm", "reflection_lm"):
        if name in values and not isinstance(values[name], str):
            raise TaskError(
                f"task file {path}: {name} must be a model string such as "
                "'local/qwen2.5-coder-0.5b'"
            )
    return values


def _dataset_file(task: Path, name: str, value: str) -> list[Any]:
    file = (task.parent / value).resolve()
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as error:
        raise TaskError(
            f"task file {task}: {name} = {value!r} cannot be read ({error.strerror or error})"
        ) from None
    try:
        if file.suffix.lower() == ".jsonl":
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            rows = json.loads(text)
    except ValueError as error:
        raise TaskError(f"task file {task}: {name} file {file} is not JSON: {error}") from None
    if not isinstance(rows, list):
        raise TaskError(f"task file {task}: {name} file {file} must hold a list of examples")
    return rows


def _reference(task: Path, name: str, value: object) -> Any:
    """The object named by ``"module:attr"`` or ``"file.py:attr"``; ``"...:attr()"`` calls
    it without arguments (a factory or a class) and uses what it returns."""
    if not isinstance(value, str) or ":" not in value:
        raise TaskError(
            f"task file {task}: {name} must be 'module:attribute' or 'file.py:attribute' "
            f"(add () to call it), got {value!r}"
        )
    where, _, attribute = value.rpartition(":")
    call = attribute.endswith("()")
    attribute = attribute.removesuffix("()")
    if where.endswith(".py"):
        module = _run_module((task.parent / where).resolve())
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as error:
            raise TaskError(f"task file {task}: {name} = {value!r}: {error}") from None
    target: Any = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise TaskError(f"task file {task}: {name} = {value!r}: {where} has no {attribute}")
        target = getattr(target, part)
    if call:
        try:
            target = target()
        except Exception as error:
            raise TaskError(
                f"task file {task}: {name} = {value!r} raised {type(error).__name__}: "
                f"{_one_line(error)}"
            ) from error
    return target


def _task(path: Path, values: Mapping[str, Any]) -> Task:
    for name in ("seed_candidate", "trainset"):
        if values.get(name) is None:
            raise TaskError(f"task file {path} does not define {name}")
    seed = values["seed_candidate"]
    if not isinstance(seed, Mapping) or not seed:
        raise TaskError(
            f"task file {path}: seed_candidate must map component names to texts, "
            "e.g. {'instructions': '...'}"
        )
    options = values.get("options") or {}
    if not isinstance(options, Mapping):
        raise TaskError(f"task file {path}: options must be a dict of optimize keywords")
    check_option_names(options, f"task file {path}: options")
    return Task(
        path=path,
        seed_candidate=dict(seed),
        trainset=values["trainset"],
        valset=values.get("valset"),
        adapter=values.get("adapter"),
        task_lm=values.get("task_lm"),
        evaluator=values.get("evaluator"),
        reflection_lm=values.get("reflection_lm"),
        options=dict(options),
        testset=values.get("testset"),
    )


def check_option_names(options: Mapping[str, Any], where: str) -> None:
    """Refuse an option that is not an optimize keyword, naming the closest one."""
    import difflib

    for name in options:
        if name not in OPTION_NAMES:
            close = difflib.get_close_matches(str(name), sorted(OPTION_NAMES), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise TaskError(f"{where}: {name!r} is not an optimize keyword{hint}")


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= 300 else text[:297] + "..."
