"""Images in side information reach a vision-capable reflection model, on the wire.

optimize_anything runs with gepetto's real OpenAI and Anthropic clients pointed at the
scripted :class:`FaultServer` on 127.0.0.1; the evaluator returns a
:class:`gepetto.image.Image` and the tests read the request bodies the server received:
OpenAI chat ``image_url`` parts, Anthropic ``image`` blocks, the ``[IMAGE-N]`` markers in
the text. Without images the prompt is the plain string it always was.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gepetto import ConfigError, EngineConfig, GEPAConfig, ReflectionConfig
from gepetto.image import Image, anthropic_image_block, image_message
from gepetto.lm.anthropic_client import AnthropicClient
from gepetto.lm.client import LMClient
from gepetto.lm.openai_client import OpenAIClient
from gepetto.lm.reliability import RetryPolicy
from gepetto.lm.spending import prompt_token_bound
from gepetto.optimize_anything import optimize_anything
from gepetto.proposers.prompts import reflection_images, render_reflection_prompt

from .fault_server import FaultServer, ok

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC"
REPLY = "```\ndraw a red circle\n```"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture
def server() -> Iterator[FaultServer]:
    with FaultServer() as fault_server:
        yield fault_server


def run_with(client: LMClient, side_info: dict[str, Any]) -> None:
    def evaluator(candidate: dict[str, str]) -> tuple[float, dict[str, Any]]:
        return (1.0 if "red" in candidate["instructions"] else 0.5), dict(side_info)

    optimize_anything(
        {"instructions": "draw shapes"},
        evaluator=evaluator,
        config=GEPAConfig(
            engine=EngineConfig(max_metric_calls=2),
            reflection=ReflectionConfig(reflection_lm=client),
        ),
    )


def options(server: FaultServer) -> dict[str, Any]:
    return {"api_key": "sk-test", "retry": RetryPolicy(max_attempts=1), "timeout": 5.0}


SIDE_INFO = {
    "Feedback": "the circle is blue",
    "Renderings": [Image(base64_data=PNG, media_type="image/png")],
    "Reference": {"target": Image(url="https://example.com/red.png")},
}


def test_openai_chat_gets_image_url_parts(server: FaultServer) -> None:
    server.play(ok(REPLY))
    client = OpenAIClient("gpt-fault", base_url=server.openai_base_url, **options(server))
    run_with(client, SIDE_INFO)
    [message] = server.requests[0].json["messages"]
    assert message["role"] == "user"
    text, first, second = message["content"]
    assert text["type"] == "text"
    assert "the circle is blue" in text["text"] and "draw shapes" in text["text"]
    assert "[IMAGE-1 — see visual content]" in text["text"]
    assert "[IMAGE-2 — see visual content]" in text["text"]
    assert "2 image(s)" in text["text"]
    assert first == {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}
    assert second == {"type": "image_url", "image_url": {"url": "https://example.com/red.png"}}


def test_anthropic_messages_get_image_blocks(server: FaultServer) -> None:
    server.play(ok(REPLY))
    client = AnthropicClient("claude-fault", base_url=server.url, **options(server))
    run_with(client, SIDE_INFO)
    [message] = server.requests[0].json["messages"]
    text, first, second = message["content"]
    assert text["type"] == "text" and "[IMAGE-2" in text["text"]
    assert first == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": PNG},
    }
    assert second == {
        "type": "image",
        "source": {"type": "url", "url": "https://example.com/red.png"},
    }


def test_without_images_the_prompt_is_a_plain_string(server: FaultServer) -> None:
    server.play(ok(REPLY))
    client = OpenAIClient("gpt-fault", base_url=server.openai_base_url, **options(server))
    run_with(client, {"Feedback": "the circle is blue"})
    [message] = server.requests[0].json["messages"]
    assert isinstance(message["content"], str)
    assert "IMAGE" not in message["content"]


def test_a_plain_callable_gets_a_list_of_messages() -> None:
    prompts: list[Any] = []

    def reflection_lm(prompt: Any) -> str:
        prompts.append(prompt)
        return REPLY

    optimize_anything(
        {"instructions": "draw shapes"},
        evaluator=lambda c: (0.5, {"Rendering": Image(base64_data=PNG, media_type="image/png")}),
        config=GEPAConfig(
            engine=EngineConfig(max_metric_calls=2),
            reflection=ReflectionConfig(reflection_lm=reflection_lm),
        ),
    )
    [[message]] = prompts
    assert message["content"][1]["image_url"]["url"].startswith("data:image/png;base64,")


def test_images_are_numbered_in_the_order_of_their_markers() -> None:
    a, b, c = (Image(url=f"https://x/{n}.png") for n in "abc")
    records = [{"A": a, "Frames": [b, {"deep": c}]}, {"Score": 0.3, "Note": "too dark"}]
    text = render_reflection_prompt("<curr_param>\n<side_info>", "Do it.", records)
    assert text.index("[IMAGE-1") < text.index("[IMAGE-2") < text.index("[IMAGE-3")
    assert "too dark" in text and "0.3" in text
    assert reflection_images(records) == [a, b, c]
    assert image_message("t", []) == "t"


def test_image_sources_and_errors(tmp_path: Path) -> None:
    png = tmp_path / "shot.JPG"
    png.write_bytes(base64.b64decode(PNG))
    url = Image(path=png).data_url()
    assert url.startswith("data:image/jpeg;base64,")
    assert base64.b64decode(url.split(",", 1)[1]) == base64.b64decode(PNG)
    assert Image(path=png, media_type="image/webp").data_url().startswith("data:image/webp")
    assert Image(path=tmp_path / "x.unknown", media_type=None).path is not None
    with pytest.raises(ConfigError, match="Exactly one"):
        Image(url="https://x/a.png", base64_data=PNG, media_type="image/png")
    with pytest.raises(ValueError, match="media_type is required"):
        Image(base64_data=PNG)
    with pytest.raises(ConfigError, match="needs a URL"):
        anthropic_image_block({"type": "image_url", "image_url": {}})
    block = Image(base64_data=PNG, media_type="image/gif").to_anthropic_content_block()
    assert block["source"]["media_type"] == "image/gif"


def test_an_image_counts_as_a_bounded_number_of_prompt_tokens() -> None:
    big = Image(base64_data="A" * 400_000, media_type="image/png")
    messages = image_message("hello", [big])
    assert isinstance(messages, list)
    assert prompt_token_bound(messages) < 20_000
    assert prompt_token_bound(messages) > prompt_token_bound([{"role": "user", "content": "hi"}])
