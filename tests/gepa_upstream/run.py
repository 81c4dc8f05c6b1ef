"""Run gepa 0.1.4's own tests against gepetto and compare with the recorded outcomes.

gepa's test files come from its source distribution on PyPI (``scripts/fetch-gepa-tests``,
sha256-pinned; gepetto never depends on gepa, and the real gepa that DSPy brings into the
test venv is shadowed by the alias). They run in a separate pytest process with
:mod:`gepetto.gepa_alias` installed (``alias_plugin``), so ``import gepa`` is gepetto, in a
scratch copy beside :mod:`.gepa_conftest`. No provider key is passed on and every request
not addressed to 127.0.0.1 goes to a closed local port.

``outcomes.json`` records, for every test, ``"passed"`` or why it does not pass; files that
are not run at all are listed with the reason in :data:`NOT_RUN`. Print the current table,
or record it after a change you checked, with::

    .venv/bin/python -m tests.gepa_upstream.run            # compare
    .venv/bin/python -m tests.gepa_upstream.run --record   # rewrite passed/failed, keep reasons
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

from tests.lm.isolation import CLOSED_PORT_PROXY

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
OUTCOMES = HERE / "outcomes.json"

NOT_RUN = {
    "test_best_example_evals.py": "calls a hosted model (openrouter/openai/gpt-4.1-nano)",
    "test_cache_evaluation_storage.py": "calls a hosted model (openrouter/openai/gpt-4.1-nano)",
    "test_refiner.py": "calls a hosted model (openrouter/openai/gpt-5-nano)",
}
"""gepa test files that are never run here, and why (tests use no network)."""

_PROVIDER_KEYS = ("_API_KEY", "_BASE_URL", "_AUTH_TOKEN", "_CUSTOM_HEADERS", "_ORG_ID")


def gepa_tests_dir() -> Path:
    """The folder ``scripts/fetch-gepa-tests`` extracted gepa's tests into."""
    default = Path.home() / ".cache" / "gepetto" / "gepa-0.1.4-tests"
    folder = Path(os.environ.get("GEPETTO_GEPA_TESTS", default))
    if not (folder / ".complete").is_file():
        raise FileNotFoundError(
            f"gepa 0.1.4's tests are not in {folder}; run scripts/fetch-gepa-tests (make test "
            "does) or set GEPETTO_GEPA_TESTS"
        )
    return folder


def isolated_env() -> dict[str, str]:
    """This process's environment without provider credentials, all traffic kept local."""
    env = {k: v for k, v in os.environ.items() if not k.endswith(_PROVIDER_KEYS)}
    closed = CLOSED_PORT_PROXY
    env.update(
        HTTP_PROXY=closed,
        HTTPS_PROXY=closed,
        ALL_PROXY=closed,
        http_proxy=closed,
        https_proxy=closed,
        all_proxy=closed,
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
        HF_HUB_OFFLINE="1",
        WANDB_MODE="offline",
        MLFLOW_DISABLE_TELEMETRY="true",
        ANONYMIZED_TELEMETRY="False",
        DO_NOT_TRACK="1",
        PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(HERE)]),
    )
    env.pop("GEPETTO_NO_SKIPS", None)
    return env


def run_gepa_tests(timeout_s: float = 900) -> dict[str, tuple[str, str]]:
    """Run every gepa test file not in :data:`NOT_RUN`; ``{test id: (outcome, message)}``.

    The outcome is ``"passed"``, ``"failed"``, ``"error"`` (collection or fixture error) or
    ``"skipped"``, the message pytest's one-line reason for anything but a pass; a test id
    is ``file.py::Class::test`` as pytest prints it, or ``file.py`` when the file could not
    be imported.
    """
    source = gepa_tests_dir()
    with tempfile.TemporaryDirectory(prefix="gepa-tests-") as scratch:
        work = Path(scratch) / "tests"
        shutil.copytree(source, work, ignore=shutil.ignore_patterns(".complete", *NOT_RUN))
        shutil.copy(HERE / "gepa_conftest.py", work / "conftest.py")
        report = Path(scratch) / "report.xml"
        command = [
            *(sys.executable, "-m", "pytest", "-p", "alias_plugin", "-p", "no:cacheprovider"),
            *("-c", str(HERE / "upstream.ini"), "--rootdir", str(work), "--timeout", "120"),
            *("-q", "--continue-on-collection-errors", f"--junitxml={report}", str(work)),
        ]
        env = isolated_env()
        run = subprocess.run  # the exit status is in the report: failures are expected
        run(command, check=False, cwd=work, env=env, timeout=timeout_s, capture_output=True)
        return _outcomes(report)


def _outcomes(report: Path) -> dict[str, tuple[str, str]]:
    outcomes: dict[str, tuple[str, str]] = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        module, name = case.get("classname", ""), case.get("name", "")
        problems = {child.tag: _message(child) for child in case}
        message = next(iter(problems.values()), "")
        if not module:  # the whole file was skipped or failed to import
            skipped = "collection skipped" in "".join(c.get("message", "") for c in case)
            outcomes[f"{name.split('.')[-1]}.py"] = ("skipped" if skipped else "error", message)
            continue
        parts = module.split(".")
        first = next(i for i, part in enumerate(parts) if part.startswith("test_"))
        test_id = "::".join([f"{parts[first]}.py", *parts[first + 1 :], name])
        for tag, outcome in (("error", "error"), ("failure", "failed"), ("skipped", "skipped")):
            if tag in problems:
                outcomes[test_id] = (outcome, problems[tag])
                break
        else:
            outcomes[test_id] = ("passed", "")
    return outcomes


def _message(element: ET.Element) -> str:
    """pytest's reason: the last ``E`` line of the report (the exception), else its message."""
    lines = [line[1:].strip() for line in (element.text or "").splitlines() if line[:1] == "E"]
    return lines[-1] if lines else element.get("message", "")


def load_expected() -> dict[str, dict[str, str]]:
    """``outcomes.json``: ``{test id: {"outcome": ..., "why": ...}}``."""
    data: dict[str, dict[str, str]] = json.loads(OUTCOMES.read_text())
    return data


def record(actual: dict[str, tuple[str, str]]) -> None:
    """Rewrite ``outcomes.json`` with ``actual``, keeping the reasons already written.

    A new gap gets ``"TODO: "`` and pytest's message as its reason, for a person to explain.
    """
    old = load_expected() if OUTCOMES.exists() else {}
    new: dict[str, dict[str, str]] = {}
    for test_id, (outcome, message) in sorted(actual.items()):
        entry = {"outcome": outcome}
        if outcome != "passed":
            known = old.get(test_id, {})
            kept = known.get("why") if known.get("outcome") == outcome else None
            entry["why"] = kept or f"TODO: {message.splitlines()[0] if message else ''}"[:300]
        new[test_id] = entry
    OUTCOMES.write_text(json.dumps(new, indent=1, sort_keys=True) + "\n")


def main(argv: list[str]) -> int:
    actual = run_gepa_tests()
    if "--record" in argv:
        record(actual)
    counts: dict[str, int] = {}
    for test_id, (outcome, message) in sorted(actual.items()):
        counts[outcome] = counts.get(outcome, 0) + 1
        print(f"{outcome:8} {test_id}  {message.splitlines()[0][:120] if message else ''}")
    print(", ".join(f"{n} {o}" for o, n in sorted(counts.items())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
