"""Fetch enrichment data from a REST endpoint, once per distinct key: batched, cached, rate-limited.

Used by :class:`~data_pipeline.processing.enrich.DataEnricher` (``rest_lookups``). One request per
distinct key (``url`` with ``{column}`` placeholders), a bounded number in flight, at most
``requests_per_second``, retries with backoff that honour ``Retry-After`` on 429/502/503/504.
A 404 is a miss; any other failure after the retries is a failure; both are counted and the
rows get the lookup's defaults. Found and missed keys are cached for the enricher's lifetime;
failures are not cached, so the next run asks again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from pydantic import Field, SecretStr, field_validator

from data_pipeline.core.config import ConfigModel
from data_pipeline.core.secrets import redact_url

__all__ = ["RestFetcher", "RestLookup"]

_RETRY_STATUS = frozenset({429, 502, 503, 504})
_MISS = object()


class RestLookup(ConfigModel):
    """``{"url": "http://api/products/{product_id}", "on": "product_id",
    "fields": {"category": "category", "brand": "details.brand"}, "defaults": {...}}``."""

    url: str
    on: list[str]
    fields: dict[str, str] = Field(min_length=1)
    defaults: dict[str, Any] = Field(default_factory=dict)
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    timeout: float = Field(default=10.0, gt=0)
    max_concurrency: int = Field(default=4, ge=1, le=64)
    batch_size: int = Field(default=100, ge=1)
    requests_per_second: float | None = Field(default=None, gt=0)
    retries: int = Field(default=2, ge=0, le=10)
    backoff: float = Field(default=0.2, ge=0)

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


class _RateLimiter:
    def __init__(self, rate: float | None) -> None:
        self.interval = 1.0 / rate if rate else 0.0
        self.lock = threading.Lock()
        self.next_time = 0.0

    def wait(self) -> None:
        if not self.interval:
            return
        with self.lock:
            now = time.monotonic()
            start = max(now, self.next_time)
            self.next_time = start + self.interval
        if start > now:
            time.sleep(start - now)


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
        import httpx

        self.stats = {"keys": len(keys), "requests": 0, "cache_hits": 0, "misses": 0, "failures": 0}
        todo = [k for k in keys if k not in self.cache]
        self.stats["cache_hits"] = len(keys) - len(todo)
        limiter = _RateLimiter(self.spec.requests_per_second)
        headers = {k: v.get_secret_value() for k, v in self.spec.headers.items()}
        lock = threading.Lock()
        failed: set[tuple[Any, ...]] = set()

        with httpx.Client(timeout=self.spec.timeout, headers=headers) as client:

            def one(key: tuple[Any, ...]) -> None:
                result = self._get(client, limiter, key, lock)
                with lock:
                    if result is None:
                        failed.add(key)
                    else:
                        self.cache[key] = result

            with ThreadPoolExecutor(max_workers=self.spec.max_concurrency) as pool:
                for start in range(0, len(todo), self.spec.batch_size):
                    list(pool.map(one, todo[start : start + self.spec.batch_size]))

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

    def _get(
        self, client: Any, limiter: _RateLimiter, key: tuple[Any, ...], lock: threading.Lock
    ) -> Any:
        """The extracted fields, ``_MISS`` for a 404, ``None`` for a failure."""
        import httpx

        url = self._url(key)
        for attempt in range(self.spec.retries + 1):
            limiter.wait()
            with lock:
                self.stats["requests"] += 1
            try:
                response = client.get(url)
            except httpx.HTTPError:
                if attempt < self.spec.retries:
                    time.sleep(self.spec.backoff * 2**attempt)
                    continue
                return None
            if response.status_code == 404:
                return _MISS
            if response.status_code in _RETRY_STATUS and attempt < self.spec.retries:
                time.sleep(
                    _retry_after(
                        response.headers.get("Retry-After"), self.spec.backoff * 2**attempt
                    )
                )
                continue
            if response.status_code >= 400:
                return None
            try:
                body = response.json()
            except ValueError:
                return None
            return {out: _path(body, path) for out, path in self.spec.fields.items()}
        return None

    def label(self) -> str:
        return redact_url(self.spec.url)


def _text(value: Any) -> str:
    """A key as URL text; pandas stores integer keys with nulls as floats (``1.0`` -> ``1``)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _retry_after(value: str | None, default: float) -> float:
    if value is None:
        return default
    try:
        return min(max(float(value), 0.0), 30.0)
    except ValueError:
        return default


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
