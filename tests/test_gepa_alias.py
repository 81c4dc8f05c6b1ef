"""``gepetto.gepa_alias``: ``import gepa`` served by gepetto, and undone."""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest

import gepetto
import gepetto.result
from gepetto import gepa_alias

GUIDE = Path(__file__).parent.parent / "docs" / "migrating-from-gepa.md"


@pytest.fixture
def alias() -> Iterator[None]:
    gepa_alias.uninstall()
    gepa_alias.install()
    yield
    gepa_alias.uninstall()


def test_gepa_and_its_mapped_modules_are_gepettos(alias: None) -> None:
    import gepa
    import gepa.core.result
    from gepa.core.adapter import EvaluationBatch
    from gepa.optimize_anything import optimize_anything

    assert gepa.optimize is gepetto.optimize
    assert EvaluationBatch is gepetto.EvaluationBatch
    assert gepa.core.result is gepetto.result
    assert callable(optimize_anything)
    for name, target in gepa_alias.GEPA_MODULES.items():
        assert importlib.import_module(name) is importlib.import_module(target)


def test_a_served_module_keeps_its_own_name_and_spec(alias: None) -> None:
    import gepa.core.result

    assert gepa.core.result.__name__ == "gepetto.result"
    assert gepetto.result.__spec__ is not None
    assert gepetto.result.__spec__.name == "gepetto.result"
    found = importlib.util.find_spec("gepetto.result")  # reads the module's own __spec__
    assert found is not None and found.origin == gepetto.result.__file__


def test_patching_through_gepas_path_patches_gepetto(alias: None) -> None:
    with mock.patch("gepa.visualization.candidate_tree_dot_from_data", return_value="X"):
        import gepetto.visualization

        assert gepetto.visualization.candidate_tree_dot_from_data() == "X"  # type: ignore[call-arg]


def test_an_internal_module_says_where_to_look(alias: None) -> None:
    with pytest.raises(ModuleNotFoundError, match=r"internal to gepa.*migrating-from-gepa\.md"):
        importlib.import_module("gepa.core.engine")


def test_the_alias_packages_do_not_touch_gepettos_attributes(alias: None) -> None:
    before = set(vars(gepetto))
    import gepa.core.state  # noqa: F401  (maps to gepetto.gepa_state, not gepetto.state)

    assert set(vars(gepetto)) == before
    assert isinstance(sys.modules["gepa.core"], types.ModuleType)
    assert gepetto.state.__name__ == "gepetto.state"


def test_install_is_idempotent_and_uninstall_forgets_everything() -> None:
    gepa_alias.install()
    gepa_alias.install()
    assert sum(type(f).__name__ == "_GepaFinder" for f in sys.meta_path) == 1
    importlib.import_module("gepa.core.adapter")
    gepa_alias.uninstall()
    assert not gepa_alias.installed()
    assert not [name for name in sys.modules if name == "gepa" or name.startswith("gepa.")]


def test_a_real_gepa_already_imported_is_refused() -> None:
    gepa_alias.uninstall()
    sys.modules["gepa"] = types.ModuleType("gepa")
    try:
        with pytest.raises(ImportError, match="before anything imports gepa"):
            gepa_alias.install()
    finally:
        del sys.modules["gepa"]
    assert not gepa_alias.installed()


def test_the_migration_guide_lists_every_served_module() -> None:
    rows = set(re.findall(r"^\| `(gepa[\w.]*)`(?:, `(gepa[\w.]*)`)? \|", GUIDE.read_text(), re.M))
    listed = {name for row in rows for name in row if name}
    assert listed == {"gepa", *gepa_alias.GEPA_MODULES}


def test_gepas_readme_example_of_optimize_anything_runs_as_written(alias: None) -> None:
    """gepa 0.1.4's README snippet, its imports unchanged; only the system and the
    reflection model (scripted) are ours."""
    import gepa.optimize_anything as oa
    from gepa.optimize_anything import EngineConfig, GEPAConfig, optimize_anything

    from gepetto.testing import ScriptedLM

    def run_my_system(candidate: str) -> tuple[float, str]:
        return float("sorted(" in candidate), "" if "sorted(" in candidate else "not sorted"

    def evaluate(candidate: str) -> float:
        score, error = run_my_system(candidate)
        oa.log(f"Output: {score}")
        oa.log(f"Error: {error}")
        return score

    result = optimize_anything(
        seed_candidate="return xs",
        evaluator=evaluate,
        objective="Describe what you want to optimize for.",
        config=GEPAConfig(
            engine=EngineConfig(max_metric_calls=10),
            reflection={"reflection_lm": ScriptedLM(["```\nreturn sorted(xs)\n```"])},
        ),
    )
    assert result.best_candidate == "return sorted(xs)"
