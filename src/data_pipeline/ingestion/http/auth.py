"""The auth kinds of an HTTP source: a config model each, and the ``httpx.Auth`` it builds.

| ``type`` | sends |
|---|---|
| ``bearer`` | ``Authorization: Bearer <token>`` |
| ``basic`` | ``Authorization: Basic ...`` (httpx's ``BasicAuth``) |
| ``api_key`` | the key in a header (``X-API-Key`` by default) or a query parameter |
| ``oauth2_client_credentials`` | a token from the token endpoint (client id and secret as
  HTTP Basic), cached until it expires, refreshed (with the ``refresh_token`` when the endpoint
  gave one) before it expires and once on a 401 |

The :class:`~data_pipeline.ingestion.http.client.HttpClient` applies the auth only to requests
to the configured origin: a redirect or next-page URL elsewhere carries none.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, SecretStr

from data_pipeline.core.config import ConfigModel

if TYPE_CHECKING:
    import httpx

__all__ = [
    "ApiKeyAuth",
    "AuthConfig",
    "BasicAuth",
    "BearerAuth",
    "OAuth2ClientCredentials",
    "build_auth",
]


class BearerAuth(ConfigModel):
    """``{"type": "bearer", "token": "${API_TOKEN}"}``."""

    type: Literal["bearer"]
    """``bearer``: sends ``Authorization: Bearer <token>``."""
    token: SecretStr
    """The token (kept secret); write ``${API_TOKEN}`` in a pipeline file."""


class BasicAuth(ConfigModel):
    """``{"type": "basic", "username": "alice", "password": "${API_PASSWORD}"}``."""

    type: Literal["basic"]
    """``basic``: HTTP Basic authentication (``Authorization: Basic ...``)."""
    username: str
    """The user name."""
    password: SecretStr
    """The password (kept secret); write ``${API_PASSWORD}`` in a pipeline file."""


class ApiKeyAuth(ConfigModel):
    """``{"type": "api_key", "key": "${API_KEY}", "name": "X-API-Key", "in": "header"}``."""

    type: Literal["api_key"]
    """``api_key``: sends ``key`` in the header or query parameter ``name``."""
    key: SecretStr
    """The API key (kept secret, also redacted from URLs when sent as a query parameter)."""
    name: str = "X-API-Key"
    """The header or query parameter that carries the key."""
    location: Literal["header", "query"] = Field(default="header", alias="in")
    """``header``: send the key as the header ``name``; ``query``: as the query parameter
    ``name`` of every request."""


class OAuth2ClientCredentials(ConfigModel):
    """``{"type": "oauth2_client_credentials", "endpoint": ".../token", "client_id": ...,
    "client_secret": "${CLIENT_SECRET}", "scope": "read"}``."""

    type: Literal["oauth2_client_credentials"]
    """``oauth2_client_credentials``: a token from ``endpoint`` by the client credentials
    grant, sent as a bearer token and cached until 30 s before its ``expires_in`` (1 h when the
    endpoint gives none); renewed then (by ``refresh_token`` when one was given) and once on a
    401."""
    endpoint: str
    """The token endpoint (its URL)."""
    client_id: str
    """The client id, sent to ``endpoint`` as HTTP Basic user."""
    client_secret: SecretStr
    """The client secret (kept secret), sent to ``endpoint`` as HTTP Basic password."""
    scope: str | None = None
    """The ``scope`` form field of the token request (space-separated scopes); absent: not
    sent, the server's default scope."""


AuthConfig = Annotated[
    BearerAuth | BasicAuth | ApiKeyAuth | OAuth2ClientCredentials, Field(discriminator="type")
]


def build_auth(config: Any, *, component: str | None = None) -> httpx.Auth | None:
    """The ``httpx.Auth`` of an auth config (``None`` for none)."""
    import httpx

    if config is None:
        return None
    from data_pipeline.ingestion.http import _flows

    if isinstance(config, BearerAuth):
        return _flows.HeaderAuth("Authorization", f"Bearer {config.token.get_secret_value()}")
    if isinstance(config, BasicAuth):
        return httpx.BasicAuth(config.username, config.password.get_secret_value())
    if isinstance(config, ApiKeyAuth):
        key = config.key.get_secret_value()
        if config.location == "query":
            return _flows.QueryAuth(config.name, key)
        return _flows.HeaderAuth(config.name, key)
    if isinstance(config, OAuth2ClientCredentials):
        return _flows.OAuth2ClientCredentialsFlow(config, component=component)
    raise TypeError(f"unknown auth config {type(config).__name__}")  # pragma: no cover
