"""Claude on Bedrock and Vertex AI: the real ``anthropic`` platform clients over real HTTP.

Every request goes to :class:`FaultServer` on 127.0.0.1, at the platform's own path (Bedrock's
``/model/{id}/invoke``, Vertex AI's ``.../models/{model}:rawPredict``). SigV4 signing is
botocore's own; Google's default credentials are refreshed by google-auth against a second
local server named as the token endpoint in the credentials file. Nothing reaches AWS or
Google (:func:`isolate_from_providers` routes any other address to a closed local port and
turns off the cloud metadata probes).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from gepetto.errors import ConfigError
from gepetto.lm.anthropic_cloud import BedrockClient, VertexClient, bedrock_model_id
from gepetto.lm.errors import LMAuthError
from gepetto.lm.registry import resolve_lm
from gepetto.lm.reliability import RetryPolicy
from tests.lm.isolation import isolate_from_providers

from .fault_server import FaultServer, RecordedRequest, ok, raw
from .test_providers import SECRETS, call, every_secret, leaked, sent

MODEL = "anthropic.claude-3-5-sonnet-20240620-v1:0"
VERTEX_MODEL = "claude-sonnet-4@20250514"
AKID = "AKIDEXAMPLE0TEST"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_from_providers(monkeypatch, home=tmp_path)


@pytest.fixture
def server() -> Iterator[FaultServer]:
    with FaultServer() as fault_server:
        yield fault_server


# ----- Bedrock -------------------------------------------------------------------------------


def bedrock_environment(monkeypatch: pytest.MonkeyPatch, url: str | None = None) -> None:
    every_secret(monkeypatch)
    monkeypatch.setenv("ANTHROPIC_AUTH_TOKEN", "tok-SECRET-22")
    monkeypatch.setenv("ANTHROPIC_CUSTOM_HEADERS", "X-Team: SECRET-team")
    monkeypatch.setenv("AWS_REGION_NAME", "us-west-2")
    if url is not None:
        monkeypatch.setenv("ANTHROPIC_BEDROCK_BASE_URL", url)


def test_bedrock_invokes_the_model_path_with_the_bearer_token_beside_its_url(
    server: FaultServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    bedrock_environment(monkeypatch, server.url)
    server.play(ok("Billing", prompt_tokens=7, completion_tokens=3))
    client = resolve_lm(f"bedrock/{MODEL}", temperature=0)
    assert isinstance(client, BedrockClient)
    assert (client.provider, client.model) == ("bedrock", MODEL)
    assert call(client) == "Billing"
    [request] = server.requests
    assert request.path == f"/model/{MODEL}/invoke"
    assert request.headers["authorization"] == f"Bearer {SECRETS['AWS_BEARER_TOKEN_BEDROCK']}"
    assert request.json["anthropic_version"]  # in the body, as the platform wants it
    assert "model" not in request.json
    assert request.json["messages"] == [{"role": "user", "content": "hello"}]
    assert request.json["max_tokens"] == 1024
    assert leaked(server, SECRETS["AWS_BEARER_TOKEN_BEDROCK"]) == []
    assert "tok-SECRET" not in sent(server)


def test_bedrock_signs_with_sigv4_from_the_environment(
    server: FaultServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("botocore")
    bedrock_environment(monkeypatch, server.url)
    monkeypatch.delenv("AWS_BEARER_TOKEN_BEDROCK")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", AKID)
    call(resolve_lm(f"bedrock/invoke/{MODEL}"))
    [request] = server.requests
    assert request.path == f"/model/{MODEL}/invoke"
    assert "/us-west-2/bedrock/aws4_request" in request.headers["authorization"]
    verify_sigv4(
        request,
        server.url,
        AKID,
        SECRETS["AWS_SECRET_ACCESS_KEY"],
        SECRETS["AWS_SESSION_TOKEN"],
    )
    assert request.headers["x-amz-security-token"] == SECRETS["AWS_SESSION_TOKEN"]
    assert re.fullmatch(r"\d{8}T\d{6}Z", request.headers["x-amz-date"])
    # The secret key signs; it is never sent, and no other provider's secret is.
    assert leaked(server, SECRETS["AWS_SESSION_TOKEN"]) == []


def verify_sigv4(
    request: RecordedRequest, url: str, key: str, secret: str, token: str | None = None
) -> None:
    """Check the request's SigV4 signature with botocore, as AWS would on arrival."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    match = re.fullmatch(
        r"AWS4-HMAC-SHA256 Credential=([^/]+)/\d{8}/([^/]+)/bedrock/aws4_request, "
        r"SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})",
        request.headers["authorization"],
    )
    assert match, request.headers["authorization"]
    access_key, region, signed, signature = match.groups()
    assert access_key == key
    headers = {name: request.headers[name] for name in signed.split(";")}
    check = AWSRequest(method="POST", url=f"{url}{request.path}", headers=headers)
    check.data = request.body
    check.context["timestamp"] = request.headers["x-amz-date"]
    signer = SigV4Auth(Credentials(key, secret, token), "bedrock", region)
    expected = signer.signature(
        signer.string_to_sign(check, signer.canonical_request(check)), check
    )
    assert signature == expected


