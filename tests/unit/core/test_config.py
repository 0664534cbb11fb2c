from __future__ import annotations

from typing import Literal

import pytest
from pydantic import SecretStr

from data_pipeline.core.config import ConfigModel, interpolate_env, validate_config
from data_pipeline.core.errors import ConfigError


class Inner(ConfigModel):
    strategy: Literal["mean", "median"] = "mean"


class Model(ConfigModel):
    url: str
    timeout: float = 30
    password: SecretStr | None = None
    columns: list[Inner] = []


def test_unknown_key_is_named() -> None:
    with pytest.raises(ConfigError) as info:
        validate_config(Model, {"url": "x", "timout": 3}, component="RESTAPISource 'a'")
    msg = str(info.value)
    assert "config.timout: unknown key" in msg
    assert msg.startswith("RESTAPISource 'a':")
    assert "timeout" in msg  # the hint lists accepted keys


def test_wrong_type_and_nested_path_and_allowed_values() -> None:
    with pytest.raises(ConfigError) as info:
        validate_config(
            Model, {"url": "x", "timeout": "soon", "columns": [{}, {"strategy": "max"}]}
        )
    msg = str(info.value)
    assert "config.timeout" in msg and "'soon'" in msg
    assert "config.columns[1].strategy" in msg
    assert "'mean'" in msg and "'median'" in msg


def test_missing_required_key() -> None:
    with pytest.raises(ConfigError, match=r"config.url: required key is missing"):
        validate_config(Model, {})


def test_not_a_mapping() -> None:
    with pytest.raises(ConfigError, match="must be a mapping"):
        validate_config(Model, ["url"])  # type: ignore[arg-type]


def test_secret_value_is_not_echoed_in_errors() -> None:
    with pytest.raises(ConfigError) as info:
        validate_config(Model, {"url": "x", "password": 12345678})
    assert "12345678" not in str(info.value)


def test_interpolate_env() -> None:
    env = {"HOST": "db", "PW": "s3cret"}
    out = interpolate_env(
        {"a": "${HOST}:5432", "b": ["${PW}", "${MISSING:-dflt}"], "c": 3, "d": "$${HOST}"},
        environ=env,
    )
    assert out == {"a": "db:5432", "b": ["s3cret", "dflt"], "c": 3, "d": "${HOST}"}


def test_interpolate_env_missing_names_path() -> None:
    with pytest.raises(
        ConfigError, match=r"storage.db.config.password: environment variable NOPE is not set"
    ):
        interpolate_env({"storage": {"db": {"config": {"password": "${NOPE}"}}}}, environ={})
