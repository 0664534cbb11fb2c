"""HttpClient: the one way data-pipeline sends HTTP requests (RESTAPISource, DataEnricher lookups).

Every request:

* passes a shared rate limiter (``rate_limit`` requests per second, parallel requests included);
* has a **total** time limit (``timeout``: connect, headers and body together; every socket
  operation waits at most what is left of it, so a server trickling one byte at a time cannot
  keep a request alive);
* reads at most ``max_body_size`` bytes of body (checked against ``Content-Length`` first, then
  while reading), so a huge answer fails clearly instead of filling the memory;
* follows redirects itself: to the same origin with credentials; to another origin only when
  ``redirects.cross_origin`` is ``allow``, and then without any credential (no auth, no
  ``Authorization``/``Cookie``, no header or query parameter whose name is secret or that the
  config marks secret). Next-page URLs are held to the same rule;
* is retried by `tenacity <https://tenacity.readthedocs.io>`_ on connection errors, timeouts
  and the ``retry.statuses`` (429, 5xx), with exponential backoff and jitter, honouring
  ``Retry-After``; only for the ``retry.methods`` (the safe methods by default): a POST is
  resent only when the config opts in, or when the connection was never made;
* fails with our errors: :class:`IngestionTimeoutError`, :class:`IngestionConnectionError`,
  :class:`IngestionAuthenticationError` (401/403) or :class:`IngestionError`, naming the method
  and the URL without its secrets.
"""

from __future__ import annotations

import email.utils
import random
import threading
import time
from collections.abc import Callable, Collection, Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from data_pipeline.core.config import ConfigModel
from data_pipeline.core.errors import (
    DataPipelineError,
    IngestionAuthenticationError,
    IngestionConnectionError,
    IngestionError,
    IngestionTimeoutError,
)
from data_pipeline.core.secrets import is_secret_key, redact_url

if TYPE_CHECKING:
    import logging

    import httpx

__all__ = [
    "DEFAULT_MAX_BODY_SIZE",
    "HttpClient",
    "RateLimiter",
    "RedirectConfig",
    "RetryConfig",
    "parse_retry_after",
]

#: the default cap on a response body: 100 MiB
DEFAULT_MAX_BODY_SIZE = 100 * 1024 * 1024
#: methods that do not change the server's state: retried without opting in (RFC 9110 9.2.1)
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


class RetryConfig(ConfigModel):
    """When and how a failed request is tried again.

    Example:
        >>> RetryConfig(max_attempts=3, methods=["GET", "POST"]).methods
        ['GET', 'POST']
    """

    max_attempts: int = Field(default=5, ge=1)
    """Attempts in all, the first included: ``1`` never retries. When they are used up the
    last error is raised."""
    backoff_factor: float = Field(default=0.5, ge=0)
    """First wait in seconds; doubled after each failure, with jitter (50-100%)."""
    max_backoff: float = Field(default=30.0, ge=0)
    """Cap in seconds on the exponential wait between attempts; a server's ``Retry-After``
    (up to ``max_retry_after``) may ask for longer and is honoured."""
    max_retry_after: float = Field(default=300.0, ge=0)
    """Longest ``Retry-After`` wait honoured; a longer one fails at once."""
    statuses: list[int] = Field(default_factory=lambda: [429, 500, 502, 503, 504])
    """HTTP statuses that are retried (besides connection errors and timeouts). Any other
    status of 400 or more fails at once; 401/403 as an authentication error."""
    methods: list[str] = Field(default_factory=lambda: list(SAFE_METHODS))
    """Methods that are retried. A POST, PUT, PATCH or DELETE is resent only if listed here
    (or when the connection failed before anything was sent)."""

    def model_post_init(self, context: Any) -> None:
        self.methods = [m.upper() for m in self.methods]


