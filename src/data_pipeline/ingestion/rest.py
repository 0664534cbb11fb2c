"""RESTAPISource: JSON APIs over httpx, with auth, retries, pagination, concurrency and state.

Requests go through one ``httpx.Client`` per ``ingest()``. Every request passes the shared rate
limiter and the retry loop (exponential backoff with jitter on connection errors, timeouts, 429
and 5xx, honouring ``Retry-After``). Pages that can be addressed up front (offset or page number
with a known total, or an explicit ``params_list``) are fetched concurrently and kept in order.
Each page is parsed to a polars frame in Rust; pages are concatenated, then nested objects are
flattened into ``parent__child`` columns.
"""

from __future__ import annotations

import email.utils
import random
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from data_pipeline.core.config import ConfigModel
from data_pipeline.core.errors import (
    ConfigError,
    IngestionAuthenticationError,
    IngestionConnectionError,
    IngestionError,
    IngestionTimeoutError,
)
from data_pipeline.core.secrets import is_secret_key, redact_url, register_secret
from data_pipeline.ingestion._common import (
    DeliveredKeys,
    FrameBody,
    StateStore,
    auto_records,
    decode_json,
    flatten_structs,
    records_of,
    records_to_frame,
    select_path,
)
from data_pipeline.ingestion.base import DataSource, SourceConfig

if TYPE_CHECKING:
    import httpx
    import polars as pl

__all__ = ["RESTAPIConfig", "RESTAPISource"]


# -- config ---------------------------------------------------------------------------------


class BearerAuth(ConfigModel):
    type: Literal["bearer"]
    token: SecretStr


class BasicAuth(ConfigModel):
    type: Literal["basic"]
    username: str
    password: SecretStr


class ApiKeyAuth(ConfigModel):
    type: Literal["api_key"]
    key: SecretStr
    name: str = "X-API-Key"
    """The header or query parameter that carries the key."""
    location: Literal["header", "query"] = Field(default="header", alias="in")


class OAuth2ClientCredentials(ConfigModel):
    type: Literal["oauth2_client_credentials"]
    endpoint: str
    """The token endpoint (its URL)."""
    client_id: str
    client_secret: SecretStr
    scope: str | None = None


Auth = Annotated[
    BearerAuth | BasicAuth | ApiKeyAuth | OAuth2ClientCredentials, Field(discriminator="type")
]


class RetryConfig(ConfigModel):
    max_attempts: int = Field(default=5, ge=1)
    backoff_factor: float = Field(default=0.5, ge=0)
    """First wait in seconds; doubled after each failure, with jitter."""
    max_backoff: float = Field(default=30.0, ge=0)
    max_retry_after: float = Field(default=300.0, ge=0)
    """Longest ``Retry-After`` wait honoured; a longer one fails at once."""
    statuses: list[int] = Field(default_factory=lambda: [429, 500, 502, 503, 504])


class PaginationConfig(ConfigModel):
    type: Literal["offset", "page", "cursor", "next_url", "link_header"]
    limit: int | None = Field(default=None, ge=1)
    """Page size (offset: sent as ``limit_param``; page: sent as ``page_size_param`` if set)."""
    offset_param: str = "offset"
    limit_param: str = "limit"
    start: int | None = None
    """First offset or page number (default: the value in ``params``, else 0 / 1)."""
    page_param: str = "page"
    page_size_param: str | None = None
    total_path: str | None = None
    """Path in the body to the total number of records (offset, page)."""
    total_pages_path: str | None = None
    has_more_path: str | None = None
    """Path in the body to a flag that is false on the last page."""
    cursor_path: str | None = None
    """Path in the body to the next cursor (cursor)."""
    cursor_param: str = "cursor"
    cursor_in: Literal["params", "body"] = "params"
    next_url_path: str | None = None
    """Path in the body to the next page's URL (next_url); default ``next``."""

    @model_validator(mode="after")
    def _needs(self) -> PaginationConfig:
        if self.type == "cursor" and not self.cursor_path:
            raise ValueError(
                "cursor pagination needs 'cursor_path' (where the next cursor is in the body)"
            )
        return self