def test_bedrock_sends_no_environment_credentials_to_a_base_url_given_in_code(
    server: FaultServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    bedrock_environment(monkeypatch)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", AKID)
    with pytest.raises(ConfigError, match=r"api_key=.*aws_access_key=") as caught:
        resolve_lm(f"bedrock/{MODEL}", base_url=server.url)
    assert not any(secret in str(caught.value) for secret in SECRETS.values())
    call(resolve_lm(f"bedrock/{MODEL}", base_url=server.url, api_key="code-bearer"))
    assert server.requests[0].headers["authorization"] == "Bearer code-bearer"
    assert leaked(server, None) == []


def test_bedrock_aws_keys_given_in_code_sign_even_beside_a_bearer_variable(
    server: FaultServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("botocore")
    bedrock_environment(monkeypatch)  # $AWS_BEARER_TOKEN_BEDROCK set: the SDK would refuse
    client = BedrockClient(
        MODEL,
        aws_region="eu-central-1",
        aws_access_key="AKIDCODE",
        aws_secret_key="code-secret-SECRET",
        base_url=server.url,
    )
    call(client)
    headers = server.requests[0].headers
    assert "/eu-central-1/bedrock/aws4_request" in headers["authorization"]
    verify_sigv4(server.requests[0], server.url, "AKIDCODE", "code-secret-SECRET")
    assert "x-amz-security-token" not in headers
    assert "code-secret-SECRET" not in sent(server)
    assert leaked(server, None) == []


def test_bedrock_defaults_to_the_regional_runtime_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", SECRETS["AWS_BEARER_TOKEN_BEDROCK"])
    monkeypatch.setenv("AWS_REGION", "ap-northeast-1")
    client = resolve_lm(f"bedrock/us.{MODEL}")
    assert client.base_url == "https://bedrock-runtime.ap-northeast-1.amazonaws.com"
    assert client.model == f"us.{MODEL}"


def test_bedrock_without_region_or_credentials_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ConfigError, match="AWS_REGION_NAME"):
        resolve_lm(f"bedrock/{MODEL}")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with pytest.raises(ConfigError, match="AWS_BEARER_TOKEN_BEDROCK"):
        resolve_lm(f"bedrock/{MODEL}")


def test_bedrock_supports_only_anthropic_models() -> None:
    with pytest.raises(ConfigError, match="only Anthropic models"):
        resolve_lm("bedrock/meta.llama3-1-8b-instruct-v1:0")
    assert bedrock_model_id(f"converse/{MODEL}") == MODEL


def test_bedrock_models_are_priced_by_genai_prices() -> None:
    pytest.importorskip("genai_prices")
    from gepetto.lm.pricing import GenaiPrices

    assert (GenaiPrices().cost("bedrock", MODEL, 1_000_000, 0) or 0) > 0


# ----- Vertex AI -----------------------------------------------------------------------------


def vertex_path(project: str = "my-project", region: str = "us-east5") -> str:
    return (
        f"/v1/projects/{project}/locations/{region}/publishers/anthropic/models/"
        f"{VERTEX_MODEL}:rawPredict"
    )


def service_account(token_uri: str) -> dict[str, str]:
    """A service account credentials file with a fresh RSA key and this token endpoint."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return {
        "type": "service_account",
        "project_id": "adc-project",
        "private_key_id": "key-id",
        "private_key": pem,
        "client_email": "gepetto-test@adc-project.iam.gserviceaccount.com",
        "client_id": "1234",
        "token_uri": token_uri,
    }


def test_vertex_calls_raw_predict_with_an_access_token_given_in_code(
    server: FaultServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    every_secret(monkeypatch)
    monkeypatch.setenv("VERTEXAI_PROJECT", "my-project")
    monkeypatch.setenv("VERTEXAI_LOCATION", "us-east5")
    client = resolve_lm(
        f"vertex_ai/{VERTEX_MODEL}", access_token="ya29.code-token", base_url=f"{server.url}/v1"
    )
    assert isinstance(client, VertexClient)
    assert (client.provider, client.model) == ("vertex_ai", VERTEX_MODEL)
    assert call(client) == "ok"
    [request] = server.requests
    assert request.path == vertex_path()
    assert request.headers["authorization"] == "Bearer ya29.code-token"
    assert request.json["anthropic_version"]
    assert "model" not in request.json
    assert leaked(server, None) == []


def test_vertex_refreshes_google_default_credentials_and_sends_the_token_beside_its_url(
    server: FaultServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """google-auth's own refresh (a signed JWT exchanged for a token), against a token
    endpoint on 127.0.0.1 named in the service account file (google-auth keeps the
    ``token_uri`` of a service account file; it resets a user file's to Google's)."""
    pytest.importorskip("google.auth")
    every_secret(monkeypatch)
    with FaultServer(raw({"access_token": "ya29.refreshed", "expires_in": 3600})) as tokens:
        adc = tmp_path / "service-account.json"
        adc.write_text(json.dumps(service_account(f"{tokens.url}/token")))
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(adc))
        monkeypatch.setenv("CLOUD_ML_REGION", "europe-west1")
        monkeypatch.setenv("ANTHROPIC_VERTEX_PROJECT_ID", "sdk-project")
        monkeypatch.setenv("ANTHROPIC_VERTEX_BASE_URL", f"{server.url}/v1")
        call(resolve_lm(f"vertex_ai/{VERTEX_MODEL}"))
        assert [r.path for r in tokens.requests] == ["/token"]
    [request] = server.requests
    assert request.path == vertex_path("sdk-project", "europe-west1")
    assert request.headers["authorization"] == "Bearer ya29.refreshed"
    assert "PRIVATE KEY" not in sent(server)
    assert leaked(server, None) == []


def test_a_refused_google_refresh_is_a_fatal_auth_error_not_retried(
    server: FaultServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pytest.importorskip("google.auth")
    refused = raw({"error": "invalid_grant", "error_description": "Invalid JWT"}, code=400)
    with FaultServer(refused, refused) as tokens:
        adc = tmp_path / "service-account.json"
        adc.write_text(json.dumps(service_account(f"{tokens.url}/token")))
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(adc))
        monkeypatch.setenv("VERTEXAI_LOCATION", "us-east5")
        monkeypatch.setenv("ANTHROPIC_VERTEX_BASE_URL", f"{server.url}/v1")
        client = resolve_lm(
            f"vertex_ai/{VERTEX_MODEL}", retry=RetryPolicy(max_attempts=3, base_delay=0.01)
        )
        with pytest.raises(LMAuthError, match="GOOGLE_APPLICATION_CREDENTIALS") as caught:
            call(client)
        assert "PRIVATE KEY" not in str(caught.value)
        assert caught.value.__cause__ is None
    assert server.requests == []  # never sent without a token


def test_vertex_sends_no_default_credentials_to_a_base_url_given_in_code(
    server: FaultServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VERTEXAI_PROJECT", "p")
    monkeypatch.setenv("VERTEXAI_LOCATION", "us-east5")
    with pytest.raises(ConfigError, match=r"access_token=\.\.\. or credentials="):
        resolve_lm(f"vertex_ai/{VERTEX_MODEL}", base_url=f"{server.url}/v1")
    assert server.requests == []


def test_vertex_defaults_to_google_s_regional_host() -> None:
    client = VertexClient(VERTEX_MODEL, region="us-east5", project_id="p", access_token="ya29.x")
    assert client.base_url == "https://us-east5-aiplatform.googleapis.com/v1"
    glob = VertexClient(VERTEX_MODEL, region="global", project_id="p", access_token="ya29.x")
    assert glob.base_url == "https://aiplatform.googleapis.com/v1"


def test_vertex_without_region_project_or_credentials_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ConfigError, match="VERTEXAI_LOCATION"):
        resolve_lm(f"vertex_ai/{VERTEX_MODEL}", access_token="ya29.x")
    monkeypatch.setenv("VERTEXAI_LOCATION", "us-east5")
    with pytest.raises(ConfigError, match="VERTEXAI_PROJECT"):
        resolve_lm(f"vertex_ai/{VERTEX_MODEL}", access_token="ya29.x")
    monkeypatch.setenv("VERTEXAI_PROJECT", "p")
    pytest.importorskip("google.auth")
    with pytest.raises(ConfigError, match="GOOGLE_APPLICATION_CREDENTIALS"):
        resolve_lm(f"vertex_ai/{VERTEX_MODEL}")


def test_vertex_supports_only_claude() -> None:
    with pytest.raises(ConfigError, match="only Anthropic's Claude"):
        resolve_lm("vertex_ai/gemini-2.5-pro", access_token="ya29.x")


def test_vertex_claude_is_priced_by_genai_prices() -> None:
    pytest.importorskip("genai_prices")
    from gepetto.lm.pricing import GenaiPrices

    assert (GenaiPrices().cost("vertex_ai", VERTEX_MODEL, 1_000_000, 0) or 0) > 0