class RedirectConfig(ConfigModel):
    """Which redirects are followed.

    Example:
        >>> RedirectConfig(cross_origin="allow").max
        10
    """

    follow: bool = True
    """Follow 3xx redirects. ``false``: a redirect is an error naming its status and target
    (``Location``, credentials masked), never read as a page."""
    max: int = Field(default=10, ge=0)
    """Redirects followed per request at most; one more is an error (``0`` refuses every
    redirect)."""
    cross_origin: Literal["refuse", "allow"] = "refuse"
    """``refuse``: a redirect (or next-page URL) to another scheme, host or port is an error;
    ``allow``: it is followed without any credential."""


class RateLimiter:
    """A token bucket shared by every thread of one client: at most ``rate`` requests/second."""

    def __init__(self, rate: float | None) -> None:
        self.interval = 1.0 / rate if rate else 0.0
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            time.sleep(start - now)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP-date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


# -- the total time limit -------------------------------------------------------------------

_deadline = threading.local()


def _remaining(timeout: float | None) -> float | None:
    """The socket timeout to use now: the operation's, but never past the request's deadline."""
    deadline: float | None = getattr(_deadline, "at", None)
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        import httpcore

        raise httpcore.ReadTimeout("the request's total time limit is exhausted")
    return left if timeout is None else min(timeout, left)


def _deadline_backend(inner: Any) -> Any:
    """An httpcore network backend whose every socket operation ends by the request's deadline.

    The deadline is per thread (the sync client sends a request on the calling thread), set by
    :meth:`HttpClient._once` around a request and its body.
    """
    import httpcore

    class Stream(httpcore.NetworkStream):
        def __init__(self, stream: Any) -> None:
            self._stream = stream

        def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
            return bytes(self._stream.read(max_bytes, _remaining(timeout)))

        def write(self, buffer: bytes, timeout: float | None = None) -> None:
            self._stream.write(buffer, _remaining(timeout))

        def close(self) -> None:
            self._stream.close()

        def start_tls(
            self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
        ) -> httpcore.NetworkStream:
            return Stream(self._stream.start_tls(ssl_context, server_hostname, _remaining(timeout)))

        def get_extra_info(self, info: str) -> Any:
            return self._stream.get_extra_info(info)

    class Backend(httpcore.NetworkBackend):
        def connect_tcp(
            self,
            host: str,
            port: int,
            timeout: float | None = None,
            local_address: str | None = None,
            socket_options: Any = None,
        ) -> httpcore.NetworkStream:
            stream = inner.connect_tcp(
                host,
                port,
                timeout=_remaining(timeout),
                local_address=local_address,
                socket_options=socket_options,
            )
            return Stream(stream)

        def connect_unix_socket(
            self, path: str, timeout: float | None = None, socket_options: Any = None
        ) -> httpcore.NetworkStream:
            stream = inner.connect_unix_socket(
                path, timeout=_remaining(timeout), socket_options=socket_options
            )
            return Stream(stream)

        def sleep(self, seconds: float) -> None:
            inner.sleep(seconds)

    return Backend()


def _transport(*, verify: bool, max_connections: int) -> httpx.HTTPTransport:
    import httpcore
    import httpx

    transport = httpx.HTTPTransport(
        verify=verify, limits=httpx.Limits(max_connections=max_connections)
    )
    pool = getattr(transport, "_pool", None)
    if not isinstance(pool, httpcore.ConnectionPool) or not hasattr(pool, "_network_backend"):
        raise RuntimeError(  # pragma: no cover - guards an httpx/httpcore upgrade
            "this httpx/httpcore version keeps its connection pool elsewhere: the total request "
            "time limit cannot be enforced"
        )
    pool._network_backend = _deadline_backend(pool._network_backend)
    return transport


# -- origins --------------------------------------------------------------------------------


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    port = url.port if url.port is not None else {"http": 80, "https": 443}.get(url.scheme)
    return (url.scheme, url.host, port)


# -- the client -----------------------------------------------------------------------------


