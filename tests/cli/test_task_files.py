"""Task files of ``gepetto optimize``: Python, TOML and YAML, and their one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gepetto.adapters import DefaultAdapter
from gepetto.cli._task import OPTION_NAMES, TaskError, load_task, yaml_available
from gepetto.testing import KeywordAdapter

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_the_example_task_files_load() -> None:
    python = load_task(EXAMPLES / "task_keywords.py")
    assert python.seed_candidate == {"instructions": "Answer the question."}
    assert isinstance(python.adapter, KeywordAdapter) and len(python.valset) == 8
    assert python.options["max_metric_calls"] == 80
    toml = load_task(EXAMPLES / "task_ticket_routing.toml")
    assert toml.task_lm == "local/qwen2.5-coder-0.5b"
    assert len(toml.trainset) == 10 and toml.trainset[0]["answer"]
    assert callable(toml.evaluator)  # exact_match_evaluator() was called
    assert toml.evaluator({"answer": "billing"}, "Billing").score == 1.0
    assert toml.options["reflection_lm_kwargs"] == {"temperature": 0.7, "max_tokens": 400}


def test_yaml_is_read_when_pyyaml_is_installed(tmp_path: Path) -> None:
    assert yaml_available()  # installed in dev (through dspy); the docs say it is optional
    (tmp_path / "val.json").write_text(json.dumps([{"input": "a", "answer": "b"}]))
    (tmp_path / "helpers.py").write_text(
        "from gepetto.adapters import DefaultAdapter\n"
        "def make():\n    return DefaultAdapter(lambda messages: 'b')\n"
    )
    path = tmp_path / "task.yaml"
    path.write_text(
        "seed_candidate: {instructions: Say b.}\n"
        "trainset: [{input: a, answer: b}]\n"
        "valset: val.json\n"
        "adapter: helpers.py:make()\n"
        "reflection_lm: local/qwen2.5-coder-1.5b\n"
        "options: {max_metric_calls: 5}\n"
    )
    task = load_task(path)
    assert isinstance(task.adapter, DefaultAdapter)
    assert task.valset == [{"input": "a", "answer": "b"}]
    assert task.reflection_lm == "local/qwen2.5-coder-1.5b"


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("t.toml", "seed_candidate = 3\ntrainset = []\n", "seed_candidate must map"),
        ("t.toml", "seed_candidate = {a = 'b'}\n", "does not define trainset"),
        ("t.toml", "seed_candidate = {a = 'b'}\ntrainset = [1]\nmodel = 'x'\n", "unknown key"),
        ("t.toml", "seed_candidate = {a = 'b'\n", "not valid TOML"),
        (
            "t.toml",
            "seed_candidate = {a = 'b'}\ntrainset = [1]\nevaluator = 'json:nothing'\n",
            "json has no nothing",
        ),
        (
            "t.toml",
            "seed_candidate = {a = 'b'}\ntrainset = [1]\nadapter = 'no_such_module_x:A'\n",
            "No module named",
        ),
        (
            "t.toml",
            "seed_candidate = {a = 'b'}\ntrainset = [1]\n[options]\nmax_metric_call = 3\n",
            "did you mean 'max_metric_calls'",
        ),
        ("t.py", "seed_candidate = {'a': 'b'}\ntrainset = [1]\noptions = 3\n", "must be a dict"),
        ("t.py", "import no_such_module_y\n", "ModuleNotFoundError"),
        ("t.json", "{}", "unknown kind"),
    ],
)
def test_bad_task_files_say_what_to_change(
    tmp_path: Path, name: str, text: str, message: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(TaskError, match=message) as caught:
        load_task(path)
    assert "\n" not in str(caught.value)


def test_options_are_the_optimize_keywords() -> None:
    assert {"max_metric_calls", "max_cost_usd", "run_id", "reflection_minibatch_size"} <= (
        OPTION_NAMES
    )
    assert not {"seed_candidate", "trainset", "adapter", "reflection_lm"} & OPTION_NAMES


def test_importing_gepetto_imports_no_typer() -> None:
    code = "import sys, gepetto, gepetto.runview; print('typer' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "False"
