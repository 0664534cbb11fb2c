from __future__ import annotations

import logging

import pytest

from data_pipeline.core.component import Component
from data_pipeline.core.config import ConfigModel, SecretStr
from data_pipeline.core.log import get_logger
from data_pipeline.core.secrets import redact, redact_text, redact_url, register_secret


class Conf(ConfigModel):
    url: str = "http://x"
    password: SecretStr | None = None
    headers: dict[str, str] = {}


class Thing(Component):
    config_model = Conf


PASSWORD = "pa55-w0rd-xyz"
TOKEN = "tok-abcdef-123456"


def make() -> Thing:
    return Thing(
        "thing",
        {
            "password": PASSWORD,
            "headers": {
                "Authorization": f"Bearer {TOKEN}",
                "X-API-Key": "key-98765",
                "Accept": "json",
            },
        },
    )


def test_metadata_masks_every_secret() -> None:
    meta = make().get_metadata()
    text = repr(meta)
    for secret in (PASSWORD, TOKEN, "key-98765"):
        assert secret not in text
    assert meta["config"]["password"] == "***"
    assert meta["config"]["headers"]["Authorization"] == "***"
    assert meta["config"]["headers"]["Accept"] == "json"


def test_repr_masks_secrets() -> None:
    assert PASSWORD not in repr(make())


def test_errors_and_logs_mask_registered_secrets(caplog: pytest.LogCaptureFixture) -> None:
    thing = make()
    logger = get_logger("data_pipeline.tests.secrets")
    with caplog.at_level(logging.DEBUG, logger="data_pipeline"):
        logger.error("connecting with %s and Bearer %s", PASSWORD, TOKEN)
    assert PASSWORD not in caplog.text and TOKEN not in caplog.text
    assert "***" in caplog.text

    with pytest.raises(Exception) as info, thing._operation("connect"):
        raise RuntimeError(f"server said: bad password {PASSWORD}, token {TOKEN}")
    assert PASSWORD not in str(info.value) and TOKEN not in str(info.value)
    assert PASSWORD not in (thing.get_metadata()["last_error"] or "")


def test_redact_url_and_query() -> None:
    assert redact_url("mysql://root:pw1234@h:3306/db") == "mysql://root:***@h:3306/db"
    assert redact_url("https://api/x?api_key=abc&page=2") == "https://api/x?api_key=***&page=2"


def test_redact_structures() -> None:
    assert redact({"token": "t", "nested": [{"secret": 1, "ok": 2}]}) == {
        "token": "***",
        "nested": [{"secret": "***", "ok": 2}],
    }


def test_short_values_are_not_registered() -> None:
    register_secret("ab")
    assert redact_text("abc ab") == "abc ab"


def test_short_secret_is_masked_only_as_a_whole_word() -> None:
    register_secret("pass")
    assert (
        redact_text("password: pass, user:pass@host, bypass")
        == "password: ***, user:***@host, bypass"
    )


# -- issue 15: secrets found by rule --------------------------------------------------------

SECRET_NAMES = [
    "refresh_token", "client_secret", "X-Amz-Signature", "X-Amz-Credential", "X-Amz-Date",
    "Ocp-Apim-Subscription-Key", "x-functions-key", "X-API-Key", "X-Auth-Token", "apiKey",
    "access_token", "sig", "code", "session", "sessionid", "PHPSESSID", "password", "passwd",
    "Authorization", "Proxy-Authorization", "Cookie", "Set-Cookie", "private_token", "auth",
    "AWS_SECRET_ACCESS_KEY", "API_TOKEN", "DB_PASSWORD", "credential", "jwt",
]  # fmt: skip
PLAIN_NAMES = [
    "token_url", "password_file", "api_key_header", "key_template", "author", "Accept",
    "Content-Type", "limit", "offset", "page", "cursor", "user", "username", "client_id",
    "grant_type", "lang", "X-Trace", "keyword", "monkey", "bypass", "authority",
]  # fmt: skip


