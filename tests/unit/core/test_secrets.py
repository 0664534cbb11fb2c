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
