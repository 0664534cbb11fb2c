"""RESTAPISource: JSON APIs over httpx, with auth, retries, pagination, concurrency and state.

Requests go through one :class:`~data_pipeline.ingestion.http.HttpClient` per ``ingest()``: a
total time limit and a body size cap per request, the shared rate limiter, retries by tenacity
(only for safe methods unless the config opts in), credentials kept on the configured origin.
Pages come from a :class:`~data_pipeline.ingestion.http.Paginator` (one class per kind); when the
first page tells how many there are, the others are fetched concurrently and kept in order.
Each page is parsed to a polars frame in Rust; pages are concatenated, then nested objects are
flattened into ``parent__child`` columns.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ByteSize, Field, SecretStr, field_validator, model_validator

from data_pipeline.core.config import ConfigModel
from data_pipeline.core.cursor import IncrementalCursor
from data_pipeline.core.errors import ConfigError, IngestionError
from data_pipeline.core.secrets import is_secret_key, register_secret
from data_pipeline.ingestion._common import MixedTypes, flatten_structs, parse_json_records
from data_pipeline.ingestion.base import DataSource, SourceConfig
from data_pipeline.ingestion.http.auth import ApiKeyAuth, AuthConfig, build_auth
from data_pipeline.ingestion.http.client import (
    DEFAULT_MAX_BODY_SIZE,
    RedirectConfig,
    RetryConfig,
    parse_retry_after,
)
from data_pipeline.ingestion.http.paginators import (
    DEFAULT_MAX_PAGES,
    Page,
    PageRequest,
    PaginationConfig,
    Paginator,
    SinglePagePaginator,
    paginate,
    query_value,
)

if TYPE_CHECKING:
    import httpx

    from data_pipeline.ingestion.http.client import HttpClient

__all__ = ["RESTAPIConfig", "RESTAPISource", "RetryConfig", "parse_retry_after"]


# -- config ---------------------------------------------------------------------------------


class IncrementalConfig(ConfigModel):
    cursor_field: str
    """The record field that grows (``updated_at``, ``id``)."""
    param: str
    """The query parameter (or JSON body key for POST) that receives the last value."""
    initial_value: Any = None
    """The value sent in ``param`` on the first run (before any state exists); absent: the
    first run sends no ``param`` and reads what the API returns without it."""
    lookback: float = Field(default=0, ge=0)
    """Go back this much (seconds for timestamps, units for numbers) to catch late rows."""
    primary_key: str | list[str] | None = None
    """Rows already delivered at the boundary are dropped by this key."""
    state_path: str | None = None
    """The JSON file keeping the last ``cursor_field`` value (and the keys delivered at it).
    Default ``.data_pipeline/state/<source name>.json``; a pipeline with a checkpoint keeps the
    state there instead. Delete it to start from ``initial_value`` again."""


class RESTAPIConfig(SourceConfig):
    """Config of :class:`RESTAPISource`."""

    url: str
    """The ``http://`` or ``https://`` URL of the first request; its query string is kept and
    merged with ``params``. Credentials (``auth``, secret headers) go only to this URL's origin."""
    method: str = "GET"
    """GET, POST, PUT, PATCH, DELETE, HEAD or OPTIONS (any case). Only GET, HEAD and OPTIONS
    are retried unless ``retry.methods`` lists the method."""
    headers: dict[str, str | SecretStr] = Field(default_factory=dict)
    """Headers sent with every request, beside ``Accept: application/json`` (which they may
    replace). Values of secret-looking names (``Authorization``, ``X-API-Key``, ``X-Auth-Token``, ...)
    are kept secret: redacted in messages and dropped on a request to another origin."""
    params: dict[str, Any] = Field(default_factory=dict)
    """Query parameters of every request, merged into the URL's own (booleans sent as
    ``true``/``false``, null as empty); pagination and ``incremental`` add theirs, and
    ``ingest(params=...)`` adds more for one call."""
    json_body: Any = Field(default=None, alias="json")
    """A JSON body sent with every request (for APIs queried by POST). A ``cursor`` pagination
    with ``cursor_in: body`` adds its keys to it; ``incremental`` writes its ``param`` into it
    for POST/PUT/PATCH when it is an object (else into the query string)."""
    timeout: float = Field(default=30.0, gt=0)
    """Total time limit of one request in seconds: connect, headers and body together."""
    max_body_size: ByteSize = Field(default=ByteSize(DEFAULT_MAX_BODY_SIZE))
    """Largest response body read (bytes, or text such as ``"500MB"``); default 100 MiB."""
    auth: AuthConfig | None = None
    """How to authenticate: a mapping whose ``type`` is ``bearer``, ``basic``, ``api_key`` or
    ``oauth2_client_credentials`` (their keys below). Applied only to requests to the origin of
    ``url``. Absent: no auth beyond ``headers``."""
    data_selector: str | None = None
    """Dotted path to the list of records in each response (``data.items``). Absent: a
    top-level array, else the first list under ``data``, ``results``, ``items``, ``records``,
    ... (or the first list of objects); an object with none is one record."""
    flatten: bool = True
    """Unnest nested objects into ``parent__child`` columns (recursively; lists stay list
    columns). ``false`` keeps them as struct columns."""
    mixed_types: MixedTypes = "error"
    """A key whose values mix kinds across records (an object and a number, a boolean and a
    number): fail naming the URL, record and key, or ``json``: keep its values as JSON text."""
    pagination: PaginationConfig | Paginator | None = None
    """How to get the following pages: a mapping whose ``type`` is ``offset``, ``page``,
    ``cursor``, ``next_url`` or ``link_header`` (their keys below), or, from Python, a
    ``Paginator`` instance. Absent: one request. Not together with ``params_list``."""
    max_pages: int = Field(default=DEFAULT_MAX_PAGES, ge=1)
    """Pages read at most; reaching it while the API has more is incomplete (see on_incomplete)."""
    on_incomplete: Literal["error", "warn"] = "error"
    """A read that ends before the announced total or at max_pages: an error, or a warning
    (logged and kept in ``get_metadata()["details"]["incomplete"]``) with the rows read."""
    params_list: list[dict[str, Any]] | None = None
    """Fetch once per entry (merged into ``params``), concurrently, results in order."""
    max_concurrency: int = Field(default=8, ge=1)
    """At most this many requests in flight at once: the pages planned from an announced
    total, or the ``params_list`` entries. ``1`` fetches one after another."""
    rate_limit: float | None = Field(default=None, gt=0)
    """Requests per second, shared by every request of the source (parallel ones included)."""
    retry: RetryConfig = Field(default_factory=RetryConfig)
    """When a failed request is sent again (a mapping, keys below): connection errors,
    timeouts and the listed statuses, with exponential backoff."""
    redirects: RedirectConfig = Field(default_factory=RedirectConfig)
    """Which redirects are followed (a mapping, keys below); by default up to 10, on the same
    origin only."""
    incremental: IncrementalConfig | None = None
    """Ask only for records newer than the last run's: the largest ``cursor_field`` value
    seen is sent in ``param`` next time (a mapping, keys below). The API does the filtering;
    absent: every run reads everything."""
    verify: bool = True
    """Check the server's TLS certificate against the system's CAs; ``false`` accepts any
    certificate (a test server's self-signed one; never for real credentials)."""

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
            k: SecretStr(v) if isinstance(v, str) and is_secret_key(k) else v
            for k, v in value.items()
        }


