"""Keep secrets out of metadata, logs, error messages and files.

Secrets are found by rule, not by list, in three ways used together:

* **By name.** :func:`is_secret_key` says whether a header, query parameter, environment
  variable or free-form option names a credential: any word of the name (split at ``-``, ``_``,
  ``.`` and camel case) that is or contains ``token``, ``secret``, ``password``, ``credential``,
  ``signature``, ``auth``, ``session``, ``cookie``, ``key``, ``sig``, ``code``, ...; every
  ``X-Amz-*`` name; and not the names that say *where* a secret is (``token_url``,
  ``password_file``, ``api_key_header``).
* **By type.** A config field typed ``SecretStr`` is a secret. The fields of our own config
  models are judged by their type only (``primary_key`` is not a secret); the keys of free-form
  dicts in them (``headers``, ``params``, ``storage_options``, ...) by name, except in a dict
  whose keys are data column names, declared with :data:`DATA_KEYS`
  (``aggregations: Annotated[dict[str, Any], DATA_KEYS]``): a column called ``promo_code`` does
  not make its aggregation ``"count"`` a secret.
* **By value.** :func:`register_secret` remembers a secret value; :func:`redact_text` masks
  every remembered value in any text. Every config is walked when it is validated
  (:func:`register_secrets_in`): ``SecretStr`` values, values under secret names, the password
  and the secret query parameters of every URL in it are registered.

:func:`redact_text` masks, in free text: registered values, URL passwords (``user:pw@`` where
the password may hold unencoded ``@``, ``/`` or ``:``), the values of secret query parameters
(``?refresh_token=...``, ``&X-Amz-Signature=...``), secret ``'name': 'value'`` pairs (dict and
header reprs, JSON) and ``Name: value`` header lines. :func:`redact` returns a copy of a config
(or any structure) that is safe to show. :func:`scrub_exception` masks the messages of an error
and of every cause and context chained to it, so a traceback shows no secret either.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Collection, Mapping
from typing import Any
from urllib.parse import quote, unquote

__all__ = [
    "DATA_KEYS",
    "MASK",
    "RedactedError",
    "RedactingFilter",
    "is_secret_key",
    "redact",
    "redact_text",
    "redact_url",
    "register_secret",
    "register_secrets_in",
    "scrub_exception",
    "stand_in_for",
]

MASK = "***"

# -- the name rule --------------------------------------------------------------------------

#: a word of a name that is one of these names a credential
_SECRET_WORDS = frozenset(
    {
        "key", "sig", "code", "session", "auth", "oauth", "pass", "pw", "pwd", "passwd", "sas",
        "cookie", "jwt", "otp", "sid", "bearer", "apikey", "creds", "cred", "hmac", "nonce",
        "jsessionid", "phpsessid", "csrf", "xsrf",
    }
)  # fmt: skip
#: a word of a name that contains one of these names a credential
_SECRET_PARTS = (
    "token", "secret", "password", "passphrase", "credential", "signature", "apikey",
    "accesskey", "privatekey", "sessionid", "authorization", "authentication", "cookie",
)  # fmt: skip
#: a name whose last word is one of these says *where* a secret is, not the secret
_WHERE_WORDS = frozenset(
    {
        "url", "uri", "endpoint", "path", "file", "location", "type", "header", "param",
        "params", "field", "name", "template", "column", "columns", "prefix", "in", "env",
        "format", "length", "method", "style", "kind", "mode", "scheme", "fields",
    }
)  # fmt: skip
_SPLIT = re.compile(r"[^A-Za-z0-9]+")
_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")


def _words(name: str) -> list[str]:
    return [w.lower() for part in _SPLIT.split(name) for w in _CAMEL.findall(part)]


def is_secret_key(key: object) -> bool:
    """True when a header, parameter, option or variable name names a credential.

    >>> [is_secret_key(k) for k in ("refresh_token", "Ocp-Apim-Subscription-Key",
    ...                             "X-Amz-Date", "clientSecret", "token_url", "author")]
    [True, True, True, True, False, False]
    """
    if not isinstance(key, str) or not key:
        return False
    words = _words(key)
    if not words:
        return False
    if len(words) >= 2 and words[0] == "x" and words[1] == "amz":
        return True
    if words[-1] in _WHERE_WORDS:
        return False
    return any(w in _SECRET_WORDS or any(p in w for p in _SECRET_PARTS) for w in words)


# -- remembered values ----------------------------------------------------------------------

_lock = threading.Lock()
_secret_values: set[str] = set()
_pattern: re.Pattern[str] | None = None


def register_secret(value: object) -> None:
    """Remember a secret value so that :func:`redact_text` masks it wherever it appears.

    Values shorter than 4 characters are not registered: masking them would garble ordinary text.
    A percent-encoded value is registered decoded as well, and ``"Bearer abc123"`` also as
    ``"abc123"``.
    """
    global _pattern
    if hasattr(value, "get_secret_value"):
        value = value.get_secret_value()
    if not isinstance(value, str) or len(value) < 4:
        return
    candidates = {value}
    parts = value.split(None, 1)  # "Bearer abc123" -> also mask "abc123" on its own
    if len(parts) == 2 and len(parts[1]) >= 4:
        candidates.add(parts[1])
    if "%" in value:
        decoded = unquote(value)
        if len(decoded) >= 4:
            candidates.add(decoded)
    encoded = quote(value, safe="")  # as it stands in a URL
    if encoded != value:
        candidates.add(encoded)
    with _lock:
        if candidates <= _secret_values:
            return
        _secret_values.update(candidates)
        ordered = sorted(_secret_values, key=len, reverse=True)
        _pattern = re.compile("|".join(_secret_pattern(v) for v in ordered))


def _secret_pattern(value: str) -> str:
    """A long secret is masked wherever it appears; a short one only as a whole word.

    So the spec's example password ``"pass"`` is masked in ``user:pass@`` but ``password`` stays.
    """
    escaped = re.escape(value)
    if len(value) >= 8:
        return escaped
    return rf"(?<![A-Za-z0-9]){escaped}(?![A-Za-z0-9])"


class DataKeys:
    """Marks a config dict whose keys are data (column names), not names of credentials.

    Put :data:`DATA_KEYS` in the field's ``Annotated[...]``; its ``SecretStr`` values stay secret.
    """

    def __repr__(self) -> str:
        return "DATA_KEYS"


DATA_KEYS = DataKeys()


def _data_keys(model_type: Any, name: str) -> bool:
    info = model_type.model_fields.get(name)
    return info is not None and any(isinstance(m, DataKeys) for m in info.metadata)


def register_secrets_in(
    value: Any, key: object = None, *, secret_keys: Collection[str] = (), typed: bool = False
) -> None:
    """Register every secret found in ``value`` (a config: dicts, lists, pydantic models).

    A value is secret when it is a ``SecretStr``, or a string under a key that
    :func:`is_secret_key` recognises or that is one of ``secret_keys`` (names that are secret
    only in one place, such as s3fs's ``key``, the access key id). The fields of a pydantic
    model are judged by their type, not their name. The password and secret query parameters
    of every URL found are registered too.
    """
    if hasattr(value, "get_secret_value"):
        register_secret(value)
    elif hasattr(type(value), "model_fields"):  # a pydantic model: its fields are typed
        for name in type(value).model_fields:
            field_value = getattr(value, name)
            if _data_keys(type(value), name) and isinstance(field_value, Mapping):
                for v in field_value.values():  # keys are column names: only typed secrets
                    register_secrets_in(v, None, secret_keys=secret_keys, typed=True)
                continue
            register_secrets_in(field_value, name, secret_keys=secret_keys, typed=True)
    elif isinstance(value, Mapping):
        for k, v in value.items():
            register_secrets_in(v, k, secret_keys=secret_keys)
    elif isinstance(value, (list, tuple)):
        for v in value:
            register_secrets_in(v, key, secret_keys=secret_keys, typed=typed)
    elif isinstance(value, str):
        if not typed and (is_secret_key(key) or key in secret_keys):
            register_secret(value)
        elif "://" in value or "?" in value:
            register_url_secrets(value)


def register_url_secrets(url: str) -> None:
    """Register the password and the secret query parameters of the URLs in ``url``."""
    for match in _URL_USERINFO.finditer(url):
        register_secret(match["pw"])
    for match in _QUERY_PAIR.finditer(url):
        if is_secret_key(unquote(match["name"])):
            register_secret(match["val"])


# -- text -----------------------------------------------------------------------------------

# scheme://user:password@host -- the password runs to the LAST "@" of the URL (before a space
# or a quote), so an unencoded "@", "/" or ":" inside it is still masked as a whole.
_URL_USERINFO = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^\s:/@'\"<>]*):"
    r"(?P<pw>[^\s'\"<>]*)@(?P<host>[^\s/?#@'\"<>]*)"
)
# ?name=value / &name=value / ;name=value (also at the start of a text: a form body)
_QUERY_PAIR = re.compile(
    r"(?P<pre>(?:^|[?&;])(?P<name>[^=&;#\s'\"<>?]{1,100})=)"
    r"(?P<val>[^&;#\s'\"<>]*?)(?=[:,.)]*(?:[&;#\s'\"<>]|$))"  # a trailing ':' or '.' is prose
)
# 'name': 'value', "name": "value", (b'name', b'value'), name='value'
_QUOTED_PAIR = re.compile(
    r"(?P<q>['\"])(?P<name>[^'\"\n]{1,100})(?P=q)(?P<sep>\s*[:,]\s*b?)(?P<q2>['\"])"
    r"(?P<val>(?:\\.|(?!(?P=q2)).)*)(?P=q2)"
)
# Name: value -- a header line (a name with a dash, Authorization or Cookie)
_HEADER_LINE = re.compile(r"(?m)^(?P<name>[A-Za-z][A-Za-z0-9-]{0,60}):[ \t]*(?P<val>\S.*)$")


def _mask_userinfo(m: re.Match[str]) -> str:
    if not m["pw"]:
        return m.group(0)
    return f"{m['scheme']}{m['user']}:{MASK}@{m['host']}"


def _mask_query(m: re.Match[str]) -> str:
    if m["val"] and m["val"] != MASK and is_secret_key(unquote(m["name"])):
        return f"{m['pre']}{MASK}"
    return m.group(0)


def _mask_quoted(m: re.Match[str]) -> str:
    if m["val"] and m["val"] != MASK and is_secret_key(m["name"]):
        q, q2 = m["q"], m["q2"]
        return f"{q}{m['name']}{q}{m['sep']}{q2}{MASK}{q2}"
    return m.group(0)


def _mask_header(m: re.Match[str]) -> str:
    name = m["name"]
    looks_like_header = "-" in name or name.lower() in ("authorization", "cookie")
    if looks_like_header and m["val"] != MASK and is_secret_key(name):
        return f"{m['name']}: {MASK}"
    return m.group(0)


def redact_url(url: str) -> str:
    """Remove the password from ``scheme://user:password@host`` and secret query parameters."""
    if "@" in url:
        url = _URL_USERINFO.sub(_mask_userinfo, url)
    if "=" in url:
        url = _QUERY_PAIR.sub(_mask_query, url)
    return url


def redact_text(text: str) -> str:
    """Mask registered secrets, URL passwords, secret parameters and header values in ``text``."""
    if not text:
        return text
    text = redact_url(text)
    if "'" in text or '"' in text:
        text = _QUOTED_PAIR.sub(_mask_quoted, text)
    if ":" in text:
        text = _HEADER_LINE.sub(_mask_header, text)
    pattern = _pattern
    if pattern is not None:
        text = pattern.sub(MASK, text)
    return text


# -- structures -----------------------------------------------------------------------------


def redact(value: Any, key: object = None, *, model: Any = None) -> Any:
    """Return a copy of ``value`` that is safe to show.

    ``SecretStr`` values, values under secret names and registered values are masked. With
    ``model`` (the validated pydantic model of ``value``), the keys that are fields of the model
    are judged by the field's type instead of their name: ``primary_key`` stays visible, a
    ``SecretStr`` field is masked whatever its name.
    """
    if hasattr(value, "get_secret_value"):
        return MASK
    if hasattr(type(value), "model_fields"):  # a pydantic model
        return {
            (info.alias or name): (
                _redact_data_keys(getattr(value, name))
                if any(isinstance(m, DataKeys) for m in info.metadata)
                else redact(getattr(value, name), model=getattr(value, name))
            )
            for name, info in type(value).model_fields.items()
            if name in value.model_fields_set
        }
    if isinstance(value, Mapping):
        fields = _fields_by_key(model)
        out: dict[Any, Any] = {}
        for k, v in value.items():
            if k in fields:
                sub = getattr(model, fields[k], None)
                if hasattr(sub, "get_secret_value"):
                    out[k] = MASK
                elif _data_keys(type(model), fields[k]):
                    out[k] = _redact_data_keys(v, sub)
                else:
                    out[k] = redact(v, model=sub)
            elif is_secret_key(k) and v is not None and not isinstance(v, (Mapping, list, tuple)):
                out[k] = MASK
            else:
                out[k] = redact(v, k, model=model.get(k) if isinstance(model, Mapping) else None)
        return out
    if isinstance(value, (list, tuple)):
        models = list(model) if isinstance(model, (list, tuple)) else []
        return [
            redact(v, key, model=models[i] if i < len(models) else None)
            for i, v in enumerate(value)
        ]
    if isinstance(value, str):
        return redact_text(value)
    return value


def _redact_data_keys(value: Any, model: Any = None) -> Any:
    """A dict keyed by column names: its values are judged by type and text, not by key."""
    if not isinstance(value, Mapping):
        return redact(value, model=value if model is None else model)
    typed = model if isinstance(model, Mapping) else value
    return {
        k: MASK if hasattr(typed.get(k), "get_secret_value") else redact(v, model=typed.get(k))
        for k, v in value.items()
    }


def _fields_by_key(model: Any) -> dict[str, str]:
    """``{key as written: field name}`` of a pydantic model (aliases included)."""
    fields = getattr(type(model), "model_fields", None)
    if not fields:
        return {}
    out = {}
    for name, info in fields.items():
        out[name] = name
        if info.alias:
            out[info.alias] = name
    return out


# -- exceptions -----------------------------------------------------------------------------


class RedactedError(Exception):
    """Stands in a chain of causes for an error whose message could not be cleaned in place."""


def scrub_exception(exc: BaseException | None, _seen: set[int] | None = None) -> None:
    """Mask secrets in the message of ``exc`` and of every exception chained to it.

    The arguments of each exception are cleaned in place (so ``str(exc)`` and a printed
    traceback show ``***``); an exception whose text stays unclean (a custom ``__str__``) is
    replaced in the chain by a :class:`RedactedError` with the cleaned text and its traceback.
    """
    seen = set() if _seen is None else _seen
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        _scrub_args(exc)
        for attr in ("__cause__", "__context__"):
            linked = getattr(exc, attr)
            if linked is None:
                continue
            scrub_exception(linked, seen)
            if not _clean(linked):
                setattr(exc, attr, stand_in_for(linked))
        exc = None


def stand_in_for(exc: BaseException) -> BaseException:
    """``exc`` itself when its text is clean, else a :class:`RedactedError` with the cleaned
    text, the same traceback and the same chained causes."""
    if _clean(exc):
        return exc
    stand_in = RedactedError(f"{type(exc).__qualname__}: {redact_text(_text_of(exc))}")
    stand_in.__traceback__ = exc.__traceback__
    stand_in.__cause__ = exc.__cause__
    stand_in.__context__ = exc.__context__
    stand_in.__suppress_context__ = exc.__suppress_context__
    return stand_in


def _text_of(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return ""


def _clean(exc: BaseException) -> bool:
    text = _text_of(exc)
    return redact_text(text) == text


def _scrub_args(exc: BaseException) -> None:
    try:
        args = exc.args
        cleaned = tuple(redact_text(a) if isinstance(a, str) else a for a in args)
        if cleaned != args:
            exc.args = cleaned
        if isinstance(exc, OSError):
            for attr in ("filename", "filename2", "strerror"):
                value = getattr(exc, attr, None)
                if isinstance(value, str) and redact_text(value) != value:
                    setattr(exc, attr, redact_text(value))
        notes = getattr(exc, "__notes__", None)
        if isinstance(notes, list):
            exc.__notes__ = [redact_text(n) if isinstance(n, str) else n for n in notes]
        message = getattr(exc, "message", None)  # our errors and some drivers keep it apart
        if isinstance(message, str) and redact_text(message) != message:
            exc.message = redact_text(message)  # type: ignore[attr-defined]
    except Exception:  # an exception type that refuses new attributes: leave it, _clean decides
        pass


# -- logging --------------------------------------------------------------------------------


class RedactingFilter(logging.Filter):
    """A logging filter that masks secrets in the message (and the exception) of every record.

    data-pipeline cleans the records of its own loggers and of the libraries it drives
    (see :mod:`data_pipeline.core.log`); attach this filter to a handler to clean others.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record)
        return True


def redact_record(record: logging.LogRecord) -> None:
    """Mask secrets in a log record's message and exception, in place."""
    try:
        message = record.getMessage()
    except Exception:  # a bad format string is the caller's bug; leave it alone
        return
    cleaned = redact_text(message)
    if cleaned != message:
        record.msg = cleaned
        record.args = None
    if record.exc_info and record.exc_info[1] is not None:
        exc = record.exc_info[1]
        scrub_exception(exc)
        shown = stand_in_for(exc)
        if shown is not exc:
            record.exc_info = (type(shown), shown, exc.__traceback__)
        record.exc_text = None
