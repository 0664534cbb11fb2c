"""The HTTP machinery of data-pipeline: one client, the auth kinds, the paginators.

* :mod:`.client`: :class:`HttpClient` (limits, redirects, retries, error translation);
* :mod:`.auth`: the auth configs and the ``httpx.Auth`` each builds;
* :mod:`.paginators`: one class per pagination kind, :class:`Paginator` to write your own.

Used by :class:`~data_pipeline.ingestion.RESTAPISource` and by
:class:`~data_pipeline.processing.DataEnricher`'s REST lookups. httpx is imported only when a
client is built.
"""

from data_pipeline.ingestion.http.auth import (
    ApiKeyAuth,
    AuthConfig,
    BasicAuth,
    BearerAuth,
    OAuth2ClientCredentials,
    build_auth,
)
from data_pipeline.ingestion.http.client import (
    DEFAULT_MAX_BODY_SIZE,
    HttpClient,
    RateLimiter,
    RedirectConfig,
    RetryConfig,
    parse_retry_after,
)
from data_pipeline.ingestion.http.paginators import (
    CursorPaginator,
    LinkHeaderPaginator,
    NextURLPaginator,
    OffsetPaginator,
    Page,
    PageNumberPaginator,
    PageRequest,
    PaginationConfig,
    Paginator,
    SinglePagePaginator,
    paginate,
)

__all__ = [
    "DEFAULT_MAX_BODY_SIZE",
    "ApiKeyAuth",
    "AuthConfig",
    "BasicAuth",
    "BearerAuth",
    "CursorPaginator",
    "HttpClient",
    "LinkHeaderPaginator",
    "NextURLPaginator",
    "OAuth2ClientCredentials",
    "OffsetPaginator",
    "Page",
    "PageNumberPaginator",
    "PageRequest",
    "PaginationConfig",
    "Paginator",
    "RateLimiter",
    "RedirectConfig",
    "RetryConfig",
    "SinglePagePaginator",
    "build_auth",
    "paginate",
    "parse_retry_after",
]
