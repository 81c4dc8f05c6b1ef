"""Tests of the price tables: genai-prices (offline) and a static table."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import warnings
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from gepetto.errors import ConfigError
from gepetto.lm.client import PriceTable
from gepetto.lm.pricing import GenaiPrices, StaticPrices

genai_prices = pytest.importorskip("genai_prices")


def published(provider_id: str, model: str) -> tuple[Decimal, Decimal]:
    """USD per million input and output tokens, read from the package's bundled data."""
    from genai_prices.data import providers

    provider = next(p for p in providers if p.id == provider_id)
    info = provider.find_model(model, all_providers=providers)
    assert info is not None
    price = info.get_prices(datetime.now(UTC))
    per_input, per_output = price.input_mtok, price.output_mtok
    assert isinstance(per_input, Decimal)
    assert isinstance(per_output, Decimal)
    return per_input, per_output


def expected(provider_id: str, model: str, input_tokens: int, output_tokens: int) -> float:
    per_input, per_output = published(provider_id, model)
    return float((input_tokens * per_input + output_tokens * per_output) / 1_000_000)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every attempt to resolve or connect raises, and is logged in the returned list."""
    attempts: list[str] = []

    def refuse(name: str) -> Any:
        def refused(*args: Any, **kwargs: Any) -> Any:
            attempts.append(name)
            raise OSError(f"network access in a test: {name}")

        return refused

    monkeypatch.setattr(socket.socket, "connect", refuse("connect"))
    monkeypatch.setattr(socket.socket, "connect_ex", refuse("connect_ex"))
    monkeypatch.setattr(socket, "create_connection", refuse("create_connection"))
    monkeypatch.setattr(socket, "getaddrinfo", refuse("getaddrinfo"))
    return attempts


# ------------------------------------------------------------------ GenaiPrices


def test_implements_the_protocol() -> None:
    tables: list[PriceTable] = [GenaiPrices(), StaticPrices({})]
    assert len(tables) == 2


def test_openai_gpt_4o_mini_has_the_published_price() -> None:
    per_input, per_output = published("openai", "gpt-4o-mini")
    assert (per_input, per_output) == (Decimal("0.15"), Decimal("0.6"))  # $ per million
    cost = GenaiPrices().cost("openai", "gpt-4o-mini", 1000, 500)
    assert isinstance(cost, float)
    assert cost > 0
    assert cost == pytest.approx(1000 * 0.15e-6 + 500 * 0.6e-6)
    assert cost == pytest.approx(expected("openai", "gpt-4o-mini", 1000, 500))


@pytest.mark.parametrize(
    ("provider", "model", "data_provider", "data_model"),
    [
        ("openai", "gpt-4o", "openai", "gpt-4o"),
        ("anthropic", "claude-3-5-haiku-20241022", "anthropic", "claude-3-5-haiku-latest"),
        ("anthropic", "claude-sonnet-4-20250514", "anthropic", "claude-sonnet-4-0"),
        ("openrouter", "openai/gpt-4o-mini", "openrouter", "openai/gpt-4o-mini"),
    ],
)
def test_known_models_cost_their_per_token_price(
    provider: str, model: str, data_provider: str, data_model: str
) -> None:
    cost = GenaiPrices().cost(provider, model, 12_345, 678)
    assert isinstance(cost, float)
    assert cost > 0
    assert cost == pytest.approx(expected(data_provider, data_model, 12_345, 678))


def test_anthropic_haiku_price_is_the_published_one() -> None:
    assert published("anthropic", "claude-3-5-haiku-latest") == (Decimal("0.8"), Decimal("4"))
    cost = GenaiPrices().cost("anthropic", "claude-3-5-haiku-20241022", 1_000_000, 1_000_000)
    assert cost == pytest.approx(4.8)


def test_zero_tokens_cost_zero_for_a_known_model() -> None:
    assert GenaiPrices().cost("openai", "gpt-4o-mini", 0, 0) == 0.0


def test_unknown_model_or_provider_costs_none() -> None:
    prices = GenaiPrices()
    assert prices.cost("openai", "no-such-model-xyz", 1000, 1000) is None
    assert prices.cost("anthropic", "gpt-4o-mini-but-not-really-xyz", 1000, 1000) is None
    assert prices.cost("no-such-provider", "gpt-4o-mini", 1000, 1000) is None
    assert prices.cost("base", "anything", 1, 1) is None


def test_local_is_free() -> None:
    assert GenaiPrices().cost("local", "qwen2.5-coder-0.5b", 10_000, 10_000) == 0.0


def test_negative_tokens_are_refused() -> None:
    with pytest.raises(ConfigError, match="input_tokens"):
        GenaiPrices().cost("openai", "gpt-4o-mini", -1, 0)


def test_lookup_is_cached_per_provider_and_model(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str | None]] = []
    real = genai_prices.calc_price

    def counting(usage: Any, model_ref: str, **kwargs: Any) -> Any:
        calls.append((model_ref, kwargs.get("provider_id")))
        return real(usage, model_ref, **kwargs)

    monkeypatch.setattr(genai_prices, "calc_price", counting)
    prices = GenaiPrices()
    costs = {prices.cost("openai", "gpt-4o-mini", n, n) for n in range(1, 6)}
    assert len(costs) == 5
    for _ in range(3):
        assert prices.cost("openai", "no-such-model-xyz", 1, 1) is None
    assert calls == [("gpt-4o-mini", "openai"), ("no-such-model-xyz", "openai")]


def test_no_network_during_cost(no_network: list[str]) -> None:
    prices = GenaiPrices()
    assert (prices.cost("openai", "gpt-4o-mini", 100, 100) or 0) > 0
    assert (prices.cost("anthropic", "claude-sonnet-4-20250514", 100, 100) or 0) > 0
    assert prices.cost("openai", "no-such-model-xyz", 100, 100) is None
    assert no_network == []
    # ... and no background price updater was started.
    from genai_prices import update_prices

    assert update_prices._shared_updater.ref_count == 0
    assert not any(t.name == "genai_prices:update" for t in threading.enumerate())
    assert not genai_prices.data_snapshot.get_snapshot().from_auto_update


def test_no_network_from_a_fresh_import() -> None:
    """In a new interpreter with sockets disabled, importing and pricing still work."""
    code = """