@pytest.mark.parametrize("name", SECRET_NAMES)
def test_credential_names_are_secret(name: str) -> None:
    from data_pipeline.core.secrets import is_secret_key

    assert is_secret_key(name)


@pytest.mark.parametrize("name", PLAIN_NAMES)
def test_other_names_are_not(name: str) -> None:
    from data_pipeline.core.secrets import is_secret_key

    assert not is_secret_key(name)


def test_query_parameters_by_rule() -> None:
    url = (
        "https://h/x?a=1&refresh_token=rt1&client_secret=cs2&X-Amz-Signature=abc&"
        "X-Amz-Credential=AKID%2F2025&code=c0de&page=2"
    )
    assert redact_url(url) == (
        "https://h/x?a=1&refresh_token=***&client_secret=***&X-Amz-Signature=***&"
        "X-Amz-Credential=***&code=***&page=2"
    )


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u:p@ss/w:rd@db.example.com:5432/app",
        "https://u:a@b@c@api.example.com/x",
        "mysql://root:x/y/z@127.0.0.1/db",
    ],
)
def test_url_passwords_with_unencoded_at_slash_colon(url: str) -> None:
    shown = redact_text(f"cannot connect to {url} (refused)")
    assert "ss/w" not in shown and "rd@" not in shown and "b@c" not in shown and "y/z" not in shown
    assert ":***@" in shown and shown.endswith(" (refused)")


def test_quoted_pairs_and_header_lines() -> None:
    text = (
        "{'Ocp-Apim-Subscription-Key': 'k1k1k1', 'Accept': 'json'} "
        "[(b'x-functions-key', b'f2f2f2')] "
        '{"client_secret": "c3c3c3", "id": "7"}\nX-Auth-Token: t4t4t4'
    )
    shown = redact_text(text)
    for secret in ("k1k1k1", "f2f2f2", "c3c3c3", "t4t4t4"):
        assert secret not in shown
    assert "'Accept': 'json'" in shown and '"id": "7"' in shown


def test_env_variable_in_a_url_password_is_encoded_and_registered() -> None:
    from data_pipeline.core.config import interpolate_env

    value = interpolate_env(
        "postgresql://app:${DB_PW_X}@db:5432/app", environ={"DB_PW_X": "Zq9@slash/colon:end"}
    )
    assert value == "postgresql://app:Zq9%40slash%2Fcolon%3Aend@db:5432/app"
    assert redact_text("Zq9@slash/colon:end or Zq9%40slash%2Fcolon%3Aend") == "*** or ***"


def test_env_variables_named_secret_are_registered() -> None:
    from data_pipeline.core.config import interpolate_env

    interpolate_env({"path": "${SERVICE_TOKEN_Q}"}, environ={"SERVICE_TOKEN_Q": "svc-tok-93817"})
    assert redact_text("sent svc-tok-93817") == "sent ***"


def test_metadata_judges_our_fields_by_type_and_free_dicts_by_name() -> None:
    from data_pipeline.ingestion import RESTAPISource

    source = RESTAPISource(
        "m",
        {
            "url": "https://api.example.com/x",
            "headers": {"x-functions-key": "fk-7777777", "X-Trace": "t"},
            "params": {"refresh_token": "rt-8888888", "lang": "en"},
            "incremental": {"cursor_field": "id", "param": "since", "primary_key": "id"},
        },
    )
    config = source.get_metadata()["config"]
    assert config["headers"] == {"x-functions-key": "***", "X-Trace": "t"}
    assert config["params"] == {"refresh_token": "***", "lang": "en"}
    assert config["incremental"]["primary_key"] == "id"  # a typed field, not a credential


class _CustomStr(Exception):
    def __str__(self) -> str:
        return "failed at https://h/x?api_key=custom-key-5555"


