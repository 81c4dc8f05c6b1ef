"""The public surface: __all__ sorted, complete and importable."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re

import gepetto
import gepetto.errors


def test_all_is_sorted_and_importable() -> None:
    names = list(gepetto.__all__)
    # isort style, as ruff's RUF022 enforces: CONSTANTS, then Classes, then functions.
    assert names == sorted(
        names, key=lambda n: (0 if n.isupper() else 1 if n[0].isupper() else 2, n)
    )
    assert len(set(names)) == len(names)
    for name in names:
        assert hasattr(gepetto, name), name


def test_public_names_are_exported() -> None:
    public = {
        name
        for name, value in vars(gepetto).items()
        if not name.startswith("_") and not isinstance(value, type(gepetto))
    }
    assert public <= set(gepetto.__all__)


def _exception_classes() -> dict[type[BaseException], str]:
    """Every exception class defined in any module of the package, with its module."""
    found: dict[type[BaseException], str] = {}
    for info in pkgutil.walk_packages(gepetto.__path__, "gepetto."):
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, BaseException)
                and value.__module__ == info.name
            ):
                found[value] = info.name
    return found


def test_every_error_of_every_module_derives_from_the_root() -> None:
    classes = _exception_classes()
    assert len(classes) > 20  # the walk really reached the submodules
    outside = [
        f"{module}.{cls.__name__}"
        for cls, module in classes.items()
        if not issubclass(cls, gepetto.GepettoError)
    ]
    assert outside == []


def test_the_error_tree_in_errors_py_names_every_public_error() -> None:
    drawing = (gepetto.errors.__doc__ or "").split("::", 1)[1].strip("\n").split("\n\n")[0]
    drawn = {re.sub(r"^[\s│├└─]*", "", line).split()[0] for line in drawing.splitlines()}
    public = {cls.__name__ for cls in _exception_classes() if not cls.__name__.startswith("_")}
    assert drawn == public


def test_positional_arguments_follow_gepa() -> None:
    gepa_order = [
        "seed_candidate",
        "trainset",
        "valset",
        "adapter",
        "task_lm",
        "evaluator",
        "reflection_lm",
    ]
    for function in (gepetto.optimize, gepetto.aoptimize):
        names = list(inspect.signature(function).parameters)
        assert names[: len(gepa_order)] == gepa_order, function.__name__


def test_an_evaluator_passed_by_position_scores_the_default_adapter() -> None:
    from gepetto.adapters import exact_match_evaluator
    from gepetto.testing import ScriptedLM

    def task_lm(messages: list[dict[str, str]]) -> str:
        return "yes" if "yes" in messages[0]["content"] else "no"

    data = [{"input": "Say it.", "answer": "yes"}] * 2
    result = gepetto.optimize(
        {"instructions": "Answer."},
        data,
        data,
        None,
        task_lm,
        exact_match_evaluator(),
        ScriptedLM(["```\nAlways answer yes\n```"]),
        max_metric_calls=12,
    )
    assert result.best_score == 1.0