class IncrementalConfig(ConfigModel):
    cursor_field: str
    """The record field that grows (``updated_at``, ``id``)."""
    param: str
    """The query parameter (or JSON body key for POST) that receives the last value."""
    initial_value: Any = None
    lookback: float = Field(default=0, ge=0)
    """Go back this much (seconds for timestamps, units for numbers) to catch late rows."""
    primary_key: str | list[str] | None = None
    """Rows already delivered at the boundary are dropped by this key."""
    state_path: str | None = None


class RESTAPIConfig(SourceConfig):
    """Config of :class:`RESTAPISource`."""

    url: str
    method: str = "GET"
    headers: dict[str, str | SecretStr] = Field(default_factory=dict)
    params: dict[str, Any] = Field(default_factory=dict)
    json_body: Any = Field(default=None, alias="json")
    timeout: float = Field(default=30.0, gt=0)
    auth: Auth | None = None
    data_selector: str | None = None
    flatten: bool = True
    pagination: PaginationConfig | None = None
    max_pages: int | None = Field(default=None, ge=1)
    params_list: list[dict[str, Any]] | None = None
    """Fetch once per entry (merged into ``params``), concurrently, results in order."""
    max_concurrency: int = Field(default=8, ge=1)
    rate_limit: float | None = Field(default=None, gt=0)
    """Requests per second, shared by every request of the source (parallel ones included)."""
    retry: RetryConfig = Field(default_factory=RetryConfig)
    incremental: IncrementalConfig | None = None
    verify: bool = True

    @model_validator(mode="after")
    def _one_paging(self) -> RESTAPIConfig:
        if self.params_list is not None and self.pagination is not None:
            raise ValueError("give either 'params_list' or 'pagination', not both")
        return self

    @field_validator("method")
    @classmethod
    def _method(cls, value: str) -> str:
        upper = value.upper()
        if upper not in ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"):
            raise ValueError("must be one of GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS")
        return upper

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value

    @field_validator("headers")
    @classmethod
    def _secret_headers(cls, value: dict[str, str | SecretStr]) -> dict[str, str | SecretStr]:
        return {
            k: SecretStr(v)
            if isinstance(v, str) and (is_secret_key(k) or k.lower() == "x-api-key")
            else v
            for k, v in value.items()
        }


# -- helpers --------------------------------------------------------------------------------


class RateLimiter:
    """A token bucket shared by every thread of one source: at most ``rate`` requests/second."""

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


def _link_next(header: str | None) -> str | None:
    """The ``rel="next"`` target of an RFC 8288 ``Link`` header."""
    if not header:
        return None
    for part in header.split(","):
        pieces = part.split(";")
        target = pieces[0].strip()
        if not (target.startswith("<") and target.endswith(">")):
            continue
        for param in pieces[1:]:
            key, _, val = param.strip().partition("=")
            if key.strip().lower() == "rel" and "next" in val.strip().strip('"').lower().split():
                return target[1:-1]
    return None


class _Page:
    __slots__ = ("body", "frame", "headers", "url")

    def __init__(
        self, frame: pl.DataFrame, body: Any, headers: Mapping[str, str], url: str
    ) -> None:
        self.frame = frame
        self.body = body
        self.headers = headers
        self.url = url


# -- the source -----------------------------------------------------------------------------