def test_chained_causes_and_custom_messages_are_scrubbed() -> None:
    import traceback

    from data_pipeline.core.secrets import scrub_exception

    secret = "chain-secret-" + "4444"  # not in a source line the traceback prints
    register_secret(secret)
    try:
        try:
            try:
                raise _CustomStr()
            except _CustomStr as inner:
                raise ValueError(f"token {secret} refused") from inner
        except ValueError as middle:
            raise RuntimeError("outer") from middle
    except RuntimeError as exc:
        scrub_exception(exc)
        text = "".join(traceback.format_exception(exc))
    assert "chain-secret-4444" not in text and "custom-key-5555" not in text
    assert "RedactedError: _CustomStr: failed at https://h/x?api_key=***" in text


def test_log_records_of_libraries_are_cleaned(caplog: pytest.LogCaptureFixture) -> None:
    import data_pipeline  # noqa: F401  (installs the cleaning)

    with caplog.at_level(logging.DEBUG, logger="httpx"):
        logging.getLogger("httpx").info("HTTP Request: GET %s", "https://h/x?access_token=lib-77")
        logging.getLogger("botocore.endpoint").debug("headers {'Authorization': 'AWS4 cred'}")
    assert "lib-77" not in caplog.text and "AWS4 cred" not in caplog.text


COLUMN_KEYED = [
    (
        "data_pipeline.processing",
        "DataAggregator",
        {"group_by": ["promo_code"], "aggregations": {"session_token": "count"}},
    ),
    (
        "data_pipeline.processing",
        "WindowedAggregator",
        {"time_column": "ts", "window": "1m", "aggregations": {"zip_code": "mean"}},
    ),
    ("data_pipeline.transformation", "ColumnRenamer", {"mapping": {"api_key": "plain"}}),
    ("data_pipeline.transformation", "DataTypeConverter", {"columns": {"secret_code": "int64"}}),
    (
        "data_pipeline.transformation",
        "MissingValueHandler",
        {"column_strategies": {"country_code": "mode"}},
    ),
    ("data_pipeline.processing", "DataEnricher", {"derived": {"auth_total": "a + b"}}),
]


@pytest.mark.parametrize(("module", "cls", "config"), COLUMN_KEYED)
def test_column_named_like_a_credential_does_not_make_its_setting_secret(
    module: str, cls: str, config: dict[str, object]
) -> None:
    """Dicts keyed by column names (DATA_KEYS) are data: a column called ``session_token`` does
    not register its aggregation ``count`` as a secret (which would mask the word in every later
    message), and metadata shows the setting. Without the marker the values are registered."""
    import importlib

    from data_pipeline.core import secrets

    component = getattr(importlib.import_module(module), cls)(name="c", config=config)
    shown = str(component.get_metadata()["config"])
    for value in ("count", "mean", "plain", "int64", "mode", "a + b"):
        assert redact_text(f"the {value} of x") == f"the {value} of x"
    assert "***" not in shown, shown

    # the broken variant: the same dict walked as free-form options registers the values
    saved = set(secrets._secret_values), secrets._pattern
    try:
        secrets.register_secrets_in(dict(config))
        values = {v for v in secrets._secret_values}
        assert values & {"count", "mean", "plain", "int64", "mode", "a + b"}
    finally:
        secrets._secret_values.clear()
        secrets._secret_values.update(saved[0])
        secrets._pattern = saved[1]


def test_data_keys_still_mask_typed_secrets() -> None:
    from typing import Annotated

    from data_pipeline.core.config import ConfigModel, SecretStr, validate_config
    from data_pipeline.core.secrets import DATA_KEYS, redact

    class Lookup(ConfigModel):
        by_column: Annotated[dict[str, str | SecretStr], DATA_KEYS]

    settings = validate_config(
        Lookup, {"by_column": {"token": "plain", "x": SecretStr("typed-99")}}
    )
    assert redact(settings) == {"by_column": {"token": "plain", "x": "***"}}
    assert redact_text("typed-99") == "***"
