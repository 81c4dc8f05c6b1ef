"""Claude on Amazon Bedrock (``bedrock/``) and Google Vertex AI (``vertex_ai/``).

Both clients send the Messages API through the ``anthropic`` SDK's platform clients
(``AsyncAnthropicBedrock``, ``AsyncAnthropicVertex``), so requests, replies, errors, retries and
accounting are :class:`~gepetto.lm.anthropic_client.MessagesClient`'s. Only Anthropic models
are supported on either platform.

**Bedrock** (``pip install 'gepetto[bedrock]'`` for SigV4 signing: boto3 and botocore).
``bedrock/anthropic.claude-...`` (litellm's form; ``bedrock/invoke/...``,
``bedrock/converse/...`` and cross-region inference profiles ``us.anthropic...`` too) goes to
``POST {endpoint}/model/{model}/invoke``. Region: ``aws_region=``, then ``$AWS_REGION_NAME``
(litellm), ``$AWS_REGION``, ``$AWS_DEFAULT_REGION``. Credentials, first found: ``api_key=`` (a
Bedrock API key, sent as a bearer token), ``aws_access_key=`` / ``aws_secret_key=`` /
``aws_session_token=`` / ``aws_profile=`` (SigV4), ``$AWS_BEARER_TOKEN_BEDROCK``, then boto3's
chain (``$AWS_ACCESS_KEY_ID`` / ``$AWS_SECRET_ACCESS_KEY`` / ``$AWS_SESSION_TOKEN``,
``$AWS_PROFILE``, ``~/.aws``, instance roles). Endpoint: ``base_url=``, then
``$ANTHROPIC_BEDROCK_BASE_URL`` (the SDK's), ``$AWS_BEDROCK_RUNTIME_ENDPOINT`` (litellm's), then
``https://bedrock-runtime.{region}.amazonaws.com``.

**Vertex AI** (``pip install 'gepetto[vertex]'`` for google-auth, unless an access token is
given). ``vertex_ai/claude-...@VERSION`` goes to ``POST {endpoint}/projects/{project}/
locations/{region}/publishers/anthropic/models/{model}:rawPredict``. Region: ``region=``, then
``$VERTEXAI_LOCATION`` (litellm), ``$CLOUD_ML_REGION`` (the SDK's). Project: ``project_id=``,
then ``$VERTEXAI_PROJECT`` (litellm), ``$ANTHROPIC_VERTEX_PROJECT_ID`` (the SDK's), then the
project of the application default credentials. Credentials: ``access_token=`` or
``credentials=`` (a ``google.auth`` credentials object), then the application default
credentials (``$GOOGLE_APPLICATION_CREDENTIALS``, ``gcloud auth application-default login``),
refreshed by google-auth. Endpoint: ``base_url=``, then ``$ANTHROPIC_VERTEX_BASE_URL``, then
Google's regional host (``https://{region}-aiplatform.googleapis.com/v1``).

The rule of :mod:`gepetto.lm.credentials` holds: credentials from the environment (AWS keys
and profiles, the Bedrock bearer token, Google's default credentials) are used only for the
official host or the URL of the platform's own variable; a ``base_url=`` given in code needs
credentials given in code. ``$ANTHROPIC_API_KEY`` and ``$ANTHROPIC_CUSTOM_HEADERS`` are never
sent to either platform. Missing credentials, region or project are a ``ConfigError`` naming
what to set, before any request.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from typing import Any

from gepetto.errors import ConfigError
from gepetto.lm.anthropic_client import MessagesClient
from gepetto.lm.client import Completion, LMRequest
from gepetto.lm.credentials import Credentials, Endpoint, cloud_endpoint, first_env
from gepetto.lm.errors import LMAuthError, LMConnectionError, LMError
from gepetto.lm.openai_client import PerLoopClients, accepted_arguments
from gepetto.redaction import protect_logs

__all__ = ["BedrockClient", "VertexClient", "bedrock_model_id"]

_BEDROCK_REGION_ENVS = ("AWS_REGION_NAME", "AWS_REGION", "AWS_DEFAULT_REGION")
_BEDROCK_URL_ENVS = ("ANTHROPIC_BEDROCK_BASE_URL", "AWS_BEDROCK_RUNTIME_ENDPOINT")
_VERTEX_REGION_ENVS = ("VERTEXAI_LOCATION", "CLOUD_ML_REGION")
_VERTEX_PROJECT_ENVS = ("VERTEXAI_PROJECT", "ANTHROPIC_VERTEX_PROJECT_ID")
_VERTEX_URL_ENVS = ("ANTHROPIC_VERTEX_BASE_URL",)
_GOOGLE_SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)


def bedrock_model_id(model: str) -> str:
    """The Bedrock model id of a ``bedrock/`` model name (litellm's route prefixes removed).

    >>> bedrock_model_id("invoke/anthropic.claude-3-5-sonnet-20240620-v1:0")
    'anthropic.claude-3-5-sonnet-20240620-v1:0'

    Raises:
        ConfigError: for a model that is not Anthropic's (only Claude is supported here).
    """
    for route in ("invoke/", "converse/"):
        model = model.removeprefix(route)
    if "anthropic." not in model and not model.startswith("arn:"):
        raise ConfigError(
            f"bedrock/{model}: only Anthropic models are supported on Bedrock (model ids "
            "like 'anthropic.claude-3-5-sonnet-20240620-v1:0' or 'us.anthropic.claude-...')"
        )
    return model


class _PlatformClient(MessagesClient):
    """The shared set-up: the SDK classes, the endpoint, and headers without the Anthropic
    environment (``$ANTHROPIC_CUSTOM_HEADERS`` is for Anthropic's own API)."""

    def _start(
        self,
        factory: Callable[[], Any],
        endpoint: Endpoint,
        key_source: str,
        trusted: bool,
        secrets: tuple[str | None, ...],
    ) -> None:
        self._use_credentials(Credentials(endpoint, None, key_source, trusted))
        self._secrets = (*self._secrets, *(s for s in secrets if s))
        protect_logs(self._secrets)
        self._sdk = PerLoopClients(factory)
        self._accepted = accepted_arguments(self._sdk.first.messages.create)

    async def _send(self, request: LMRequest) -> Completion:
        """One Messages API call; credential failures of the platform's auth library (raised
        while the SDK signs or authorizes the request) become :mod:`gepetto.lm.errors` too."""
        try:
            return await super()._send(request)
        except LMError:
            raise
        except Exception as exc:
            error = self._credential_error(exc, request.model)
            if error is None:
                raise
            raise error from None  # the library's text may hold credential details

    def _credential_error(self, exc: Exception, model: str) -> LMError | None:
        """The gepetto error for an exception of the platform's auth library, else ``None``."""
        return None

    @staticmethod
    def _headers(default_headers: Mapping[str, str] | None) -> dict[str, Any] | None:
        from anthropic import Omit

        from gepetto.lm.credentials import untrusted_env_headers

        headers: dict[str, Any] = dict(
            untrusted_env_headers("ANTHROPIC_CUSTOM_HEADERS", Omit(), dict)
        )
        headers.update(default_headers or {})
        return headers or None


class BedrockClient(_PlatformClient):
    """Claude on Amazon Bedrock through ``anthropic.AsyncAnthropicBedrock``.

    Args:
        model: the Bedrock model id (``"anthropic.claude-3-5-sonnet-20240620-v1:0"``).
        aws_region: the AWS region (default: the region variables, see the module).
        aws_access_key, aws_secret_key, aws_session_token, aws_profile: AWS credentials for
            SigV4 signing (default: boto3's chain, for trusted endpoints only).
        api_key: a Bedrock API key, sent as a bearer token instead of SigV4 (default
            ``$AWS_BEARER_TOKEN_BEDROCK``, for trusted endpoints only).
        base_url: the runtime endpoint (default: the variables, then the region's).
        default_headers: extra HTTP headers sent with every request.
        **options: the :class:`~gepetto.lm.client.LMClient` options.

    Raises:
        ConfigError: if a package is missing, the model is not Anthropic's, or the region or
            credentials are missing (naming what to set); before any request.
    """

    provider = "bedrock"
    _key_env = "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (or AWS_BEARER_TOKEN_BEDROCK)"

    def __init__(
        self,
        model: str,
        *,
        aws_region: str | None = None,
        aws_access_key: str | None = None,
        aws_secret_key: str | None = None,
        aws_session_token: str | None = None,
        aws_profile: str | None = None,
        api_key: str | None = None,
        base_url: str | None = None,
        default_headers: Mapping[str, str] | None = None,
        **options: Any,
    ) -> None:
        super().__init__(bedrock_model_id(model), **options)
        try:
            from anthropic import AsyncAnthropicBedrock
        except ImportError as exc:
            raise ConfigError(
                "BedrockClient needs the anthropic package: pip install 'gepetto[bedrock]'"
            ) from exc
        region = aws_region or first_env(_BEDROCK_REGION_ENVS)[0]
        if not region:
            raise ConfigError(
                f"no AWS region for bedrock model {self.model!r}: set AWS_REGION_NAME (or "
                "AWS_REGION, AWS_DEFAULT_REGION) or pass aws_region=..."
            )
        endpoint, trusted = cloud_endpoint(
            base_url, _BEDROCK_URL_ENVS, f"https://bedrock-runtime.{region}.amazonaws.com"
        )
        aws = (aws_access_key, aws_secret_key, aws_session_token, aws_profile)
        bearer, source = _bedrock_credentials(api_key, aws, trusted, endpoint)
        if bearer is None:
            _check_aws_credentials(aws, region, self.model)
        factory = functools.partial(
            _bedrock_sdk,
            AsyncAnthropicBedrock,
            region=region,
            url=endpoint.url,
            bearer=bearer,
            aws=aws,
            headers=self._headers(default_headers),
            query=dict(endpoint.query) or None,
            timeout=self.timeout,
        )
        # Hidden in error texts and logs too when boto3 reads them from the environment.
        env_secrets = () if bearer else _aws_env_secrets(aws)
        secrets = (bearer, aws_secret_key, aws_session_token, *env_secrets)
        self._start(factory, endpoint, source, trusted, secrets)

    def _credential_error(self, exc: Exception, model: str) -> LMError | None:
        return _botocore_error(exc, self, model)


def _aws_env_secrets(aws: tuple[str | None, ...]) -> tuple[str | None, ...]:
    """The AWS secrets boto3 would read from the environment (none if given in code)."""
    if any(value is not None for value in aws):
        return ()
    return tuple(os.environ.get(name) for name in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"))


def _botocore_error(exc: Exception, client: BedrockClient, model: str) -> LMError | None:
    """botocore's failures to find or use credentials while signing -> :class:`LMAuthError`."""
    try:
        import botocore.exceptions
    except ImportError:
        return None
    if isinstance(exc, botocore.exceptions.BotoCoreError) or (
        isinstance(exc, RuntimeError) and "AWS credentials" in str(exc)
    ):
        return LMAuthError(
            f"the AWS credentials for {client.base_url} could not sign the request "
            f"({type(exc).__name__}; credentials from {client._key_source}): set "
            f"{client._key_env} or pass aws_access_key=... and aws_secret_key=...",
            model=model,
            provider=client.provider,
        )
    return None


def _bedrock_credentials(
    api_key: str | None,
    aws: tuple[str | None, ...],
    trusted: bool,
    endpoint: Endpoint,
) -> tuple[str | None, str]:
    """The bearer token to send (``None``: sign with SigV4) and where the credentials are from.

    Raises:
        ConfigError: if the endpoint was given in code and no credentials were.
    """
    if api_key is not None:
        if not api_key.strip():
            raise ConfigError("the api_key argument is empty or blank")
        return api_key.strip(), "the api_key argument"
    if any(value is not None for value in aws):
        return None, "the aws_* arguments"
    if not trusted:
        raise ConfigError(
            f"no credentials for the Bedrock endpoint {endpoint.display} given as base_url: AWS "
            "credentials from the environment go only to bedrock-runtime.REGION.amazonaws.com "
            "or to $ANTHROPIC_BEDROCK_BASE_URL; pass api_key=... (a Bedrock API key) or "
            "aws_access_key=... and aws_secret_key=..."
        )
    bearer, name = first_env(("AWS_BEARER_TOKEN_BEDROCK",))
    if bearer:
        return bearer, f"${name}"
    return None, "AWS credentials from the environment (boto3's chain)"


def _check_aws_credentials(aws: tuple[str | None, ...], region: str, model: str) -> None:
    """Fail now, not at the first request, when SigV4 cannot sign (no package, no keys)."""
    try:
        import boto3
        import botocore.exceptions
    except ImportError as exc:
        raise ConfigError(
            f"bedrock model {model!r} needs boto3 and botocore to sign requests: pip install "
            "'gepetto[bedrock]' (or pass api_key=... / set AWS_BEARER_TOKEN_BEDROCK to use a "
            "Bedrock API key)"
        ) from exc
    access_key, secret_key, session_token, profile = aws
    try:
        session = boto3.Session(
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            aws_session_token=session_token,
            profile_name=profile,
            region_name=region,
        )
        found = session.get_credentials()
    except botocore.exceptions.BotoCoreError as exc:
        raise ConfigError(f"AWS credentials for bedrock could not be loaded: {exc}") from exc
    if found is None:
        raise ConfigError(
            f"no AWS credentials for bedrock model {model!r}: set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE, or AWS_BEARER_TOKEN_BEDROCK), or pass "
            "aws_access_key=... and aws_secret_key=... (or api_key=...)"
        )


def _bedrock_sdk(
    sdk_class: Any,
    *,
    region: str,
    url: str,
    bearer: str | None,
    aws: tuple[str | None, ...],
    headers: dict[str, Any] | None,
    query: dict[str, Any] | None,
    timeout: float,
) -> Any:
    """An ``AsyncAnthropicBedrock`` that uses exactly these credentials.

    The SDK reads ``$AWS_BEARER_TOKEN_BEDROCK`` when ``api_key`` is ``None`` (and refuses it
    beside AWS keys), so it is built with a bearer value and switched to SigV4 after."""
    client = sdk_class(
        aws_region=region,
        api_key=bearer or "unused",
        base_url=url,
        default_headers=headers,
        default_query=query,
        max_retries=0,
        timeout=timeout,
    )
    if bearer is None:
        client.api_key = None
        (client.aws_access_key, client.aws_secret_key, client.aws_session_token) = aws[:3]
        client.aws_profile = aws[3]
    return client


class VertexClient(_PlatformClient):
    """Claude on Google Vertex AI through ``anthropic.AsyncAnthropicVertex``.

    Args:
        model: the Vertex model name (``"claude-sonnet-4@20250514"``).
        region: the Vertex region (``"us-east5"``, ``"europe-west1"``, ``"global"``, ...).
        project_id: the Google Cloud project.
        access_token: an OAuth access token (``gcloud auth print-access-token``), sent as is.
        credentials: a ``google.auth`` credentials object, refreshed by google-auth.
        base_url: the API root with ``/v1`` (default: the variable, then Google's host).
        default_headers: extra HTTP headers sent with every request.
        **options: the :class:`~gepetto.lm.client.LMClient` options.

    Raises:
        ConfigError: if a package is missing, the model is not Claude, or the region,
            project or credentials are missing (naming what to set); before any request.
    """

    provider = "vertex_ai"
    _key_env = "GOOGLE_APPLICATION_CREDENTIALS"

    def __init__(
        self,
        model: str,
        *,
        region: str | None = None,
        project_id: str | None = None,
        access_token: str | None = None,
        credentials: Any = None,
        base_url: str | None = None,
        default_headers: Mapping[str, str] | None = None,
        **options: Any,
    ) -> None:
        if not model.startswith("claude"):
            raise ConfigError(
                f"vertex_ai/{model}: only Anthropic's Claude models are supported on Vertex AI "
                "(for example 'vertex_ai/claude-sonnet-4@20250514')"
            )
        super().__init__(model, **options)
        try:
            from anthropic import AsyncAnthropicVertex
        except ImportError as exc:
            raise ConfigError(
                "VertexClient needs the anthropic package: pip install 'gepetto[vertex]'"
            ) from exc
        region = region or first_env(_VERTEX_REGION_ENVS)[0]
        if not region:
            raise ConfigError(
                f"no Vertex AI region for model {model!r}: set VERTEXAI_LOCATION (or "
                "CLOUD_ML_REGION) or pass region=... (for example 'us-east5')"
            )
        endpoint, trusted = cloud_endpoint(base_url, _VERTEX_URL_ENVS, _vertex_url(region))
        source = "the access_token argument" if access_token else "the credentials argument"
        adc_project: str | None = None
        if access_token is None and credentials is None:
            if not trusted:
                raise ConfigError(
                    f"no credentials for the Vertex AI endpoint {endpoint.display} given as "
                    "base_url: Google's default credentials go only to Google's host or to "
                    "$ANTHROPIC_VERTEX_BASE_URL; pass access_token=... or credentials=..."
                )
            credentials, adc_project = _default_google_credentials(model)
            source = "Google's application default credentials"
        project = (
            project_id
            or first_env(_VERTEX_PROJECT_ENVS)[0]
            or adc_project
            or getattr(credentials, "project_id", None)
        )
        if not project:
            raise ConfigError(
                f"no Google Cloud project for Vertex AI model {model!r}: set VERTEXAI_PROJECT "
                "(or ANTHROPIC_VERTEX_PROJECT_ID) or pass project_id=..."
            )
        factory = functools.partial(
            AsyncAnthropicVertex,
            region=region,
            project_id=project,
            access_token=access_token,
            credentials=credentials,
            base_url=endpoint.url,
            default_headers=self._headers(default_headers),
            default_query=dict(endpoint.query) or None,
            max_retries=0,
            timeout=self.timeout,
        )
        self._start(factory, endpoint, source, trusted, (access_token,))

    def _credential_error(self, exc: Exception, model: str) -> LMError | None:
        try:
            import google.auth.exceptions as google_errors
        except ImportError:
            return None
        if isinstance(exc, google_errors.TransportError):
            return LMConnectionError(
                f"could not reach Google's token endpoint to refresh the credentials for "
                f"{self.base_url} ({type(exc).__name__})",
                model=model,
                provider=self.provider,
            )
        if isinstance(exc, google_errors.GoogleAuthError):
            return LMAuthError(
                f"Google refused to refresh the credentials for {self.base_url} (credentials "
                f"from {self._key_source}): check GOOGLE_APPLICATION_CREDENTIALS or run "
                "`gcloud auth application-default login`, or pass access_token=...",
                model=model,
                provider=self.provider,
            )
        return None


def _vertex_url(region: str) -> str:
    """Google's Vertex AI API root for a region (as the SDK chooses it)."""
    if region == "global":
        return "https://aiplatform.googleapis.com/v1"
    if region in ("us", "eu"):
        return f"https://aiplatform.{region}.rep.googleapis.com/v1"
    return f"https://{region}-aiplatform.googleapis.com/v1"


def _default_google_credentials(model: str) -> tuple[Any, str | None]:
    """Google's application default credentials and their project (no token fetched yet)."""
    try:
        import google.auth
        import google.auth.exceptions
    except ImportError as exc:
        raise ConfigError(
            f"vertex_ai model {model!r} needs google-auth for Google's default credentials: "
            "pip install 'gepetto[vertex]' (or pass access_token=...)"
        ) from exc
    try:
        credentials, project = google.auth.default(scopes=list(_GOOGLE_SCOPES))
    except google.auth.exceptions.GoogleAuthError as exc:
        raise ConfigError(
            f"no Google credentials for vertex_ai model {model!r}: set "
            "GOOGLE_APPLICATION_CREDENTIALS to a credentials file (or run `gcloud auth "
            f"application-default login`), or pass access_token=... ({exc})"
        ) from exc
    return credentials, project if isinstance(project, str) and project else None