# -- the source -----------------------------------------------------------------------------


class RESTAPISource(DataSource):
    """Data source for REST APIs returning JSON.

    Raises:
        ConfigError: an invalid config (a URL without ``http(s)://``, both ``params_list`` and
            ``pagination``, ...), or ``ingest()`` got an option other than ``params``.
        IngestionAuthenticationError: HTTP 401 or 403, or the OAuth2 token endpoint gave no token.
        IngestionConnectionError: the server could not be reached, after the retries.
        IngestionTimeoutError: a request took longer than ``timeout``, after the retries.
        ParseError: a response is not JSON, or ``data_selector`` is not in it.
        IngestionError: another HTTP error status (after the retries for ``retry.statuses``), a body
            over ``max_body_size``, a redirect refused or beyond ``redirects.max``, pages that loop
            or repeat, a read that ends short (``on_incomplete: error``), or an ``incremental``
            field missing from the records.

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
        for value in self.settings.headers.values():
            if isinstance(value, SecretStr):
                register_secret(value)
        self._auth = build_auth(self.settings.auth, component=self.label)  # one token cache

    # -- http ---------------------------------------------------------------------------------

    def _client(self) -> HttpClient:
        from data_pipeline.ingestion.http.client import HttpClient

        s = self.settings
        headers = {"Accept": "application/json"}
        secret_headers = []
        for key, value in s.headers.items():
            if isinstance(value, SecretStr):
                secret_headers.append(key)
                headers[key] = value.get_secret_value()
            else:
                headers[key] = value
        secret_params = [k for k in s.params if is_secret_key(k)]
        if isinstance(s.auth, ApiKeyAuth):
            (secret_params if s.auth.location == "query" else secret_headers).append(s.auth.name)

        def count_retry() -> None:
            op = self.current_operation
            op.details["retries"] = op.details.get("retries", 0) + 1

        return HttpClient(
            s.url,
            timeout=s.timeout,
            max_body_size=int(s.max_body_size),
            retry=s.retry,
            redirects=s.redirects,
            verify=s.verify,
            headers=headers,
            auth=self._auth,
            rate_limit=s.rate_limit,
            max_connections=s.max_concurrency + 2,
            secret_headers=secret_headers,
            secret_params=secret_params,
            component=self.label,
            logger=self.logger,
            on_retry=count_retry,
        )

    def _fetch(self, client: HttpClient, request: PageRequest) -> Page:
        import httpx

        kwargs: dict[str, Any] = {}
        url = request.url
        if request.params:  # httpx replaces the URL's own query with params: merge them instead
            target = httpx.URL(url)
            kwargs["params"] = target.params.merge(
                {k: query_value(v) for k, v in request.params.items()}
            )
            url = str(target.copy_with(query=None))
        if request.json is not None:
            kwargs["json"] = request.json
        response = client.request(self.settings.method, url, **kwargs)
        return self._parse(response)

    def _where(self, response: httpx.Response) -> str:
        from data_pipeline.core.secrets import redact_url

        return f"{response.request.method} {redact_url(str(response.request.url))}"

    def _parse(self, response: httpx.Response) -> Page:
        import polars as pl

        where = self._where(response)
        content = response.content
        digest = hashlib.sha1(content, usedforsecurity=False).digest()  # equal pages, not secrecy
        if not content.strip() or response.status_code == 204:
            return Page(pl.DataFrame(), None, response.headers, str(response.url), digest)
        frame, body = parse_json_records(
            content,
            data_selector=self.settings.data_selector,
            where=where,
            component=self.label,
            mixed_types=self.settings.mixed_types,
        )
        return Page(frame, body, response.headers, str(response.url), digest)

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
        body = s.json_body
        cursor = self.incremental_cursor()
        if cursor is not None:
            inc = s.incremental
            assert inc is not None
            since = _jsonable(cursor.since())
            if since is not None:
                if s.method in ("POST", "PUT", "PATCH") and isinstance(body, Mapping):
                    body = {**body, inc.param: since}
                else:
                    params[inc.param] = since
        with self._client() as client:
            pages = self._pages(client, PageRequest(s.url, params, body))
        frames = [p.frame for p in pages if p.frame.width]
        op = self.current_operation
        op.details["pages"] = len(pages)
        frame = pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()
        if s.flatten:
            frame = flatten_structs(frame)
        if cursor is not None and frame.height:
            missing = [c for c in [cursor.cursor, *cursor.keys] if c not in frame.columns]
            if missing:
                raise IngestionError(
                    f"incremental field(s) {', '.join(map(repr, missing))} not in the records",
                    component=self.label,
                    hint=f"the records have columns: {', '.join(map(repr, frame.columns))}",
                )
            frame = cursor.apply(frame)
            if cursor.dropped:
                op.details["duplicates_dropped"] = cursor.dropped
        return frame

    def incremental_cursor(self) -> IncrementalCursor | None:
        """The ``incremental`` state (see :class:`~data_pipeline.core.cursor.IncrementalCursor`):
        from the state file on each read, or kept once a checkpoint restored it."""
        inc = self.settings.incremental
        if inc is None:
            return None
        keys = (
            [inc.primary_key] if isinstance(inc.primary_key, str) else list(inc.primary_key or [])
        )
        return self._kept_cursor(
            cursor=inc.cursor_field,
            keys=keys,
            lookback=inc.lookback,
            initial_value=inc.initial_value,
            state_path=inc.state_path,
        )

    def _pages(self, client: HttpClient, start: PageRequest) -> list[Page]:
        s = self.settings
        if s.params_list is not None:
            return self._parallel(client, [start.with_params(**p) for p in s.params_list])
        pag = s.pagination
        if isinstance(pag, Paginator):
            paginator = pag
        elif pag is None:
            paginator = SinglePagePaginator()
        else:
            paginator = pag.build(start.params)

        def warn(message: str) -> None:
            self.logger.warning("%s: %s", self.label, message)
            self.current_operation.details["incomplete"] = message

        return paginate(
            paginator,
            start,
            lambda request: self._fetch(client, request),
            lambda requests: self._parallel(client, requests),
            max_pages=s.max_pages,
            on_incomplete=s.on_incomplete,
            component=self.label,
            warn=warn,
        )

    def _parallel(self, client: HttpClient, requests: list[PageRequest]) -> list[Page]:
        workers = min(self.settings.max_concurrency, len(requests))
        if workers <= 1:
            return [self._fetch(client, r) for r in requests]
        with ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix=f"rest-{self.name}"
        ) as pool:
            return list(pool.map(lambda r: self._fetch(client, r), requests))


def _jsonable(value: Any) -> Any:
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value
