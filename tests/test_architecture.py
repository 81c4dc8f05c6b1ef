"""The shape of the package: no import cycles (the layers are checked by ``lint-imports``).

Function-level imports count (imports under ``TYPE_CHECKING`` do not): a cycle hidden
inside a function still ties two modules together, and it is how both earlier cycles
(``lm._models`` and ``lm.local``; ``observe`` reading ``gepetto.__version__`` through
``api``) were written.
"""

from __future__ import annotations

from pathlib import Path

import grimp
import pytest


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    modules = sorted(graph.modules)
    edges = {
        m: sorted(set(graph.find_modules_directly_imported_by(m)) & set(modules)) for m in modules
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in modules:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, child = work.pop()
            if child == 0:
                index[node] = low[node] = len(index)
                stack.append(node)
                on_stack.add(node)
            for position in range(child, len(edges[node])):
                target = edges[node][position]
                if target not in index:
                    work.append((node, position + 1))
                    work.append((target, 0))
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            else:
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
    return found


def test_no_module_imports_itself_through_others() -> None:
    assert _cycles(grimp.build_graph("gepetto", exclude_type_checking_imports=True)) == []


def test_the_cycle_finder_finds_a_cycle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "cyclic_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("def f():\n    from cyclic_pkg import b\n")
    (package / "b.py").write_text("from cyclic_pkg import a\n")
    (package / "c.py").write_text("from cyclic_pkg import a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert _cycles(grimp.build_graph("cyclic_pkg", exclude_type_checking_imports=True)) == [
        ["cyclic_pkg.a", "cyclic_pkg.b"]
    ]


def test_the_tests_mirror_the_package() -> None:
    """Each test folder is named after a subpackage of ``gepetto`` (``hostile`` holds the
    hostile-input cases, ``fixtures`` their data, ``gepa_upstream`` runs gepa's own tests)."""
    tests = Path(__file__).parent
    package = tests.parent / "src" / "gepetto"
    folders = {p.name for p in tests.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))}
    subpackages = {p.name for p in package.iterdir() if (p / "__init__.py").is_file()}
    assert folders - {"hostile", "fixtures", "gepa_upstream"} <= subpackages