class HttpClient:
    """One httpx client with our limits, redirect rule, retries and error translation.

    Args:
        origin: the URL whose origin (scheme, host, port) the credentials belong to.
        timeout: the total time limit of one request attempt, in seconds.
        max_body_size: the largest body read, in bytes.
        headers: sent with every request to the origin.
        auth: an ``httpx.Auth`` applied to every request to the origin.
        secret_headers / secret_params: names that carry credentials besides those whose name
            says so (removed when a request leaves the origin).
        component: the component named in errors; logger: where retries are logged;
        on_retry: called once per retry (to count them).
    """

    def __init__(
        self,
        origin: str,
        *,
        timeout: float = 30.0,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        retry: RetryConfig | None = None,
        redirects: RedirectConfig | None = None,
        verify: bool = True,
        headers: Mapping[str, str] | None = None,
        auth: httpx.Auth | None = None,
        rate_limit: float | None = None,
        max_connections: int = 10,
        secret_headers: Collection[str] = (),
        secret_params: Collection[str] = (),
        component: str | None = None,
        logger: logging.Logger | None = None,
        on_retry: Callable[[], None] | None = None,
    ) -> None:
        import httpx

        self.timeout = timeout
        self.max_body_size = int(max_body_size)
        self.retry = retry or RetryConfig()
        self.redirects = redirects or RedirectConfig()
        self.auth = auth
        self.component = component
        self.logger = logger
        self.on_retry = on_retry
        self.limiter = RateLimiter(rate_limit)
        import tenacity

        self._retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.retry.max_attempts),
            wait=self._wait,
            retry=tenacity.retry_if_exception(self._retryable),
            before_sleep=self._before_sleep,
            reraise=True,
            sleep=time.sleep,
        )
        self._origin = _origin(httpx.URL(origin))
        self._secret_headers = {h.lower() for h in secret_headers}
        self._secret_params = set(secret_params)
        self._client = httpx.Client(
            transport=_transport(verify=verify, max_connections=max_connections),
            headers=dict(headers or {}),
            timeout=timeout,
            follow_redirects=False,
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the public method ----------------------------------------------------------------

    def request(
        self,
        method: str,
        url: str,
        *,
        params: Any = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        accept: Collection[int] = (),
    ) -> httpx.Response:
        """Send one request (retried as configured); the response has its body read.

        A status below 400, or one in ``accept`` (e.g. 404 for a lookup), is returned; any
        other fails with our error after the retries.
        """
        method = method.upper()
        for attempt in self._retrying:  # one Retrying per client; its state is per call
            with attempt:
                try:
                    return self._once(
                        method,
                        url,
                        params=params,
                        json=json,
                        headers=headers,
                        accept=accept,
                        number=attempt.retry_state.attempt_number,
                    )
                except DataPipelineError as exc:
                    exc.http_method, exc.http_url = method, url  # type: ignore[attr-defined]
                    raise
        raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover

    # -- retries ------------------------------------------------------------------------------

    def _retryable(self, exc: BaseException) -> bool:
        if not isinstance(exc, DataPipelineError) or not exc.transient:
            return False
        if getattr(exc, "never_sent", False):  # the connection was not made: nothing was sent
            return True
        return getattr(exc, "http_method", None) in self.retry.methods

    def _wait(self, state: Any) -> float:
        retry = self.retry
        n = state.attempt_number
        backoff = min(retry.max_backoff, retry.backoff_factor * 2 ** (n - 1))
        backoff *= 0.5 + random.random() / 2  # jitter: 50-100% of the exponential wait
        exc = state.outcome.exception() if state.outcome is not None else None
        asked = getattr(exc, "retry_after", None)
        return max(float(asked), backoff) if asked is not None else float(backoff)

    def _before_sleep(self, state: Any) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        if self.logger is not None:
            self.logger.warning(
                "%s: %s %s failed (%s); retry %d/%d in %.2fs",
                self.component,
                getattr(exc, "http_method", "?"),
                redact_url(getattr(exc, "http_url", "")),
                getattr(exc, "reason", type(exc).__name__),
                state.attempt_number,
                self.retry.max_attempts - 1,
                state.next_action.sleep if state.next_action else 0.0,
            )
        if self.on_retry is not None:
            self.on_retry()

    # -- one attempt --------------------------------------------------------------------------

    def _once(
        self,
        method: str,
        url: str,
        *,
        params: Any,
        json: Any,
        headers: Mapping[str, str] | None,
        accept: Collection[int],
        number: int,
    ) -> httpx.Response:
        import httpx

        self.limiter.wait()
        request = self._client.build_request(method, url, params=params, json=json, headers=headers)
        shown = f"{method} {redact_url(str(request.url))}"
        attempts = f" after {number} attempts" if number > 1 else ""
        started = time.monotonic()
        _deadline.at = started + self.timeout
        try:
            request, auth = self._admit(request, shown)
            response = self._send(request, auth, shown)
            shown = f"{method} {redact_url(str(response.request.url))}"
            self._read_body(response, shown)
        except httpx.TimeoutException as exc:
            timed_out = IngestionTimeoutError(
                f"{shown} timed out{attempts}: it took longer than the time limit of "
                f"{self.timeout:g}s (connect, headers and body together): {type(exc).__name__}",
                component=self.component,
                hint="raise 'timeout' in the config if the server is slow but alive",
            )
            timed_out.reason = f"timeout ({type(exc).__name__})"  # type: ignore[attr-defined]
            timed_out.never_sent = isinstance(exc, httpx.ConnectTimeout)  # type: ignore[attr-defined]
            raise timed_out from None
        except httpx.TransportError as exc:
            error = IngestionConnectionError(
                f"{shown} could not connect{attempts}: {type(exc).__name__}: {exc}",
                component=self.component,
                hint="check the URL, host and port, and that the server is running",
            )
            error.reason = f"{type(exc).__name__}: {exc}"  # type: ignore[attr-defined]
            error.never_sent = isinstance(exc, httpx.ConnectError)  # type: ignore[attr-defined]
            raise error from None
        finally:
            _deadline.at = None
        if self.logger is not None:
            self.logger.debug(
                "%s -> %d (%d bytes, %.3fs)",
                shown,
                response.status_code,
                len(response.content),
                time.monotonic() - started,
            )
        status = response.status_code
        if status in accept:
            return response
        if response.is_redirect:  # only when redirects.follow is false: _send follows the others
            raise self._redirect_error(response, shown)
        if status < 400:
            return response
        raise self._status_error(response, shown, attempts)

    def _admit(self, request: httpx.Request, shown: str) -> tuple[httpx.Request, Any]:
        """The request as it may be sent, and the auth to apply: the origin's rule."""
        if self._same_origin(request.url):
            return request, self.auth if self.auth is not None else None
        if self.redirects.cross_origin != "allow":
            raise IngestionError(
                f"refusing {shown}: it is not on the configured origin "
                f"{self._origin[0]}://{self._origin[1]}",
                component=self.component,
                hint="set redirects.cross_origin: allow to follow it (without credentials)",
            )
        return self._without_credentials(request), None

    def _send(self, request: httpx.Request, auth: Any, shown: str) -> httpx.Response:
        hops = 0
        response = self._client.send(request, auth=auth, stream=True)
        while response.is_redirect and response.next_request is not None:
            if not self.redirects.follow:
                return response
            response.close()
            hops += 1
            if hops > self.redirects.max:
                raise IngestionError(
                    f"{shown} was redirected more than {self.redirects.max} times",
                    component=self.component,
                    hint="check the URL; raise redirects.max if the chain is expected",
                )
            target = response.next_request
            where = f"{request.method} {redact_url(str(request.url))}"
            target, auth = self._admit(
                target, f"the redirect of {where} to {redact_url(str(target.url))}"
            )
            response = self._client.send(target, auth=auth, stream=True)
        return response

    def _same_origin(self, url: httpx.URL) -> bool:
        here = _origin(url)
        if here == self._origin:
            return True
        scheme, host, port = self._origin  # http -> https on the same host keeps its credentials
        return scheme == "http" and port == 80 and here == ("https", host, 443)

    def _is_secret_header(self, name: str) -> bool:
        lower = name.lower()
        return (
            lower in ("authorization", "proxy-authorization", "cookie")
            or lower in self._secret_headers
            or is_secret_key(name)
        )

    def _without_credentials(self, request: httpx.Request) -> httpx.Request:
        import httpx

        url = request.url
        kept: list[tuple[str, Any]] = [
            (k, v)
            for k, v in url.params.multi_items()
            if k not in self._secret_params and not is_secret_key(k)
        ]
        clean_url = url.copy_with(userinfo=b"", query=None).copy_merge_params(kept)
        headers = {k: v for k, v in request.headers.items() if not self._is_secret_header(k)}
        headers.pop("host", None)
        headers.pop("content-length", None)
        body = request.read() if request.method not in ("GET", "HEAD") else b""
        return httpx.Request(request.method, clean_url, headers=headers, content=body or None)

    def _read_body(self, response: httpx.Response, shown: str) -> None:
        """Read the body, at most ``max_body_size`` bytes; the deadline bounds every read."""
        limit = self.max_body_size
        declared = response.headers.get("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            response.close()
            raise self._too_large(shown, f"announces {int(declared):,} bytes")
        chunks: list[bytes] = []
        size = 0
        try:
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > limit:
                    raise self._too_large(shown, f"sent more than {limit:,} bytes")
                chunks.append(chunk)
        finally:
            response.close()
        response._content = b"".join(chunks)  # what Response.read() would have kept

    def _too_large(self, shown: str, what: str) -> IngestionError:
        return IngestionError(
            f"{shown}: the response {what}, more than max_body_size ({self.max_body_size:,} bytes)",
            component=self.component,
            hint="raise 'max_body_size' in the config (e.g. '500MB'), or ask for smaller pages",
        )

    def _redirect_error(self, response: httpx.Response, shown: str) -> IngestionError:
        target = response.next_request
        location = str(target.url) if target is not None else response.headers["Location"]
        return IngestionError(
            f"{shown} returned HTTP {response.status_code} {response.reason_phrase}, a redirect "
            f"to {redact_url(location)}, and redirects.follow is false",
            component=self.component,
            hint="set redirects.follow: true to follow it, or use the target URL in the config",
        )

    def _status_error(self, response: httpx.Response, shown: str, attempts: str) -> IngestionError:
        status = response.status_code
        start = response.text[:200].replace("\n", " ")
        message = f"{shown} returned HTTP {status} {response.reason_phrase}{attempts}"
        retry = self.retry
        wait = None
        if status in retry.statuses:
            wait = parse_retry_after(response.headers.get("Retry-After"))
            if wait is not None and wait > retry.max_retry_after:
                message += f" and asks to retry after {wait:.0f}s (more than max_retry_after)"
                error = IngestionError(
                    message + f"; body starts with {start!r}",
                    component=self.component,
                    transient=False,
                    hint="retry later, or raise retry.max_retry_after",
                )
                return error
        message += f"; body starts with {start!r}"
        if status in (401, 403):
            return IngestionAuthenticationError(
                message,
                component=self.component,
                hint="check the credentials (auth, headers) in the config",
            )
        transient = status in retry.statuses
        error = IngestionError(
            message,
            component=self.component,
            transient=transient,
            hint="the server kept failing; retry later or raise retry.max_attempts"
            if transient
            else "check the URL, params and body of the request",
        )
        error.retry_after = wait  # type: ignore[attr-defined]
        error.reason = f"HTTP {status}"  # type: ignore[attr-defined]
        return error
