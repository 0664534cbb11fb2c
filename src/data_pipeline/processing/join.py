"""DataJoiner: join the data with another frame (inner, left, right, full, semi, anti, cross)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import narwhals as nw
from pydantic import Field, field_validator, model_validator

from data_pipeline.core.component import Operation
from data_pipeline.core.config import ConfigModel
from data_pipeline.core.engines import engine_of, match_engine, pandas_nullable
from data_pipeline.core.errors import ConfigError, ProcessingError, SchemaError
from data_pipeline.core.frames import column_names, require_columns
from data_pipeline.processing.base import DataProcessor

__all__ = ["DataJoiner", "DataJoinerConfig", "JoinValidationError"]

How = Literal["inner", "left", "right", "full", "semi", "anti", "cross"]
Validate = Literal["one_to_one", "one_to_many", "many_to_one", "many_to_many"]


class JoinValidationError(ProcessingError, SchemaError):
    """A join's ``validate`` expectation failed: a side has duplicate keys."""


def _as_list(value: Any) -> Any:
    if value is None:
        return None
    return [value] if isinstance(value, str) else value


class DataJoinerConfig(ConfigModel):
    """Config of :class:`DataJoiner` (see its docstring)."""

    how: How = "inner"
    """``inner`` (rows with a match on both sides), ``left`` (every left row; right columns
    null where nothing matched), ``right``, ``full`` (every row of both sides), ``semi`` (left
    rows that have a match, left columns only), ``anti`` (left rows without a match), or
    ``cross`` (every pair of rows; takes no keys)."""
    on: list[str] | None = None
    """Key columns (a name or a list) with the same names on both sides; the output has them
    once (a full join coalesces them, as SQL ``USING``). Give either ``on`` or ``left_on`` +
    ``right_on`` (neither for ``cross``)."""
    left_on: list[str] | None = None
    """The left side's key columns when the names differ, paired by position with
    ``right_on`` (as many each)."""
    right_on: list[str] | None = None
    """The right side's key columns, paired with ``left_on``. Inner and left joins keep only
    the left key columns."""
    suffix: str = Field(default="_right", min_length=1)
    """Appended to a right-side column whose name is already on the left (non-empty)."""
    validate_: Validate = Field(default="many_to_many", alias="validate")
    """Checked before joining: ``one_to_one`` (keys unique on both sides), ``one_to_many``
    (unique on the left), ``many_to_one`` (unique on the right) or ``many_to_many`` (no
    check). Null keys are not counted; a failure is a JoinValidationError naming the side
    and up to three duplicate keys with their row counts."""
    right_table: str | None = None
    """The table to ``retrieve()`` when the right side is a storage system; not used for
    other right sides (a frame, a callable, a data source)."""

    _lists = field_validator("on", "left_on", "right_on", mode="before")(_as_list)

    @model_validator(mode="after")
    def _keys(self) -> DataJoinerConfig:
        if self.how == "cross":
            if self.on or self.left_on or self.right_on:
                raise ValueError("a cross join takes no keys: remove 'on'/'left_on'/'right_on'")
            return self
        if self.on is not None:
            if self.left_on is not None or self.right_on is not None:
                raise ValueError("give either 'on' or 'left_on' + 'right_on', not both")
            if not self.on:
                raise ValueError("'on' must name at least one column")
            return self
        if not self.left_on or not self.right_on:
            raise ValueError(f"a {self.how} join needs 'on', or 'left_on' and 'right_on'")
        if len(self.left_on) != len(self.right_on):
            raise ValueError("'left_on' and 'right_on' must name as many columns each")
        return self


