"""The ``httpx.Auth`` flows behind the auth configs of :mod:`data_pipeline.ingestion.http.auth`.

Imported only when a client is built (httpx is not imported with ``data_pipeline``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Generator

import httpx

from data_pipeline.core.errors import IngestionAuthenticationError
from data_pipeline.core.secrets import redact_url, register_secret
from data_pipeline.ingestion.http.auth import OAuth2ClientCredentials

__all__ = ["HeaderAuth", "OAuth2ClientCredentialsFlow", "QueryAuth"]


class HeaderAuth(httpx.Auth):
    """One header with a fixed value (bearer tokens, API keys)."""

    def __init__(self, name: str, value: str) -> None:
        self.name, self.value = name, value

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers[self.name] = self.value
        yield request


class QueryAuth(httpx.Auth):
    """One query parameter with a fixed value (API keys sent in the URL)."""

    def __init__(self, name: str, value: str) -> None:
        self.name, self.value = name, value

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.url = request.url.copy_set_param(self.name, self.value)
        yield request


class OAuth2ClientCredentialsFlow(httpx.Auth):
    """Client credentials grant: one token shared by every thread, refreshed when needed."""

    def __init__(self, config: OAuth2ClientCredentials, *, component: str | None) -> None:
        self.config = config
        self.component = component
        self._lock = threading.Lock()
        self._token: str | None = None
        self._refresh: str | None = None
        self._expires = 0.0

    def _token_request(self, *, refresh: bool) -> httpx.Request:
        c = self.config
        data = {"grant_type": "client_credentials"}
        if refresh and self._refresh:
            data = {"grant_type": "refresh_token", "refresh_token": self._refresh}
        if c.scope:
            data["scope"] = c.scope
        request = httpx.Request("POST", c.endpoint, data=data)
        basic = httpx.BasicAuth(c.client_id, c.client_secret.get_secret_value())
        return next(basic.auth_flow(request))

    def _keep(self, response: httpx.Response) -> bool:
        """Take the token from a token endpoint's answer; False if it gave none."""
        response.read()  # only the token answer: the data answers stay streamed (and capped)
        try:
            body = response.json()
        except ValueError:
            body = None
        token = body.get("access_token") if isinstance(body, dict) else None
        if response.status_code >= 400 or not token:
            return False
        token = str(token)
        register_secret(token)
        refresh = body.get("refresh_token") if isinstance(body, dict) else None
        if refresh:
            register_secret(str(refresh))
            self._refresh = str(refresh)
        given = body.get("expires_in")
        expires = 3600.0 if given in (None, "") else float(given)  # 0 means expired already
        self._token = token
        self._expires = time.monotonic() + max(expires - 30, 1)
        return True

    def _fetch(self, *, refresh: bool) -> Generator[httpx.Request, httpx.Response, None]:
        response = yield self._token_request(refresh=refresh)
        if self._keep(response):
            return
        if refresh and self._refresh:  # the refresh token was refused: ask afresh
            self._refresh = None
            response = yield self._token_request(refresh=False)
            if self._keep(response):
                return
        start = response.text[:200].replace("\n", " ")
        raise IngestionAuthenticationError(
            f"token endpoint {redact_url(self.config.endpoint)} returned HTTP "
            f"{response.status_code} and no access_token; body starts with {start!r}",
            component=self.component,
            hint="check client_id, client_secret and scope",
        )

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        with self._lock:  # one thread asks for the token; the others wait and use it
            if self._token is None or self._expires <= time.monotonic():
                yield from self._fetch(refresh=self._token is not None)
            token = self._token
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401:  # revoked or expired early: a new token, once
            with self._lock:
                if self._token == token:
                    yield from self._fetch(refresh=True)
                token = self._token
            request.headers["Authorization"] = f"Bearer {token}"
            yield request
