"""The public surface: __all__ sorted, complete and importable."""

from __future__ import annotations

import gepetto


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


def test_every_error_derives_from_the_root() -> None:
    for name in gepetto.__all__:
        value = getattr(gepetto, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, gepetto.GepettoError), name