class DataJoiner(DataProcessor):
    """Join the data (the left side) with another frame (the right side).

    ``how``: ``inner``, ``left``, ``right``, ``full``, ``semi``, ``anti``, ``cross``. Keys: ``on``
    (same names on both sides; a full join then coalesces them as SQL ``USING`` does) or
    ``left_on`` + ``right_on``. Null keys never match (as in SQL). A right-side column whose name
    is already on the left gets ``suffix`` (default ``_right``). ``validate`` checks the keys
    before joining: ``one_to_one`` (both sides unique), ``one_to_many`` (left unique),
    ``many_to_one`` (right unique) or ``many_to_many`` (no check, the default); a failure names the
    side and example duplicate keys.

    The right side is given as ``right=`` at construction or with :meth:`set_right`: a frame; a
    zero-argument callable; a data source (its ``ingest()`` runs at the first join); or a storage
    system with the config key ``right_table`` (``retrieve(right_table)``). It is loaded once
    and converted to the left side's engine when they differ (through Arrow).

    Raises:
        ConfigError: the keys are invalid (both ``on`` and ``left_on``/``right_on``, keys on a
            cross join, ``left_on`` and ``right_on`` of different lengths, ...), the right side is
            not set, or it is something that cannot give a frame.
        ColumnNotFoundError: a key column is missing on the left or the right side.
        JoinValidationError: the ``validate`` expectation failed (the side and example duplicate
            keys are named); also a SchemaError.
        ProcessingError: the engine failed otherwise (the message names the processor).

    Example:
        >>> import polars as pl
        >>> products = pl.DataFrame({"product_id": [1, 2], "category": ["toys", "food"]})
        >>> joiner = DataJoiner(name="add_category", config={
        ...     "how": "left", "on": ["product_id"], "validate": "many_to_one",
        ... }, right=products)
        >>> sales = pl.DataFrame({"product_id": [1, 1, 3], "quantity": [5, 2, 1]})
        >>> joiner.process(sales).sort("quantity").rows()
        [(3, 1, None), (1, 2, 'toys'), (1, 5, 'toys')]
    """

    config_model = DataJoinerConfig
    settings: DataJoinerConfig

    def __init__(self, name: str, config: Any = None, *, right: Any = None) -> None:
        super().__init__(name, config)
        s = self.settings
        self.how: str = s.how
        self.left_keys: list[str] = list(s.on or s.left_on or [])
        self.right_keys: list[str] = list(s.on or s.right_on or [])
        self._right: Any = None
        if right is not None:
            self.set_right(right)

    def set_right(self, right: Any) -> DataJoiner:
        """Set the right side: a frame, a zero-argument callable returning one, a data source
        (its ``ingest()`` is called), or a storage system (``retrieve(right_table)``)."""
        self._right = right
        return self

    def _right_frame(self) -> Any:
        if self._right is None:
            raise ConfigError(
                "the right side of the join is not set",
                component=self.label,
                hint="pass right=frame to DataJoiner(...) or call joiner.set_right(frame)",
            )
        right = self._right
        if _is_frame(right):
            return right
        table = self.settings.right_table
        if hasattr(right, "retrieve") and table is not None:  # a storage system
            right = right.retrieve(table)
        elif hasattr(right, "ingest"):  # a data source
            right = right.ingest()
        elif callable(right):
            right = right()
        else:
            raise ConfigError(
                f"cannot use a {type(right).__name__} as the right side of the join",
                component=self.label,
                hint="pass a frame, a zero-argument callable returning one, a data source, or a "
                "storage system together with config 'right_table'",
            )
        self._right = right
        return right

    def required_columns(self, columns: Sequence[str]) -> list[str]:
        return list(self.left_keys)

    def output_columns(self, columns: Sequence[str]) -> list[str]:
        if self.how in ("semi", "anti"):
            return list(columns)
        if not _is_frame(self._right):
            return list(columns)  # unknown until the right side is loaded
        from data_pipeline.core.frames import column_names as names

        right_cols = names(self._right)
        return self._output_names(list(columns), right_cols)

    def _output_names(self, left: list[str], right: list[str]) -> list[str]:
        suffix = self.settings.suffix
        shared_keys = self.settings.on is not None
        if self.how == "right" and not shared_keys:
            kept = [c for c in left if c not in self.left_keys]
            return kept + [c + suffix if c in left else c for c in right]
        out = list(left)
        for c in right:
            if shared_keys and c in self.right_keys and self.how != "cross":
                continue
            if self.how in ("inner", "left") and not shared_keys and c in self.right_keys:
                continue
            out.append(c + suffix if c in left else c)
        return out

    def _apply_frame(self, frame: Any, op: Operation) -> Any:
        right = match_engine(frame, self._right_frame(), component=self.label)
        require_columns(right, self.right_keys, component=self.label, what="right-side column")
        s = self.settings
        if s.validate_ != "many_to_many":
            self._validate(frame, right, s.validate_)
        op.details["how"] = self.how
        if self.how == "cross":
            return frame.join(right, how="cross", suffix=s.suffix)
        if self.how == "right":
            return self._right_join(frame, right)
        kwargs: dict[str, Any]
        if s.on is not None:
            kwargs = {"on": self.left_keys}
        else:
            kwargs = {"left_on": self.left_keys, "right_on": self.right_keys}
        result = frame.join(right, how=self.how, suffix=s.suffix, **kwargs)
        result = self._pandas_dtypes(result, frame, right)
        if self.how == "full" and s.on is not None:
            result = self._coalesce_keys(result, column_names(frame))
        if self.how in ("inner", "left") and s.on is None:
            # pandas keeps the right keys of a left_on/right_on join; the other engines drop them
            wanted = self._output_names(column_names(frame), column_names(right))
            if column_names(result) != wanted and set(wanted) <= set(column_names(result)):
                result = result.select(wanted)
        return result

    def _pandas_dtypes(self, result: Any, left: Any, right: Any) -> Any:
        """pandas: the left and right columns keep their dtypes (see :func:`pandas_nullable`)."""
        if engine_of(left) != "pandas":
            return result
        suffix = self.settings.suffix
        left_native, right_native = left.to_native(), right.to_native()
        templates = {c: left_native[c].dtype for c in left_native.columns}
        for c in right_native.columns:
            name = c + suffix if c in left_native.columns else c
            templates.setdefault(name, right_native[c].dtype)
        return pandas_nullable(result, templates)

    def _coalesce_keys(self, result: Any, left_cols: list[str]) -> Any:
        suffix = self.settings.suffix
        fixed = [nw.coalesce(nw.col(k), nw.col(k + suffix)).alias(k) for k in self.left_keys]
        result = result.with_columns(*fixed).drop([k + suffix for k in self.left_keys])
        return result

    def _right_join(self, left: Any, right: Any) -> Any:
        suffix = self.settings.suffix
        left_cols, right_cols = column_names(left), column_names(right)
        shared = self.settings.on is not None
        rename = {
            c: c + suffix
            for c in right_cols
            if c in left_cols and not (shared and c in self.right_keys)
        }
        renamed = right.rename(rename) if rename else right
        right_keys = [rename.get(k, k) for k in self.right_keys]
        joined = renamed.join(left, how="left", left_on=right_keys, right_on=self.left_keys)
        joined = self._pandas_dtypes(joined, left, right)
        right_rest = [rename.get(c, c) for c in right_cols]
        if shared:
            order = left_cols + [c for c in right_rest if c not in self.right_keys]
        else:
            order = [c for c in left_cols if c not in self.left_keys] + right_rest
        return joined.select(order)

    def _validate(self, left: Any, right: Any, mode: str) -> None:
        checks = []
        if mode in ("one_to_one", "one_to_many"):
            checks.append(("left", left, self.left_keys))
        if mode in ("one_to_one", "many_to_one"):
            checks.append(("right", right, self.right_keys))
        for side, frame, keys in checks:
            examples = _duplicate_keys(frame, keys)
            if examples:
                shown = "; ".join(
                    ", ".join(f"{k}={v!r}" for k, v in zip(keys, row[:-1], strict=True))
                    + f" ({row[-1]} rows)"
                    for row in examples
                )
                raise JoinValidationError(
                    f"validate={mode!r} failed: the {side} side has duplicate join keys, "
                    f"e.g. {shown}",
                    component=self.label,
                    hint="deduplicate that side first, or choose the validate mode that matches "
                    "the data (one_to_many, many_to_one, many_to_many)",
                )


def _is_frame(obj: Any) -> bool:
    if obj is None or (callable(obj) and not hasattr(obj, "columns")):
        return False
    try:
        nw.from_native(obj)
    except TypeError:
        return False
    return True


def _duplicate_keys(frame: Any, keys: Sequence[str], limit: int = 3) -> list[tuple[Any, ...]]:
    """Up to ``limit`` non-null key combinations that appear more than once, with their counts."""
    not_null = [~nw.col(k).is_null() for k in keys]
    predicate = not_null[0]
    for extra in not_null[1:]:
        predicate = predicate & extra
    dup = (
        frame.filter(predicate)
        .group_by(*keys)
        .agg(nw.len().alias("__rows__"))
        .filter(nw.col("__rows__") > 1)
        .sort(list(keys))
        .head(limit)
    )
    if isinstance(dup, nw.LazyFrame):
        dup = dup.collect()
    return [tuple(row) for row in dup.rows()]
