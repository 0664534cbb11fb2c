from __future__ import annotations

import pytest

from data_pipeline.core import errors as e


def test_every_error_derives_from_the_root() -> None:
    for name in e.__all__:
        cls = getattr(e, name)
        assert issubclass(cls, e.DataPipelineError), name


@pytest.mark.parametrize(
    ("cls", "builtin"),
    [
        (e.NotFoundError, KeyError),
        (e.ColumnNotFoundError, KeyError),
        (e.ConfigError, ValueError),
        (e.DependencyError, ImportError),
        (e.InputNotFoundError, FileNotFoundError),
        (e.IngestionTimeoutError, TimeoutError),
        (e.StorageConnectionError, ConnectionError),
        (e.StorageAuthenticationError, PermissionError),
        (e.DataTypeError, TypeError),
        (e.HTMLExportError, OSError),
    ],
)
def test_specific_errors_also_inherit_the_builtin(cls: type, builtin: type) -> None:
    assert issubclass(cls, builtin)


def test_message_names_component_and_ends_with_hint() -> None:
    err = e.NotFoundError("unknown source 'x'", component="DataIngestionManager", hint="known: 'a'")
    assert str(err) == "DataIngestionManager: unknown source 'x'\nHint: known: 'a'"
    # KeyError would quote the message; ours does not
    assert not str(err).startswith('"')


def test_transient_flags() -> None:
    assert e.DataTimeoutError("slow").transient is True
    assert e.DataConnectionError("down").transient is True
    assert e.ConfigError("bad").transient is False
    assert e.DataPipelineError("x", transient=True).transient is True


def test_url_passwords_never_reach_a_message() -> None:
    err = e.StorageConnectionError("cannot reach postgresql://app:hunter2@db:5432/sales")
    assert "hunter2" not in str(err)
    assert "postgresql://app:***@db:5432/sales" in str(err)