import socket
def refuse(*args, **kwargs):
    raise SystemExit("network access: " + repr(args[:2]))
socket.socket.connect = refuse
socket.socket.connect_ex = refuse
socket.create_connection = refuse
socket.getaddrinfo = refuse
from gepetto.lm.pricing import GenaiPrices
cost = GenaiPrices().cost("openai", "gpt-4o-mini", 1000, 1000)
assert cost is not None and cost > 0, cost
import sys
assert "genai_prices" in sys.modules
print("ok")
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_missing_package_gives_none_and_warns_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "genai_prices", None)  # makes the import fail
    prices = GenaiPrices()
    with pytest.warns(RuntimeWarning, match="genai-prices is not installed"):
        assert prices.cost("openai", "gpt-4o-mini", 10, 10) is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert prices.cost("openai", "gpt-4o", 10, 10) is None
        assert prices.cost("openai", "gpt-4o-mini", 10, 10) is None
    assert prices.cost("local", "m", 10, 10) == 0.0


# ------------------------------------------------------------------ StaticPrices


def test_static_prices() -> None:
    prices = StaticPrices({("openai", "my-model"): (2.0, 8)})
    assert prices.cost("openai", "my-model", 1_000_000, 500_000) == pytest.approx(6.0)
    assert prices.cost("openai", "my-model", 0, 0) == 0.0
    assert prices.cost("openai", "other", 1, 1) is None
    assert prices.cost("anthropic", "my-model", 1, 1) is None


@pytest.mark.parametrize(
    "mapping",
    [
        {("openai",): (1.0, 1.0)},
        {"openai/my-model": (1.0, 1.0)},
        {("openai", "m"): (1.0,)},
        {("openai", "m"): (-1.0, 1.0)},
        {("openai", "m"): (1.0, "2")},
        {("openai", "m"): (True, 1.0)},
    ],
)
def test_static_prices_are_validated(mapping: Any) -> None:
    with pytest.raises(ConfigError):
        StaticPrices(mapping)


def test_static_prices_refuse_negative_tokens() -> None:
    with pytest.raises(ConfigError, match="output_tokens"):
        StaticPrices({}).cost("openai", "m", 1, -1)
