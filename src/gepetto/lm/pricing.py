"""Dollar prices of LM calls: from the ``genai-prices`` package, or from a fixed table.

Both classes implement :class:`gepetto.lm.client.PriceTable`: ``cost(provider, model,
input_tokens, output_tokens)`` is the call's price in USD, or ``None`` when the model's price
is unknown (never a made-up 0, so unknown costs stay visible in the totals).

:class:`GenaiPrices` reads the price data bundled with ``genai-prices`` (an optional
dependency, ``pip install gepetto[prices]``) and never touches the network. In that package
(checked for 0.2.3) the only code that opens a connection is the opt-in ``UpdatePrices``
background updater, which downloads newer prices once started; gepetto never starts it, so
auto-update stays off. The package has no environment variable or argument to turn it off;
it is off unless someone starts it.
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from gepetto.errors import ConfigError

if TYPE_CHECKING:
    from genai_prices.types import ModelInfo, Provider

__all__ = ["LOCAL_PROVIDER", "PROVIDER_IDS", "GenaiPrices", "StaticPrices"]

logger = logging.getLogger("gepetto.lm")

LOCAL_PROVIDER = "local"
"""gepetto's own llama.cpp server: free, so every call costs 0.0."""

PROVIDER_IDS: Mapping[str, str] = {
    "openai": "openai",
    "anthropic": "anthropic",
    "openrouter": "openrouter",
    "groq": "groq",
    "together": "together",
    "fireworks": "fireworks",
    "deepseek": "deepseek",
    "mistral": "mistral",
    "gemini": "google",
    "azure": "azure",
    "bedrock": "aws",
    "vertex_ai": "google",
}
"""gepetto provider names -> ``genai-prices`` provider ids (others are passed as they are, and
a provider the package does not know, such as ``ollama``, ``vllm`` or ``lm_studio``, prices
every call ``None``: unknown). Azure is priced by the deployment name, so a deployment not
named after its model is unknown too."""

_MILLION = 1_000_000


def _check_tokens(input_tokens: int, output_tokens: int) -> None:
    for name, value in (("input_tokens", input_tokens), ("output_tokens", output_tokens)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"{name} must be an integer >= 0, got {value!r}")


class StaticPrices:
    """Prices from a fixed table, for tests and for models no package knows.

    Args:
        mapping: ``{(provider, model): (usd_per_million_input, usd_per_million_output)}``.
            Pairs not in it cost ``None``.

    Raises:
        ConfigError: if a key is not a ``(provider, model)`` pair of strings or a price is
            not a number >= 0.
    """

    def __init__(self, mapping: Mapping[tuple[str, str], tuple[float, float]]) -> None:
        self._prices: dict[tuple[str, str], tuple[float, float]] = {}
        for key, value in mapping.items():
            if not (
                isinstance(key, tuple) and len(key) == 2 and all(isinstance(k, str) for k in key)
            ):
                raise ConfigError(f"a price key must be a (provider, model) pair, got {key!r}")
            if not (isinstance(value, tuple) and len(value) == 2):
                raise ConfigError(f"the price of {key!r} must be (input, output), got {value!r}")
            if not all(_is_price(p) and p >= 0 for p in value):
                raise ConfigError(f"the prices of {key!r} must be numbers >= 0, got {value!r}")
            self._prices[key] = (float(value[0]), float(value[1]))

    def cost(
        self, provider: str, model: str, input_tokens: int, output_tokens: int
    ) -> float | None:
        """The call's USD cost, or ``None`` if ``(provider, model)`` is not in the table.

        Raises:
            ConfigError: if a token count is negative.
        """
        _check_tokens(input_tokens, output_tokens)
        prices = self._prices.get((provider, model))
        if prices is None:
            return None
        return (input_tokens * prices[0] + output_tokens * prices[1]) / _MILLION


def _is_name(value: Any) -> bool:
    return isinstance(value, str)


def _is_price(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class GenaiPrices:
    """Prices from the data bundled with the ``genai-prices`` package (offline).

    ``provider`` is one of gepetto's provider names (see :data:`PROVIDER_IDS`); ``"local"``
    always costs 0.0. A model the package does not know costs ``None``. If the package is
    not installed, every cost is ``None`` and one ``RuntimeWarning`` says so.

    The model lookup is done once per ``(provider, model)`` and kept; thread-safe.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._models: dict[tuple[str, str], tuple[Provider, ModelInfo] | None] = {}
        self._missing_warned = False

    def cost(
        self, provider: str, model: str, input_tokens: int, output_tokens: int
    ) -> float | None:
        """The call's USD cost, ``0.0`` for ``"local"``, or ``None`` if the price is unknown.

        Raises:
            ConfigError: if a token count is negative.
        """
        _check_tokens(input_tokens, output_tokens)
        if provider == LOCAL_PROVIDER:
            return 0.0
        found = self._lookup(provider, model)
        if found is None:
            return None
        from genai_prices import Usage

        package_provider, model_info = found
        try:
            price = model_info.calc_price(
                Usage(input_tokens=input_tokens, output_tokens=output_tokens), package_provider
            )
        except Exception:  # a price bug must not fail an LM call that is already paid for
            logger.warning("genai-prices failed to price %s/%s", provider, model, exc_info=True)
            return None
        return float(price.total_price)

    def _lookup(self, provider: str, model: str) -> tuple[Provider, ModelInfo] | None:
        """The package's provider and model for ``(provider, model)``, cached; None if unknown."""
        key = (provider, model)
        with self._lock:
            if key in self._models:
                return self._models[key]
        found: tuple[Provider, ModelInfo] | None = None
        try:
            import genai_prices
        except ImportError:
            self._warn_missing()
        else:
            try:
                # Zero usage: only the lookup matters. calc_price is the package's public
                # entry point; it reads the bundled data (no network).
                calc = genai_prices.calc_price(
                    genai_prices.Usage(input_tokens=0, output_tokens=0),
                    model,
                    provider_id=PROVIDER_IDS.get(provider, provider),
                )
                found = (calc.provider, calc.model)
            except LookupError:  # unknown provider or model: remember it, price None
                pass
            except Exception:  # not cached: a later call may succeed
                logger.warning(
                    "genai-prices failed to look up %s/%s", provider, model, exc_info=True
                )
                return None
        with self._lock:
            self._models[key] = found
        return found

    def _warn_missing(self) -> None:
        with self._lock:
            if self._missing_warned:
                return
            self._missing_warned = True
        warnings.warn(
            "genai-prices is not installed, so LM call costs are unknown (None); "
            "install it with `pip install gepetto[prices]`",
            RuntimeWarning,
            stacklevel=4,
        )
