"""``import gepa`` served by gepetto: gepa 0.1.4's module paths, mapped to gepetto's modules.

``import gepetto as gepa`` covers code you write. Code you do not control (a library built on
gepa, a notebook, gepa's own tests) imports ``gepa`` and its submodules by name, such as
``from gepa.core.adapter import EvaluationBatch``. :func:`install` puts an import hook in
front of :data:`sys.meta_path` so that those imports resolve to gepetto:

- ``gepa`` itself and the packages on the way to a mapped module (``gepa.core``,
  ``gepa.proposer``, ...) are small alias packages whose attributes come from gepetto
  (``gepa.optimize`` is :func:`gepetto.optimize`);
- every module in :data:`GEPA_MODULES` is the gepetto module named there, the same object
  (so ``unittest.mock.patch("gepa.core.result.X")`` patches gepetto's module);
- any other ``gepa.*`` name is one of gepa's internals with no gepetto counterpart and
  raises :class:`ModuleNotFoundError` naming the migration guide.

The hook shadows a real ``gepa`` installation for as long as it is installed; :func:`uninstall`
removes it and the aliased entries of :data:`sys.modules`.

Example:
    >>> import gepetto.gepa_alias
    >>> gepetto.gepa_alias.install()
    >>> from gepa.core.adapter import EvaluationBatch
    >>> import gepetto
    >>> EvaluationBatch is gepetto.EvaluationBatch
    True
    >>> import gepa.core.engine  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ModuleNotFoundError: gepa.core.engine is internal to gepa and has no gepetto counterpart; ...
    >>> gepetto.gepa_alias.uninstall()
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
from collections.abc import Sequence
from typing import Any

__all__ = ["GEPA_MODULES", "install", "installed", "uninstall"]

GEPA_MODULES: dict[str, str] = {
    "gepa.api": "gepetto.api",
    "gepa.optimize_anything": "gepetto.optimize_anything",
    "gepa.core.adapter": "gepetto.adapter",
    "gepa.core.callbacks": "gepetto.gepa_callbacks",
    "gepa.core.data_loader": "gepetto.types",
    "gepa.core.result": "gepetto.result",
    "gepa.core.state": "gepetto.gepa_state",
    "gepa.strategies.batch_sampler": "gepetto.strategies.gepa_batch_sampler",
    "gepa.strategies.eval_policy": "gepetto.strategies.gepa_eval_policy",
    "gepa.adapters.default_adapter.default_adapter": "gepetto.adapters.default",
    "gepa.adapters.optimize_anything_adapter.optimize_anything_adapter": (
        "gepetto.adapters.evaluator_wrappers"
    ),
    "gepa.image": "gepetto.image",
    "gepa.strategies.instruction_proposal": "gepetto.proposers.prompts",
    "gepa.strategies.proposal_sampling": "gepetto.strategies.proposal_sampling",
    "gepa.strategies.proposal_selection": "gepetto.strategies.proposal_selection",
    "gepa.utils": "gepetto.utils",
    "gepa.utils.stdio_capture": "gepetto.adapters.side_info",
    "gepa.utils.stop_condition": "gepetto.utils.stop_condition",
    "gepa.visualization": "gepetto.visualization",
}
"""gepa 0.1.4 module -> the gepetto module that serves it (see docs/migrating-from-gepa.md)."""

_PACKAGES = frozenset(
    parent
    for name in GEPA_MODULES
    for parent in (".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1))
)
"""The alias packages: every prefix of a mapped module that is not itself mapped."""

_GUIDE = "docs/migrating-from-gepa.md"


class _AliasPackage(types.ModuleType):
    """``gepa`` or one of its intermediate packages: attributes fall through to gepetto."""

    def __getattr__(self, name: str) -> Any:
        if self.__name__ == "gepa":
            import gepetto

            try:
                return getattr(gepetto, name)
            except AttributeError:
                pass
        child = f"{self.__name__}.{name}"
        if child in GEPA_MODULES or child in _PACKAGES:
            return importlib.import_module(child)
        raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")


class _AliasLoader(importlib.abc.Loader):
    """Hands out the alias package or the mapped gepetto module for one ``gepa`` name."""

    def __init__(self) -> None:
        self._specs: dict[str, importlib.machinery.ModuleSpec | None] = {}

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        target = GEPA_MODULES.get(spec.name)
        if target is not None:
            module = importlib.import_module(target)
            self._specs[spec.name] = module.__spec__
            return module
        package = _AliasPackage(spec.name, f"gepetto's alias of gepa's {spec.name!r}")
        package.__path__ = []
        return package

    def exec_module(self, module: types.ModuleType) -> None:
        """Nothing to run; give a gepetto module back its own ``__spec__``.

        The import system stamps the alias spec on the module it was handed; gepetto's
        module keeps its own, so ``importlib.reload`` and pickling by name still work.
        """
        name = module.__spec__.name if module.__spec__ is not None else ""
        if name in self._specs:
            module.__spec__ = self._specs.pop(name)


class _GepaFinder(importlib.abc.MetaPathFinder):
    """The import hook: claims ``gepa`` and every ``gepa.*`` name."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: types.ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != "gepa" and not fullname.startswith("gepa."):
            return None
        if fullname == "gepa" or fullname in _PACKAGES:
            return importlib.machinery.ModuleSpec(fullname, _LOADER, is_package=True)
        if fullname in GEPA_MODULES:
            return importlib.machinery.ModuleSpec(fullname, _LOADER)
        raise ModuleNotFoundError(
            f"{fullname} is internal to gepa and has no gepetto counterpart; see {_GUIDE} "
            "for what to use instead",
            name=fullname,
        )


_LOADER = _AliasLoader()
_FINDER = _GepaFinder()


def install() -> None:
    """Make ``import gepa`` (and its mapped submodules) resolve to gepetto; idempotent.

    Raises:
        ImportError: a real ``gepa`` was already imported in this process (its objects
            would mix with gepetto's); install the alias before anything imports gepa.
    """
    if _FINDER in sys.meta_path:
        return
    loaded = sys.modules.get("gepa")
    if loaded is not None and not isinstance(loaded, _AliasPackage):
        raise ImportError(
            "the real gepa package is already imported; call gepetto.gepa_alias.install() "
            "before anything imports gepa"
        )
    sys.meta_path.insert(0, _FINDER)


def installed() -> bool:
    """Whether :func:`install` is in effect."""
    return _FINDER in sys.meta_path


def uninstall() -> None:
    """Remove the import hook and forget every ``gepa`` module it served."""
    if _FINDER in sys.meta_path:
        sys.meta_path.remove(_FINDER)
    for name in [n for n in sys.modules if n == "gepa" or n.startswith("gepa.")]:
        del sys.modules[name]
