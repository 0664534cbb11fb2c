"""The plan-text redaction pattern the JDBC read and write add to a Spark session
(``data_pipeline._spark.redact_secret_options``; docs/spark.md Secrets). The pattern is applied
by Java's regex engine; the syntax used here reads the same in Python's ``re``, which is the
oracle for what it masks. The real server is in tests/e2e/test_spark_secrets.py."""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest

from data_pipeline._spark import PLAN_SECRET_REGEX, redact_secret_options

KEY = "spark.sql.redaction.string.regex"

PLAN = """options {
  key: "user"
  value: "reader"
}
options {
  key: "password"
  value: "pa\\\\ss\\"word-9"
}
options {
  key: "fs.s3a.secret.key"
  value: "abc"
}
options {
  key: "partitionColumn"
  value: "id"
}"""


class Conf:
    def __init__(self, value: str | None = None, refuse: bool = False) -> None:
        self.values = {} if value is None else {KEY: value}
        self.refuse = refuse
        self.sets = 0

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def set(self, key: str, value: str) -> None:
        if self.refuse:
            raise RuntimeError("CONFIG_NOT_AVAILABLE")
        self.sets += 1
        self.values[key] = value


class Session:
    def __init__(self, conf: Conf) -> None:
        self.conf = conf


def test_pattern_masks_secret_options_only() -> None:
    masked = re.sub(PLAN_SECRET_REGEX, "*********(redacted)", PLAN)
    assert "pa" not in masked.replace("partitionColumn", "") and "abc" not in masked
    assert 'key: "user"\n  value: "reader"' in masked
    assert 'key: "partitionColumn"\n  value: "id"' in masked
    assert masked.count("*********(redacted)") == 2


def test_set_once_and_beside_the_users_pattern() -> None:
    conf = Conf()
    redact_secret_options(Session(conf))
    redact_secret_options(Session(conf))
    assert conf.values[KEY] == PLAN_SECRET_REGEX and conf.sets == 1
    mine = Conf("customer_[0-9]+")
    redact_secret_options(Session(mine))
    combined = mine.values[KEY]
    assert re.sub(combined, "X", "customer_12 " + PLAN).count("X") == 3


def test_a_session_refusing_the_setting_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="data_pipeline"):
        redact_secret_options(Session(Conf(refuse=True)))
    assert "could not set spark.sql.redaction.string.regex" in caplog.text
