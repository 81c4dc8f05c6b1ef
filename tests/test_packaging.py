"""The distributions: ``python -m build`` makes an sdist and a wheel that install and work.

The sdist is built from the work tree, a wheel is built again from the unpacked sdist (so the
sdist holds everything a build needs), and that wheel is installed into a fresh virtual
environment without the work tree on the path and without any index (gepetto's core has no
dependencies). A smoke script there runs a real optimization with a scripted reflection model
and checks the packaged data files.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import textwrap
import venv
import zipfile
from pathlib import Path

import pytest

import gepetto

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent

SMOKE = textwrap.dedent(
    """
    import importlib.resources, pathlib, sys
    import gepetto
    from gepetto.testing import ScriptedLM

    here = pathlib.Path(gepetto.__file__).resolve()
    assert "site-packages" in str(here), here
    assert importlib.resources.files("gepetto").joinpath("py.typed").is_file()

    reply = ScriptedLM(["```\\na much longer text than before\\n```"], repeat_last=True)

    def evaluate(candidate: str) -> float:
        return min(len(candidate), 20) / 20

    result = gepetto.optimize_anything(
        "short",
        evaluator=evaluate,
        objective="Make the text longer.",
        config=gepetto.GEPAConfig(
            engine=gepetto.EngineConfig(max_metric_calls=6),
            reflection=gepetto.ReflectionConfig(reflection_lm=reply),
        ),
    )
    assert result.best_candidate == "a much longer text than before", result.best_candidate
    print("smoke ok", gepetto.__version__)
    """
)


def build(args: list[str], source: Path, outdir: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", *args, "--outdir", str(outdir)],
        cwd=source,
        check=True,
        capture_output=True,
        timeout=300,
    )
    (built,) = outdir.iterdir()
    return built


def test_sdist_and_wheel_install_in_a_fresh_venv(tmp_path: Path) -> None:
    sdist = build(["--sdist"], ROOT, tmp_path / "sdist")
    assert sdist.name == f"gepetto-{gepetto.__version__}.tar.gz"
    with tarfile.open(sdist) as archive:
        names = archive.getnames()
        archive.extractall(tmp_path / "unpacked", filter="data")
    top = f"gepetto-{gepetto.__version__}"
    for required in ("pyproject.toml", "README.md", "LICENSE", "src/gepetto/__init__.py"):
        assert f"{top}/{required}" in names, required

    wheel = build(["--wheel"], tmp_path / "unpacked" / top, tmp_path / "wheel")
    with zipfile.ZipFile(wheel) as archive:
        members = set(archive.namelist())
    assert "gepetto/py.typed" in members
    assert not any(name.startswith(("tests/", "bench/")) for name in members)

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-index", "--no-deps", str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    smoke = subprocess.run(
        [str(python), "-c", SMOKE],
        check=False,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert smoke.returncode == 0, smoke.stderr
    assert smoke.stdout.strip() == f"smoke ok {gepetto.__version__}"
