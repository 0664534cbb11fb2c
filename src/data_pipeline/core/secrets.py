"""Keep secrets out of metadata, logs, error messages and files.

Three mechanisms, used together:

* :func:`redact` walks a config (dict, list, pydantic model) and replaces every value whose key
  looks secret (``password``, ``token``, ``Authorization``, ``api_key``, ...) and every
  ``SecretStr`` with ``"***"``.
* :func:`register_secret` remembers a secret *value*; :func:`redact_text` replaces every remembered
  value, and the password part of any ``scheme://user:password@host`` URL, in free text. Every
  :class:`~data_pipeline.core.errors.DataPipelineError` message passes through it.
* :class:`RedactingFilter` applies :func:`redact_text` to every record of the ``data_pipeline``
  logger tree.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Collection, Mapping
from typing import Any

__all__ = [
    "MASK",
    "RedactingFilter",
    "is_secret_key",
    "redact",
    "redact_text",
    "redact_url",
    "register_secret",
    "register_secrets_in",
]

MASK = "***"

_SECRET_KEY = re.compile(
    r"(pass(word|wd|phrase)?|secret|token|api[-_]?key|apikey|authorization|auth[-_]?token|"
    r"credential|private[-_]?key|access[-_]?key|client[-_]?secret|cookie|session[-_]?id|sas)",
    re.IGNORECASE,
)
_URL_CREDENTIALS = re.compile(
    r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@/\s]+)@"
)
_QUERY_SECRET = re.compile(
    r"(?P<key>[?&](?:api[-_]?key|apikey|token|access[-_]?token|key|secret|password|sig|signature)=)[^&#\s]+",
    re.IGNORECASE,
)

_lock = threading.Lock()
_secret_values: set[str] = set()
_pattern: re.Pattern[str] | None = None


_NOT_SECRET_SUFFIX = re.compile(
    r"[-_](url|uri|endpoint|path|file|location|type|header|param|field)$", re.IGNORECASE
)


def is_secret_key(key: object) -> bool:
    """True when a config or header key names a secret (``password``, ``X-API-Key``, ...).

    Keys that name *where* a secret lives rather than the secret (``token_url``,
    ``password_file``, ``api_key_header``) are not secret.
    """
    return (
        isinstance(key, str)
        and bool(_SECRET_KEY.search(key))
        and not _NOT_SECRET_SUFFIX.search(key)
    )


def register_secret(value: object) -> None:
    """Remember a secret value so that :func:`redact_text` masks it wherever it appears.

    Values shorter than 4 characters are not registered: masking them would garble ordinary text.
    """
    global _pattern
    if hasattr(value, "get_secret_value"):
        value = value.get_secret_value()
    if not isinstance(value, str) or len(value) < 4:
        return
    candidates = {value}
    # "Bearer abc123" -> also mask "abc123" on its own.
    parts = value.split(None, 1)
    if len(parts) == 2 and len(parts[1]) >= 4:
        candidates.add(parts[1])
    with _lock:
        if candidates <= _secret_values:
            return
        _secret_values.update(candidates)
        ordered = sorted(_secret_values, key=len, reverse=True)
        _pattern = re.compile("|".join(_secret_pattern(v) for v in ordered))


def register_secrets_in(
    value: Any, key: object = None, *, secret_keys: Collection[str] = ()
) -> None:
    """Register every secret found in ``value`` (a config: dicts, lists, pydantic models).

    A value is secret when it is a ``SecretStr``, or a string under a key that
    :func:`is_secret_key` recognises or that is one of ``secret_keys`` (names that are secret
    only in one place, such as s3fs's ``key``, the access key id).
    """
    if hasattr(value, "get_secret_value"):
        register_secret(value)
    elif hasattr(type(value), "model_fields"):  # a pydantic model
        for name in type(value).model_fields:
            register_secrets_in(getattr(value, name), name, secret_keys=secret_keys)
    elif isinstance(value, Mapping):
        for k, v in value.items():
            register_secrets_in(v, k, secret_keys=secret_keys)
    elif isinstance(value, (list, tuple)):
        for v in value:
            register_secrets_in(v, key, secret_keys=secret_keys)
    elif isinstance(value, str) and (is_secret_key(key) or key in secret_keys):
        register_secret(value)


def _secret_pattern(value: str) -> str:
    """A long secret is masked wherever it appears; a short one only as a whole word.

    So the spec's example password ``"pass"`` is masked in ``user:pass@`` but ``password`` stays.
    """
    escaped = re.escape(value)
    if len(value) >= 8:
        return escaped
    return rf"(?<![A-Za-z0-9]){escaped}(?![A-Za-z0-9])"


def redact_url(url: str) -> str:
    """Remove the password from ``scheme://user:password@host`` and secret query parameters."""
    url = _URL_CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", url)
    return _QUERY_SECRET.sub(lambda m: f"{m['key']}{MASK}", url)


def redact_text(text: str) -> str:
    """Mask every registered secret value and every URL password in ``text``."""
    if not text:
        return text
    text = redact_url(text)
    pattern = _pattern
    if pattern is not None:
        text = pattern.sub(MASK, text)
    return text


def redact(value: Any, key: object = None) -> Any:
    """Return a copy of ``value`` that is safe to show: secret keys and ``SecretStr`` masked."""
    if key is not None and is_secret_key(key) and value is not None:
        return MASK
    if hasattr(value, "get_secret_value"):
        return MASK
    if hasattr(value, "model_dump") and callable(value.model_dump):
        return redact(value.model_dump(mode="python"))
    if isinstance(value, Mapping):
        return {k: redact(v, k) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    return value


class RedactingFilter(logging.Filter):
    """A logging filter that masks secrets in the formatted message of every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string is the caller's bug; leave it alone
            return True
        cleaned = redact_text(message)
        if cleaned != message:
            record.msg = cleaned
            record.args = None
        return True
