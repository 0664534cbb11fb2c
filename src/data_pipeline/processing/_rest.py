"""Fetch enrichment data from a REST endpoint, once per distinct key: batched, cached, rate-limited.

Used by :class:`~data_pipeline.processing.enrich.DataEnricher` (``rest_lookups``). One request per
distinct key (``url`` with ``{column}`` placeholders), a bounded number in flight, at most
``requests_per_second``. Requests go through the same
:class:`~data_pipeline.ingestion.http.HttpClient` as :class:`RESTAPISource` (total time limit, body
cap, credentials kept on the URL's origin, tenacity retries with backoff that honour
``Retry-After`` on 429/502/503/504). A 404 is a miss; any other failure after the retries is a
failure; both are counted and the rows get the lookup's defaults. Found and missed keys are
cached for the enricher's lifetime; failures are not cached, so the next run asks again.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import quote

from pydantic import ByteSize, Field, SecretStr, field_validator

from data_pipeline.core.config import ConfigModel
from data_pipeline.core.errors import DataPipelineError
from data_pipeline.core.secrets import DATA_KEYS, redact_url
from data_pipeline.ingestion.http.client import DEFAULT_MAX_BODY_SIZE, RedirectConfig

__all__ = ["RestFetcher", "RestLookup"]

_RETRY_STATUS = frozenset({429, 502, 503, 504})
_MISS = object()


class RestLookup(ConfigModel):
    """``{"url": "http://api/products/{product_id}", "on": "product_id",
    "fields": {"category": "category", "brand": "details.brand"}, "defaults": {...}}``."""

    url: str
    """The ``http://`` or ``https://`` URL of one key's record, with ``{column}`` placeholders
    for the key columns (every placeholder must be listed in ``on``); values are URL-encoded."""
    on: list[str]
    """The key columns (a name or a list): one request per distinct non-null key combination;
    rows with a null key get the ``defaults``."""
    fields: Annotated[dict[str, str], DATA_KEYS] = Field(min_length=1)
    """The columns to add, each with its path in the JSON answer: dotted keys and list
    indexes, ``{"brand": "details.brand", "first_tag": "tags.0"}``; a path that is not there
    gives null."""
    defaults: Annotated[dict[str, Any], DATA_KEYS] = Field(default_factory=dict)
    """Values by added column for the rows whose key was a miss (404) or failed after the
    retries; other columns are null for those rows."""
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    """Headers sent with every request (e.g. ``Authorization``), treated as secrets: never
    logged or shown, and dropped on a redirect to another origin."""
    timeout: float = Field(default=10.0, gt=0)
    """Total time limit of one request in seconds (connect, headers and body)."""
    max_body_size: ByteSize = Field(default=ByteSize(DEFAULT_MAX_BODY_SIZE))
    """The largest answer body read, in bytes (or text such as ``"1MB"``, ``"10MiB"``;
    default 100 MiB); a larger one counts as a failure for that key."""
    redirects: RedirectConfig = Field(default_factory=RedirectConfig)
    """Which redirects are followed (keys below), as for RESTAPISource."""
    max_concurrency: int = Field(default=4, ge=1, le=64)
    """Requests in flight at once (1 to 64 threads)."""
    batch_size: int = Field(default=100, ge=1)
    """Keys handed to the threads together: a batch finishes before the next one starts.
    It bounds the queued work; it does not change the number of requests."""
    requests_per_second: float | None = Field(default=None, gt=0)
    """At most this many requests per second over all threads, retries included. None: no
    limit."""
    retries: int = Field(default=2, ge=0, le=10)
    """Attempts after the first (0 to 10) on connection errors, timeouts and HTTP 429, 502,
    503 and 504; a ``Retry-After`` of up to 30 seconds is honoured, a longer one fails at
    once."""
    backoff: float = Field(default=0.2, ge=0)
    """The first wait between attempts in seconds, doubled after each failure (with 50-100 %
    jitter, at most 30 seconds)."""

    @field_validator("on", mode="before")
    @classmethod
    def _list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("url must start with http:// or https://")
        return value


@dataclass
class RestFetcher:
    """Fetch, cache and count; one per rest lookup of an enricher."""

    spec: RestLookup
    cache: dict[tuple[Any, ...], Any] = field(default_factory=dict)
    stats: dict[str, int] = field(default_factory=dict)

    def fetch(
        self, keys: Sequence[tuple[Any, ...]]
    ) -> tuple[list[tuple[Any, ...]], list[dict[str, Any]]]:
        """Rows (key tuple, fields) for the keys found; the rest are misses or failures."""
        from data_pipeline.ingestion.http.client import HttpClient, RetryConfig

        self.stats = {"keys": len(keys), "requests": 0, "cache_hits": 0, "misses": 0, "failures": 0}
        todo = [k for k in keys if k not in self.cache]
        self.stats["cache_hits"] = len(keys) - len(todo)
        spec = self.spec
        headers = {k: v.get_secret_value() for k, v in spec.headers.items()}
        lock = threading.Lock()
        failed: set[tuple[Any, ...]] = set()
        retry = RetryConfig(
            max_attempts=spec.retries + 1,
            backoff_factor=spec.backoff,
            max_backoff=30.0,
            max_retry_after=30.0,
            statuses=sorted(_RETRY_STATUS),
        )

        def count() -> None:
            with lock:
                self.stats["requests"] += 1

        with HttpClient(
            spec.url.split("{", 1)[0] or spec.url,
            timeout=spec.timeout,
            max_body_size=int(spec.max_body_size),
            retry=retry,
            redirects=spec.redirects,
            headers=headers,
            rate_limit=spec.requests_per_second,
            max_connections=spec.max_concurrency + 2,
            secret_headers=list(headers),
            component=f"rest lookup {self.label()}",
            on_retry=count,  # each retry is one more request
        ) as client:

            def one(key: tuple[Any, ...]) -> None:
                result = self._get(client, key, count)
                with lock:
                    if result is None:
                        failed.add(key)
                    else:
                        self.cache[key] = result

            with ThreadPoolExecutor(max_workers=spec.max_concurrency) as pool:
                for start in range(0, len(todo), spec.batch_size):
                    list(pool.map(one, todo[start : start + spec.batch_size]))

        found_keys: list[tuple[Any, ...]] = []
        found_rows: list[dict[str, Any]] = []
        for key in keys:
            if key in failed:
                continue
            value = self.cache.get(key, _MISS)
            if isinstance(value, dict):
                found_keys.append(key)
                found_rows.append(value)
            else:
                self.stats["misses"] += 1
        self.stats["failures"] = len(failed)
        return found_keys, found_rows

    def _url(self, key: tuple[Any, ...]) -> str:
        values = {c: quote(_text(v), safe="") for c, v in zip(self.spec.on, key, strict=True)}
        return self.spec.url.format(**values)

    def _get(self, client: Any, key: tuple[Any, ...], count: Any) -> Any:
        """The extracted fields, ``_MISS`` for a 404, ``None`` for a failure."""
        count()
        try:
            response = client.request("GET", self._url(key), accept=(404,))
        except DataPipelineError:
            return None
        if response.status_code == 404:
            return _MISS
        try:
            body = response.json()
        except ValueError:
            return None
        return {out: _path(body, path) for out, path in self.spec.fields.items()}

    def label(self) -> str:
        return redact_url(self.spec.url)


def _text(value: Any) -> str:
    """A key as URL text; pandas stores integer keys with nulls as floats (``1.0`` -> ``1``)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _path(body: Any, path: str) -> Any:
    value = body
    for part in path.split("."):
        if isinstance(value, Mapping):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value
