"""Azure OpenAI deployments (``azure/DEPLOYMENT``) through the ``openai`` SDK's Azure client.

:class:`AzureOpenAIClient` is an :class:`~gepetto.lm.openai_client.OpenAIClient` whose SDK
client is ``AsyncAzureOpenAI``: requests go to
``{endpoint}/openai/deployments/{deployment}/chat/completions?api-version=...`` with the key in
the ``api-key`` header. Names follow litellm, with the ``openai`` SDK's as fallbacks:

- key: ``$AZURE_OPENAI_API_KEY``, then ``$AZURE_API_KEY`` (litellm reads both, in this order);
- endpoint: ``$AZURE_API_BASE`` (litellm), then ``$AZURE_OPENAI_ENDPOINT`` (the SDK), e.g.
  ``https://my-resource.openai.azure.com``;
- API version: ``$AZURE_API_VERSION`` (litellm), then ``$OPENAI_API_VERSION`` (the SDK), then
  :data:`DEFAULT_API_VERSION`.

Azure endpoints are per resource, so there is no official host: a key from the environment
goes only to the endpoint from the environment, and an endpoint given in code
(``base_url=``) needs a key given in code (``api_key=``). ``$OPENAI_API_KEY``,
``$OPENAI_ORG_ID``, ``$OPENAI_PROJECT_ID``, ``$OPENAI_CUSTOM_HEADERS`` and
``$AZURE_OPENAI_AD_TOKEN`` are never sent.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from typing import Any

from gepetto.errors import ConfigError
from gepetto.lm.credentials import AUTH_PROFILES, PLACEHOLDER_KEY, Credentials
from gepetto.lm.openai_client import OpenAIClient, openai_headers

__all__ = ["DEFAULT_API_VERSION", "AzureOpenAIClient"]

DEFAULT_API_VERSION = "2024-10-21"
"""The Azure OpenAI data-plane API version used when none is configured (the latest GA)."""

_VERSION_ENVS = ("AZURE_API_VERSION", "OPENAI_API_VERSION")


class AzureOpenAIClient(OpenAIClient):
    """Chat completions of one Azure OpenAI deployment (``AsyncAzureOpenAI``).

    Args:
        deployment: the deployment name (what ``azure/DEPLOYMENT`` names).
        api_key: the resource's key; default ``$AZURE_OPENAI_API_KEY`` or ``$AZURE_API_KEY``,
            sent only to the endpoint of ``$AZURE_API_BASE`` / ``$AZURE_OPENAI_ENDPOINT``.
        base_url: the resource endpoint, ``https://RESOURCE.openai.azure.com`` (without
            ``/openai``); default ``$AZURE_API_BASE``, then ``$AZURE_OPENAI_ENDPOINT``.
        api_version: the ``api-version`` query parameter; default ``$AZURE_API_VERSION``,
            then ``$OPENAI_API_VERSION``, then :data:`DEFAULT_API_VERSION`.
        default_headers: extra HTTP headers sent with every request.
        **options: the :class:`~gepetto.lm.client.LMClient` options.

    Raises:
        ConfigError: if the ``openai`` package is missing, no endpoint is configured, or no
            key is configured for the endpoint (the message names the variables). Raised
            here, before any request.
    """

    def __init__(
        self,
        deployment: str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        api_version: str | None = None,
        default_headers: Mapping[str, str] | None = None,
        **options: Any,
    ) -> None:
        env_version = next((v.strip() for n in _VERSION_ENVS if (v := os.environ.get(n))), "")
        self.api_version = (api_version or "").strip() or env_version or DEFAULT_API_VERSION
        options.pop("provider_name", None)
        options.pop("organization", None)
        super().__init__(
            deployment,
            api_key=api_key,
            base_url=base_url,
            default_headers=default_headers,
            provider_name="azure",
            **options,
        )

    def _sdk_factory(
        self,
        credentials: Credentials,
        organization: str | None,
        default_headers: Mapping[str, str] | None,
    ) -> Callable[[], Any]:
        from openai import AsyncAzureOpenAI

        key = credentials.key
        if key is None or key == PLACEHOLDER_KEY:
            auth = AUTH_PROFILES["azure"]
            raise ConfigError(
                f"no API key for azure deployment {self.model!r} at {self.base_url}: set "
                f"{auth.key_hint()} with the endpoint in ${auth.base_url_env}; a key from the "
                "environment goes only to the endpoint from the environment, so an endpoint "
                "given as base_url= needs api_key= too"
            )
        return functools.partial(
            AsyncAzureOpenAI,
            api_key=key,
            azure_endpoint=credentials.endpoint.url,
            api_version=self.api_version,
            default_headers=openai_headers(False, {"api-key": key}, None, default_headers),
            default_query=dict(credentials.endpoint.query) or None,
            max_retries=0,
            timeout=self.timeout,
        )