class RESTAPISource(DataSource):
    """Data source for REST APIs returning JSON.

    Example:
        >>> from data_pipeline.ingestion import RESTAPISource
        >>> source = RESTAPISource(name="orders", config={
        ...     "url": "https://api.example.com/orders",
        ...     "headers": {"Authorization": "Bearer YOUR_API_KEY"},
        ...     "params": {"status": "open"},
        ...     "data_selector": "data",
        ...     "pagination": {"type": "offset", "limit": 100, "total_path": "meta.total"},
        ...     "timeout": 30,
        ... })
    """

    config_model = RESTAPIConfig
    settings: RESTAPIConfig

    def __init__(self, name: str, config: Mapping[str, Any] | None = None) -> None:
        super().__init__(name, config)
        self._limiter = RateLimiter(self.settings.rate_limit)
        self._token: tuple[str, float] | None = None
        self._token_lock = threading.Lock()
        for value in self.settings.headers.values():
            if isinstance(value, SecretStr):
                register_secret(value)

    # -- http ---------------------------------------------------------------------------------

    def _client(self) -> httpx.Client:
        import httpx

        s = self.settings
        headers = {"Accept": "application/json"}
        for key, value in s.headers.items():
            headers[key] = value.get_secret_value() if isinstance(value, SecretStr) else value
        auth: Any = None
        if isinstance(s.auth, BearerAuth):
            headers["Authorization"] = f"Bearer {s.auth.token.get_secret_value()}"
        elif isinstance(s.auth, BasicAuth):
            auth = httpx.BasicAuth(s.auth.username, s.auth.password.get_secret_value())
        elif isinstance(s.auth, ApiKeyAuth) and s.auth.location == "header":
            headers[s.auth.name] = s.auth.key.get_secret_value()
        limits = httpx.Limits(max_connections=max(s.max_concurrency, 1) + 2)
        return httpx.Client(
            headers=headers,
            auth=auth,
            timeout=s.timeout,
            verify=s.verify,
            follow_redirects=True,
            limits=limits,
        )

    def _auth_params(self) -> dict[str, Any]:
        auth = self.settings.auth
        if isinstance(auth, ApiKeyAuth) and auth.location == "query":
            return {auth.name: auth.key.get_secret_value()}
        return {}

    def _oauth_header(self, client: httpx.Client, *, refresh: bool = False) -> dict[str, str]:
        auth = self.settings.auth
        if not isinstance(auth, OAuth2ClientCredentials):
            return {}
        with self._token_lock:
            if refresh or self._token is None or self._token[1] <= time.monotonic():
                data = {"grant_type": "client_credentials"}
                if auth.scope:
                    data["scope"] = auth.scope
                response = self._send(
                    client,
                    "POST",
                    auth.endpoint,
                    data=data,
                    auth=(auth.client_id, auth.client_secret.get_secret_value()),
                )
                body = decode_json(
                    response.content, where=self._where(response), component=self.label
                )
                token = body.get("access_token") if isinstance(body, Mapping) else None
                if not token:
                    raise IngestionAuthenticationError(
                        f"token endpoint {redact_url(auth.endpoint)} returned no access_token",
                        component=self.label,
                        hint="check client_id, client_secret and scope",
                    )
                register_secret(token)
                expires = float(body.get("expires_in") or 3600)
                self._token = (str(token), time.monotonic() + max(expires - 30, 1))
            return {"Authorization": f"Bearer {self._token[0]}"}

    def _where(self, response: httpx.Response) -> str:
        return f"{response.request.method} {redact_url(str(response.request.url))}"

    def _send(self, client: httpx.Client, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """One request with rate limiting and retries; fails clearly on anything else."""
        import httpx

        retry = self.settings.retry
        shown = redact_url(url)
        attempt = 0
        while True:
            attempt += 1
            self._limiter.wait()
            wait: float | None = None
            try:
                response = client.request(method, url, **kwargs)
            except httpx.TimeoutException as exc:
                if attempt >= retry.max_attempts:
                    raise IngestionTimeoutError(
                        f"{method} {shown} timed out after {attempt} attempt(s) "
                        f"(timeout {self.settings.timeout}s): {type(exc).__name__}",
                        component=self.label,
                        hint="increase the 'timeout' value in the config, or retry.max_attempts",
                    ) from None
                reason = f"timeout ({type(exc).__name__})"
            except httpx.TransportError as exc:
                if attempt >= retry.max_attempts:
                    raise IngestionConnectionError(
                        f"{method} {shown} could not connect after {attempt} attempt(s): "
                        f"{type(exc).__name__}: {exc}",
                        component=self.label,
                        hint="check the URL, host and port, and that the server is running",
                    ) from None
                reason = f"{type(exc).__name__}: {exc}"
            else:
                status = response.status_code
                if status < 400:
                    return response
                if status in retry.statuses and attempt < retry.max_attempts:
                    wait = parse_retry_after(response.headers.get("Retry-After"))
                    if wait is not None and wait > retry.max_retry_after:
                        self._fail(
                            response, f"asks to retry after {wait:.0f}s (more than max_retry_after)"
                        )
                    reason = f"HTTP {status}"
                else:
                    self._fail(response)
            backoff = min(retry.max_backoff, retry.backoff_factor * 2 ** (attempt - 1))
            backoff *= 0.5 + random.random() / 2  # jitter: 50-100% of the exponential wait
            delay = max(wait, backoff) if wait is not None else backoff
            self.logger.warning(
                "%s: %s %s failed (%s); retry %d/%d in %.2fs",
                self.label,
                method,
                shown,
                reason,
                attempt,
                retry.max_attempts - 1,
                delay,
            )
            op = self.current_operation
            op.details["retries"] = op.details.get("retries", 0) + 1
            time.sleep(delay)

    def _fail(self, response: httpx.Response, extra: str = "") -> None:
        status = response.status_code
        start = response.text[:200].replace("\n", " ")
        where = self._where(response)
        message = f"{where} returned HTTP {status} {response.reason_phrase}"
        if extra:
            message += f" and {extra}"
        message += f"; body starts with {start!r}"
        if status in (401, 403):
            raise IngestionAuthenticationError(
                message,
                component=self.label,
                hint="check the credentials (auth, headers) in the config",
            )
        transient = status in self.settings.retry.statuses
        raise IngestionError(
            message,
            component=self.label,
            transient=transient,
            hint="the server kept failing; retry later or raise retry.max_attempts"
            if transient
            else "check the URL, params and body of the request",
        )

    def _fetch(
        self,
        client: httpx.Client,
        url: str,
        params: Mapping[str, Any],
        body: Any,
    ) -> _Page:
        method = self.settings.method
        headers = self._oauth_header(client)
        import httpx

        extra = {**params, **self._auth_params()}
        kwargs: dict[str, Any] = {}
        if extra:  # httpx replaces the URL's own query with params: merge them instead
            target = httpx.URL(url)
            kwargs["params"] = target.params.merge({k: _param(v) for k, v in extra.items()})
            url = str(target.copy_with(query=None))
        if headers:
            kwargs["headers"] = headers
        if body is not None:
            kwargs["json"] = body
        try:
            response = self._send(client, method, url, **kwargs)
        except IngestionAuthenticationError:
            if not headers:
                raise
            kwargs["headers"] = self._oauth_header(client, refresh=True)  # the token expired early
            response = self._send(client, method, url, **kwargs)
        return self._parse(response)

    def _parse(self, response: httpx.Response) -> _Page:
        import polars as pl

        where = self._where(response)
        content = response.content
        if not content.strip() or response.status_code == 204:
            return _Page(pl.DataFrame(), None, response.headers, str(response.url))
        body = None
        frame = None
        stripped = content.lstrip()
        if (
            not self.settings.data_selector
            and stripped.startswith(b"[")
            and not stripped.startswith(b"[]")
        ):
            try:
                frame = pl.read_json(stripped, infer_schema_length=None)
            except Exception:
                frame = None
        elif stripped.startswith(b"{"):
            try:  # the whole object parsed in Rust; records and paging values read from it
                whole = pl.read_json(stripped, infer_schema_length=None)
                frame = records_of(whole, self.settings.data_selector)
                body = FrameBody(whole) if frame is not None else None
            except Exception:
                frame, body = None, None
        if frame is None:
            body = decode_json(content, where=where, component=self.label)
            if self.settings.data_selector:
                try:
                    records = select_path(body, self.settings.data_selector)
                except KeyError as exc:
                    keys = list(body) if isinstance(body, Mapping) else []
                    raise IngestionError(
                        f"{where}: data_selector {self.settings.data_selector!r} not found "
                        f"(missing {exc.args[0]!r})",
                        component=self.label,
                        hint=f"the top-level keys are: {', '.join(map(repr, keys)) or '(none)'}",
                    ) from None
            else:
                records, _ = auto_records(body)
            frame = records_to_frame(
                [] if records is None else records, where=where, component=self.label
            )
        return _Page(frame, body, response.headers, str(response.url))

    # -- reading ------------------------------------------------------------------------------

    def _read(self, **options: Any) -> Any:
        import polars as pl

        s = self.settings
        params = {**s.params, **options.pop("params", {})}
        if options:
            raise ConfigError(
                f"ingest() got unexpected options {sorted(options)}",
                component=self.label,
                hint="RESTAPISource.ingest() accepts params={...} to add query parameters",
            )
        state: StateStore | None = None
        saved: dict[str, Any] = {}
        body = s.json_body
        if s.incremental is not None:
            inc = s.incremental
            state = StateStore.for_source(self.name, inc.state_path)
            saved = state.load()
            last = saved.get("last_value", inc.initial_value)
            if last is not None:
                since = _minus(last, inc.lookback)
                if s.method in ("POST", "PUT", "PATCH") and isinstance(body, Mapping):
                    body = {**body, inc.param: since}
                else:
                    params[inc.param] = since
        with self._client() as client:
            pages = self._pages(client, params, body)
        frames = [p.frame for p in pages if p.frame.width]
        op = self.current_operation
        op.details["pages"] = len(pages)
        frame = pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()
        if s.flatten:
            frame = flatten_structs(frame)
        if s.incremental is not None and state is not None:
            frame = self._incremental(frame, saved, state)
        return frame

    def _pages(self, client: httpx.Client, params: dict[str, Any], body: Any) -> list[_Page]:
        s = self.settings
        url = s.url
        if s.params_list is not None:
            return self._parallel(client, url, [({**params, **p}, body) for p in s.params_list])
        pag = s.pagination
        if pag is None:
            return [self._fetch(client, url, params, body)]
        if pag.type in ("offset", "page"):
            return self._numbered(client, url, params, body, pag)
        return self._linked(client, url, params, body, pag)

    def _parallel(
        self, client: httpx.Client, url: str, requests: list[tuple[dict[str, Any], Any]]
    ) -> list[_Page]:
        workers = min(self.settings.max_concurrency, len(requests))
        if workers <= 1:
            return [self._fetch(client, url, p, b) for p, b in requests]
        with ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix=f"rest-{self.name}"
        ) as pool:
            return list(pool.map(lambda req: self._fetch(client, url, req[0], req[1]), requests))

    def _numbered(
        self,
        client: httpx.Client,
        url: str,
        params: dict[str, Any],
        body: Any,
        pag: PaginationConfig,
    ) -> list[_Page]:
        max_pages = self.settings.max_pages
        if pag.type == "offset":
            size = int(pag.limit or params.get(pag.limit_param) or 100)
            first = int(pag.start if pag.start is not None else params.get(pag.offset_param, 0))

            def at(i: int) -> dict[str, Any]:
                return {**params, pag.offset_param: first + i * size, pag.limit_param: size}
        else:
            size = int(
                pag.limit or (params.get(pag.page_size_param) if pag.page_size_param else 0) or 0
            )
            first = int(pag.start if pag.start is not None else params.get(pag.page_param, 1))

            def at(i: int) -> dict[str, Any]:
                extra = {pag.page_size_param: size} if pag.page_size_param and size else {}
                return {**params, pag.page_param: first + i, **extra}

        page = self._fetch(client, url, at(0), body)
        pages = [page]
        total_pages = self._total_pages(page, pag, size)
        if total_pages is not None:  # addressable up front: fetch the rest concurrently
            count = total_pages if max_pages is None else min(total_pages, max_pages)
            rest = [(at(i), body) for i in range(1, count)]
            return pages + self._parallel(client, url, rest) if rest else pages
        i = 1
        while not self._is_last(page, pag) and (max_pages is None or i < max_pages):
            page = self._fetch(client, url, at(i), body)
            if page.frame.height == 0:
                break
            pages.append(page)
            i += 1
        return pages

    def _total_pages(self, page: _Page, pag: PaginationConfig, size: int) -> int | None:
        if page.body is None and (pag.total_path or pag.total_pages_path):
            return None
        if pag.total_pages_path:
            value = _maybe(page.body, pag.total_pages_path)
            return int(value) if value is not None else None
        if pag.total_path:
            total = _maybe(page.body, pag.total_path)
            if total is None:
                return None
            per_page = size or page.frame.height or 1
            return max(1, -(-int(total) // per_page))
        return None

    def _is_last(self, page: _Page, pag: PaginationConfig) -> bool:
        if page.frame.height == 0:
            return True
        if pag.has_more_path:
            more = _maybe(page.body, pag.has_more_path)
            return not more
        return False

    def _linked(
        self,
        client: httpx.Client,
        url: str,
        params: dict[str, Any],
        body: Any,
        pag: PaginationConfig,
    ) -> list[_Page]:
        max_pages = self.settings.max_pages
        pages: list[_Page] = []
        next_url: str | None = url
        next_params: dict[str, Any] = params
        next_body = body
        seen: set[str] = set()
        while next_url is not None and (max_pages is None or len(pages) < max_pages):
            page = self._fetch(client, next_url, next_params, next_body)
            pages.append(page)
            if self._is_last(page, pag):
                break
            if pag.type == "cursor":
                cursor = _maybe(page.body, pag.cursor_path or "")
                if cursor in (None, "") or str(cursor) in seen:
                    break
                seen.add(str(cursor))
                if pag.cursor_in == "body":
                    next_body = {**(next_body or {}), pag.cursor_param: cursor}
                else:
                    next_params = {**params, pag.cursor_param: cursor}
            else:
                if pag.type == "next_url":
                    target = _maybe(page.body, pag.next_url_path or "next")
                else:
                    target = _link_next(page.headers.get("Link"))
                if not target:
                    break
                import httpx

                resolved = str(httpx.URL(page.url).join(str(target)))
                if resolved in seen:
                    break
                seen.add(resolved)
                next_url, next_params = resolved, {}  # the next URL carries its own query
        return pages

    # -- incremental ------------------------------------------------------------------------

    def _incremental(
        self, frame: pl.DataFrame, saved: dict[str, Any], state: StateStore
    ) -> pl.DataFrame:
        """Drop the rows delivered before (by ``primary_key``), save the new cursor and keys."""
        inc = self.settings.incremental
        assert inc is not None
        keys = (
            [inc.primary_key] if isinstance(inc.primary_key, str) else list(inc.primary_key or [])
        )
        if frame.height == 0:
            return frame
        missing = [c for c in [inc.cursor_field, *keys] if c not in frame.columns]
        if missing:
            raise IngestionError(
                f"incremental field(s) {', '.join(map(repr, missing))} not in the records",
                component=self.label,
                hint=f"the records have columns: {', '.join(map(repr, frame.columns))}",
            )
        delivered = (
            DeliveredKeys(state, keys, inc.cursor_field, saved, component=self.label)
            if keys
            else None
        )
        if delivered is not None and len(delivered):
            frame, dropped = delivered.drop_delivered(frame)
            self.current_operation.details["duplicates_dropped"] = dropped
        if frame.height == 0:
            return frame
        new_last = frame[inc.cursor_field].max()
        previous_last = saved.get("last_value")
        last = new_last if previous_last is None or _gt(new_last, previous_last) else previous_last
        values = {"last_value": _jsonable(last)}
        if delivered is None:
            state.save(values)
            return frame
        # the rows at or after last - lookback are read again next time: remember their keys
        since = _at_or_after(inc.cursor_field, _minus(new_last, inc.lookback), frame)
        delivered.remember(frame, since)
        delivered.save(values)
        return frame


def _at_or_after(column: str, boundary: Any, frame: pl.DataFrame) -> pl.Expr:
    """``column >= boundary``; ISO timestamps given as text are compared as instants."""
    import polars as pl

    dtype = frame.schema[column]
    col = pl.col(column)
    when = _parse_time(boundary)
    if dtype == pl.String and when is not None:
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        parsed = col.str.to_datetime(time_zone="UTC", strict=False)
        text = pl.lit(str(boundary), dtype=pl.String)
        return pl.when(parsed.is_not_null()).then(parsed >= when).otherwise(col >= text)
    try:
        frame.head(1).select(col >= pl.lit(boundary).cast(dtype))
    except Exception:  # a boundary of another type: only the last value's rows
        return col == pl.lit(frame[column].max(), dtype=dtype)
    return col >= pl.lit(boundary).cast(dtype)


def _param(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return value


def _maybe(body: Any, path: str) -> Any:
    if body is None or not path:
        return None
    if isinstance(body, FrameBody):
        try:
            return body.get(path)
        except KeyError:
            return None
    try:
        return select_path(body, path)
    except KeyError:
        return None


def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    return None


def _minus(value: Any, lookback: float) -> Any:
    """``value - lookback`` for numbers and ISO timestamps (kept in the same textual form)."""
    if not lookback:
        return value
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value - lookback
    when = _parse_time(value)
    if when is None:
        return value
    earlier = when - timedelta(seconds=lookback)
    if isinstance(value, str):
        text = earlier.isoformat()
        if value.endswith("Z") and text.endswith("+00:00"):
            text = text[:-6] + "Z"
        return text
    return earlier


def _gt(a: Any, b: Any) -> bool:
    ta, tb = _parse_time(a), _parse_time(b)
    if ta is not None and tb is not None:
        return ta > tb
    try:
        return bool(a > b)
    except TypeError:
        return str(a) > str(b)


def _jsonable(value: Any) -> Any:
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value
