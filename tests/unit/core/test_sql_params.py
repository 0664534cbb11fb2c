"""``:name`` parameters: one scanner for every driver style (compared with hand-written SQL)."""

from __future__ import annotations

import pytest

from data_pipeline.core.config import validate_config
from data_pipeline.core.errors import ConfigError
from data_pipeline.core.sql import SQLConnectionConfig, resolve
from data_pipeline.core.sql.params import bind, check_params, placeholders

SQL = (
    "SELECT a::int, ':skip' AS s, \"col:x\", `b:y`, $$ :body $$, $t$ :tagged $t$, "
    "x -- :comment\n /* :block */ FROM t WHERE a = :a AND b LIKE '5%' AND c IN (:b, :a)"
)


@pytest.mark.parametrize(
    ("style", "sql", "values"),
    [
        (
            "numeric",
            SQL.replace("a = :a", "a = $1").replace("(:b, :a)", "($2, $1)"),
            [1, "two"],
        ),
        (
            "format",
            SQL.replace("a = :a", "a = %s").replace("(:b, :a)", "(%s, %s)").replace("5%", "5%%"),
            [1, "two", 1],
        ),
        ("qmark", SQL.replace("a = :a", "a = ?").replace("(:b, :a)", "(?, ?)"), [1, "two", 1]),
        (
            "dollar_named",
            SQL.replace("a = :a", "a = $a").replace("(:b, :a)", "($b, $a)"),
            {"a": 1, "b": "two"},
        ),
    ],
)
def test_bind_rewrites_only_placeholders(style: str, sql: str, values: object) -> None:
    assert bind(SQL, {"a": 1, "b": "two", "unused": 3}, style) == (sql, values)  # type: ignore[arg-type]


def test_without_placeholders_the_sql_is_sent_as_written() -> None:
    assert bind("SELECT '5%' AS p, x::text", {"a": 1}, "format") == (
        "SELECT '5%' AS p, x::text",
        [],
    )
    assert placeholders(SQL) == ["a", "b"]


def test_params_must_be_a_dict() -> None:
    with pytest.raises(ConfigError, match="params must be a dict") as info:
        check_params([1, 2])
    assert "params={'name': value}" in str(info.value)
    with pytest.raises(ConfigError, match="params has no 'b'"):
        bind("SELECT :a, :b", {"a": 1}, "qmark")
    assert check_params(None) == {}


def test_one_connection_model() -> None:
    url = resolve(
        SQLConnectionConfig(url="postgresql+psycopg://u:p%40ss@db:6543/sales?sslmode=require")
    )
    keys = resolve(
        SQLConnectionConfig(
            db_type="postgres",
            host="db",
            port=6543,
            database="sales",
            username="u",
            password="p@ss",
            connect_args={"sslmode": "require"},
        )
    )
    assert url == keys.__class__(**{**keys.__dict__, "url": url.url})
    assert url.where() == "db:6543/sales" and "p@ss" not in repr(url)
    assert url.jdbc() == (
        "jdbc:postgresql://db:6543/sales",
        {
            "user": "u",
            "password": "p@ss",
            "driver": "org.postgresql.Driver",
            "connectTimeout": "10",
        },
    )
    assert resolve(SQLConnectionConfig(url="mariadb://root@h/shop")).jdbc()[0] == (
        "jdbc:mariadb://h:3306/shop"
    )
    lite = resolve(SQLConnectionConfig(url="sqlite:///rel/app.db"))
    assert (lite.dialect, lite.database) == ("sqlite", "rel/app.db")
    assert resolve(SQLConnectionConfig(), default_db_type="sqlite").path == ":memory:"
    with pytest.raises(ConfigError, match="not both"):
        validate_config(SQLConnectionConfig, {"url": "postgresql://h/db", "host": "h"})
    with pytest.raises(ConfigError, match="password is given twice"):
        resolve(SQLConnectionConfig(url="postgresql://u:pw@h/db", password="pw"))
    with pytest.raises(ConfigError, match="needs 'database'"):
        resolve(SQLConnectionConfig(db_type="mysql"))
