"""Images in side information survive a resume: journaled as data, restored as images.

A run whose evaluator returns :class:`~gepetto.image.Image` objects (base64, URL and file
path) is interrupted inside a reflection and resumed on its ``run_dir``; the reflection
model (a plain callable, which receives message lists) must get the same messages as in an
uninterrupted run, images as content parts, and the resumed run must not evaluate again
what its journal holds.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from gepetto import EngineConfig, GEPAConfig, ReflectionConfig
from gepetto.engine.steps import jsonable_or_none
from gepetto.image import IMAGE_TAG, Image, image_from_data, image_to_data, restore_images
from gepetto.optimize_anything import optimize_anything

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC"


class Interrupted(BaseException):
    """Stands for a crash: not an ``Exception``, so nothing in the run catches it."""


class ReflectionModel:
    """Records each prompt; the reply is a function of the prompt's text alone."""

    def __init__(self, crash_at: int | None = None) -> None:
        self.prompts: list[Any] = []
        self.crash_at = crash_at

    def __call__(self, prompt: Any) -> str:
        self.prompts.append(prompt)
        if len(self.prompts) == self.crash_at:
            raise Interrupted
        text = prompt if isinstance(prompt, str) else prompt[0]["content"][0]["text"]
        digest = hashlib.sha256(text.encode()).hexdigest()[:4]
        return f"```\ndraw shape {digest}\n```"


def run(run_dir: Path, lm: ReflectionModel, files: Path, calls: list[int]) -> Any:
    def evaluator(candidate: str, example: int) -> tuple[float, dict[str, Any]]:
        calls.append(example)
        rendering = files / f"render-{example}.png"
        rendering.write_bytes(base64.b64decode(PNG) + bytes([example]))
        score = int(hashlib.sha256(f"{candidate}/{example}".encode()).hexdigest(), 16) % 7 / 10
        return score, {
            "Feedback": f"example {example}: too blue",
            "Rendering": Image(path=rendering),
            "Frames": [Image(base64_data=PNG, media_type="image/png")],
            "Target": {"image": Image(url=f"https://example.com/{example}.png")},
        }

    return optimize_anything(
        "draw shapes",
        evaluator=evaluator,
        dataset=list(range(6)),
        valset=[6, 7],
        config=GEPAConfig(
            engine=EngineConfig(max_metric_calls=40, run_dir=run_dir),
            reflection=ReflectionConfig(reflection_lm=lm, reflection_minibatch_size=3),
        ),
    )


def test_a_resumed_run_sends_the_images_an_uninterrupted_run_sends(tmp_path: Path) -> None:
    files = tmp_path / "files"
    files.mkdir()
    whole, whole_calls = ReflectionModel(), []
    expected = run(tmp_path / "whole", whole, files, whole_calls)
    assert len(whole.prompts) >= 4

    first, calls = ReflectionModel(crash_at=3), []
    with pytest.raises(Interrupted):
        run(tmp_path / "resumed", first, files, calls)
    for path in files.iterdir():
        path.unlink()  # the journal holds the renderings themselves, not their paths
    second = ReflectionModel()
    result = run(tmp_path / "resumed", second, files, calls)

    assert first.prompts[:-1] + second.prompts == whole.prompts
    assert result.best_candidate == expected.best_candidate
    assert result.total_metric_calls == expected.total_metric_calls
    assert sorted(calls) == sorted(whole_calls)  # nothing journaled was evaluated again
    [message] = second.prompts[0]
    parts = message["content"]
    assert parts[0]["type"] == "text" and "[IMAGE-1" in parts[0]["text"]
    assert {part["type"] for part in parts[1:]} == {"image_url"}
    assert len(parts) > 3


def test_images_are_journaled_as_tagged_data(tmp_path: Path) -> None:
    png = tmp_path / "shot.jpg"
    png.write_bytes(base64.b64decode(PNG))
    by_path = image_to_data(Image(path=png))
    assert by_path == {IMAGE_TAG: {"base64_data": PNG, "media_type": "image/jpeg"}}
    assert image_from_data(by_path).data_url() == Image(path=png).data_url()  # type: ignore[union-attr]
    gone = tmp_path / "gone.png"
    assert image_to_data(Image(path=gone)) == {IMAGE_TAG: {"path": str(gone)}}
    url = Image(url="https://x/a.png", media_type="image/png")
    assert restore_images(image_to_data(url)) == url

    side_info = [
        {"Score": 0.5, "Shots": [url, {"deep": Image(base64_data="AA", media_type="a/b")}]}
    ]
    journaled = jsonable_or_none(side_info)
    assert journaled is not None and json.loads(json.dumps(journaled)) == journaled
    assert restore_images(journaled) == side_info
    # Anything else that is not JSON is still not journaled; nor is data using the tag.
    assert jsonable_or_none([{"x": object(), "image": url}]) is None
    assert jsonable_or_none([{IMAGE_TAG: {"url": "https://x"}}]) is None
    assert jsonable_or_none([{"note": f'"{IMAGE_TAG}": is only text'}]) is not None
    assert image_from_data({IMAGE_TAG: {"url": "a", "base64_data": "b"}}) is None
    assert image_from_data({IMAGE_TAG: {"colour": "red"}}) is None
