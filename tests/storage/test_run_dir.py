"""Bad ``run_dir`` values are refused with a ConfigError naming run_dir and what to pass,
before any adapter or LM call and without touching the file system around them."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import pytest

import gepetto
from gepetto.errors import ConfigError
from gepetto.testing import KeywordAdapter, ScriptedLM, keyword_dataset
from tests.hostile.unprivileged import as_nobody, shared_folder

TRAIN = keyword_dataset(["alpha", "beta", "gamma"])


def optimize(run_dir: Any, adapter: KeywordAdapter, lm: ScriptedLM) -> gepetto.Result:
    return gepetto.optimize(
        {"instructions": "Answer."},
        TRAIN,
        adapter=adapter,
        reflection_lm=lm,
        max_metric_calls=20,
        run_dir=run_dir,
        display_progress_bar=False,
    )


def refused(run_dir: Any) -> str:
    adapter, lm = KeywordAdapter(), ScriptedLM([])
    with pytest.raises(ConfigError) as caught:
        optimize(run_dir, adapter, lm)
    assert adapter.evaluate_calls == 0 and lm.calls == 0
    message = str(caught.value)
    assert "run_dir" in message
    return message


@pytest.mark.parametrize("value", [3, 2.5, b"runs/a", ["runs"], object()])
def test_a_run_dir_that_is_not_a_path_is_refused(
    value: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert "must be a str or pathlib.Path" in refused(value)
    assert list(tmp_path.iterdir()) == []


def test_an_empty_run_dir_is_refused_and_the_current_folder_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for value in ("", "   "):
        assert "is empty; pass a folder path" in refused(value)
    assert list(tmp_path.iterdir()) == []


def test_a_run_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("mine")
    assert "is a file, not a folder" in refused(path)
    assert path.read_text() == "mine"


def test_a_run_dir_under_a_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("mine")
    message = refused(str(path / "run"))
    assert f"{str(path)!r} is a file, not a folder" in message


def test_a_run_dir_holding_a_nul_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert "NUL" in refused("runs/a\0b")


def test_an_unwritable_run_dir_is_refused() -> None:
    with shared_folder() as folder:
        locked = folder / "locked"
        locked.mkdir()
        locked.chmod(0o555)

        def attempt(run_dir: Path) -> str:
            adapter, lm = KeywordAdapter(), ScriptedLM([])
            try:
                optimize(run_dir, adapter, lm)
            except ConfigError as error:
                return f"refused after {adapter.evaluate_calls + lm.calls} calls: {error}"
            return "not refused"

        for run_dir in (locked, locked / "run"):
            result = as_nobody(functools.partial(attempt, run_dir))
            assert "refused after 0 calls: run_dir=" in result, result
            assert "cannot be used (Permission denied)" in result
        assert os.listdir(locked) == []
