"""ColumnRenamer and ColumnSelector: schema-only transformers (no data is computed)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Annotated, Any, Literal

import narwhals as nw
from pydantic import Field, field_validator, model_validator

from data_pipeline.core.component import Operation
from data_pipeline.core.config import ConfigModel
from data_pipeline.core.errors import ColumnNotFoundError, SchemaError
from data_pipeline.core.secrets import DATA_KEYS
from data_pipeline.transformation._common import schema_of
from data_pipeline.transformation.base import DataFrameTransformer

__all__ = ["ColumnRenamer", "ColumnSelector", "snake_case"]

NameFunction = Literal["lower", "upper", "snake_case", "strip"]
DtypeName = Literal[
    "numeric",
    "integer",
    "float",
    "string",
    "boolean",
    "temporal",
    "date",
    "datetime",
    "categorical",
]


def snake_case(name: str) -> str:
    """``"Product ID"`` -> ``"product_id"``, ``"unitPrice"`` -> ``"unit_price"``."""
    text = re.sub(r"[^\w]+", "_", name.strip())
    text = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", text)
    text = re.sub(r"(?<=[A-Z])(?=[A-Z][a-z])", "_", text)
    return re.sub(r"_+", "_", text).strip("_").lower()


_FUNCTIONS = {
    "lower": str.lower,
    "upper": str.upper,
    "snake_case": snake_case,
    "strip": str.strip,
}


class RenamerConfig(ConfigModel):
    """Config of :class:`ColumnRenamer`."""

    mapping: Annotated[dict[str, str], DATA_KEYS] = Field(default_factory=dict)
    """Old name -> new name for the columns to rename; it wins over ``function`` for the
    columns it names. A name missing from the data is an error unless ``strict`` is false."""
    function: NameFunction | None = None
    """A rule applied to every column ``mapping`` does not name: ``lower``, ``upper``,
    ``strip`` (surrounding blanks) or ``snake_case`` (``"Unit Price"``, ``"unitPrice"`` ->
    ``unit_price``). A name it empties, or two columns ending with one name, are errors."""
    strict: bool = True
    """``true``: a ``mapping`` name missing from the data fails naming it; ``false``: it is
    skipped (for data whose columns vary)."""

    @model_validator(mode="after")
    def _something(self) -> RenamerConfig:
        if not self.mapping and self.function is None:
            raise ValueError(
                "give a 'mapping' ({old: new}) and/or a 'function' (lower, upper, snake_case, strip)"
            )
        empty = [k for k, v in self.mapping.items() if not v]
        if empty:
            raise ValueError(f"mapping: new name for {empty[0]!r} is empty")
        return self


class ColumnRenamer(DataFrameTransformer):
    """Rename columns with a ``mapping`` and/or a ``function`` applied to every other column.

    ``mapping`` wins over ``function`` for the columns it names. A mapped column that is missing
    is an error unless ``strict: false``; two columns ending with the same name are an error.

    Raises:
        ConfigError: neither ``mapping`` nor ``function``, or an empty new name.
        ColumnNotFoundError: a ``mapping`` name is not in the data (``strict: true``).
        SchemaError: two columns would end with the same name, or ``function`` turns a name into an
            empty one.

    Example:
        >>> import polars as pl
        >>> renamer = ColumnRenamer(name="tidy_names", config={
        ...     "mapping": {"Qty": "quantity"}, "function": "snake_case",
        ... })
        >>> renamer.transform(pl.DataFrame({"Qty": [1], "Unit Price": [2.0]})).columns
        ['quantity', 'unit_price']
    """

    config_model = RenamerConfig
    settings: RenamerConfig

    def required_columns(self, columns: Sequence[str]) -> list[str]:
        return list(self.settings.mapping) if self.settings.strict else []

    def output_columns(self, columns: Sequence[str]) -> list[str]:
        mapping = self._mapping(columns)
        return [mapping.get(c, c) for c in columns]

    def _mapping(self, columns: Sequence[str]) -> dict[str, str]:
        s = self.settings
        mapping = {old: new for old, new in s.mapping.items() if old in columns}
        if s.function is not None:
            func = _FUNCTIONS[s.function]
            for column in columns:
                if column not in mapping:
                    new = func(column)
                    if not new:
                        raise SchemaError(
                            f"function {s.function!r} turns column {column!r} into an empty name",
                            component=self.label,
                            hint="rename this column explicitly in 'mapping'",
                        )
                    mapping[column] = new
        targets: dict[str, list[str]] = {}
        for column in columns:
            targets.setdefault(mapping.get(column, column), []).append(column)
        clashes = {new: olds for new, olds in targets.items() if len(olds) > 1}
        if clashes:
            text = "; ".join(
                f"{', '.join(map(repr, olds))} -> {new!r}" for new, olds in clashes.items()
            )
            raise SchemaError(
                f"renaming would give several columns the same name: {text}",
                component=self.label,
                hint="map one of them to another name in 'mapping'",
            )
        return {old: new for old, new in mapping.items() if old != new}

    def _apply_frame(self, frame: Any, op: Operation) -> Any:
        mapping = self._mapping(list(schema_of(frame)))
        op.details["renamed"] = dict(mapping)
        return frame.rename(mapping) if mapping else frame


class SelectorConfig(ConfigModel):
    """Config of :class:`ColumnSelector`."""

    include: list[str] | None = Field(default=None, alias="columns")
    """Columns to keep, in this order (one name or a list; ``include`` is accepted too). With
    ``include_regex`` / ``include_dtypes`` their matches follow in the data's order. None of
    the three: every column is kept (minus the exclusions)."""
    exclude: list[str] = Field(default_factory=list)
    """Columns to drop from the selection (one name or a list)."""
    include_regex: str | None = None
    """Keep columns whose name matches this Python regular expression (``re.search``: anchor
    with ``^``/``$`` for whole names), after the ``include`` names."""
    exclude_regex: str | None = None
    """Drop columns whose name matches this regular expression (``re.search``)."""
    include_dtypes: list[DtypeName] = Field(default_factory=list)
    """Keep columns of these kinds, after the ``include`` and ``include_regex`` ones:
    ``numeric``, ``integer``, ``float``, ``string``, ``boolean``, ``temporal``, ``date``,
    ``datetime``, ``categorical`` (also enums)."""
    exclude_dtypes: list[DtypeName] = Field(default_factory=list)
    """Drop columns of these kinds (same names as ``include_dtypes``)."""
    strict: bool = True
    """``true``: an ``include`` or ``exclude`` name missing from the data fails naming it;
    ``false``: it is skipped. A selection that keeps no column fails either way."""

    @field_validator("include_regex", "exclude_regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None
        return value

    @model_validator(mode="before")
    @classmethod
    def _lists(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in ("include", "columns", "exclude", "include_dtypes", "exclude_dtypes"):
                if isinstance(data.get(key), str):
                    data = {**data, key: [data[key]]}
        return data


class ColumnSelector(DataFrameTransformer):
    """Keep columns by name, regular expression or dtype, in the order given.

    The result is: the ``include`` names in their given order, then the columns matching
    ``include_regex`` and then ``include_dtypes`` in the frame's order (all columns when none of
    the three is set), minus ``exclude``, ``exclude_regex`` and ``exclude_dtypes``. Dtype names:
    numeric, integer, float, string, boolean, temporal, date, datetime, categorical. ``columns``
    is accepted for ``include``. Names that do not exist are an error unless ``strict: false``.

    Raises:
        ConfigError: an invalid regular expression or dtype name.
        ColumnNotFoundError: an ``include`` or ``exclude`` name is not in the data (``strict:
            true``), or the selection keeps no column.

    Example:
        >>> import polars as pl
        >>> selector = ColumnSelector(name="keep", config={
        ...     "include": ["b", "a"], "include_regex": "^price_",
        ... })
        >>> selector.transform(pl.DataFrame({"a": [1], "b": [2], "price_eur": [3.0], "c": [4]})).columns
        ['b', 'a', 'price_eur']
    """

    config_model = SelectorConfig
    settings: SelectorConfig

    def required_columns(self, columns: Sequence[str]) -> list[str]:
        s = self.settings
        return [*(s.include or []), *s.exclude] if s.strict else []

    def output_columns(self, columns: Sequence[str]) -> list[str]:
        s = self.settings
        if s.include_dtypes or s.exclude_dtypes:
            return list(columns)  # dtypes are not known from names alone; checked at run time
        return self._select({c: None for c in columns})

    def _select(self, schema: dict[str, Any]) -> list[str]:
        s = self.settings
        names = list(schema)
        chosen: list[str] = []
        if s.include is None and s.include_regex is None and not s.include_dtypes:
            chosen = list(names)
        else:
            chosen = [c for c in (s.include or []) if c in schema]
            if s.include_regex is not None:
                pattern = re.compile(s.include_regex)
                chosen += [c for c in names if pattern.search(c) and c not in chosen]
            if s.include_dtypes:
                chosen += [
                    c
                    for c in names
                    if c not in chosen and _dtype_matches(schema[c], s.include_dtypes)
                ]
        excluded = set(s.exclude)
        if s.exclude_regex is not None:
            pattern = re.compile(s.exclude_regex)
            excluded |= {c for c in names if pattern.search(c)}
        if s.exclude_dtypes:
            excluded |= {c for c in names if _dtype_matches(schema[c], s.exclude_dtypes)}
        return [c for c in dict.fromkeys(chosen) if c not in excluded]

    def _apply_frame(self, frame: Any, op: Operation) -> Any:
        schema = schema_of(frame)
        selected = self._select(schema)
        if not selected:
            raise ColumnNotFoundError(
                "the selection keeps no column",
                component=self.label,
                hint=f"the data has columns: {', '.join(map(repr, schema))}",
            )
        op.details["selected"] = list(selected)
        return frame.select(*selected)


def _dtype_matches(dtype: Any, kinds: Sequence[str]) -> bool:
    checks = {
        "numeric": lambda: dtype.is_numeric(),
        "integer": lambda: dtype.is_integer(),
        "float": lambda: dtype.is_float(),
        "string": lambda: dtype == nw.String,
        "boolean": lambda: dtype == nw.Boolean,
        "temporal": lambda: dtype.is_temporal(),
        "date": lambda: dtype == nw.Date,
        "datetime": lambda: dtype == nw.Datetime,
        "categorical": lambda: dtype == nw.Categorical or dtype == nw.Enum,
    }
    return any(bool(checks[kind]()) for kind in kinds)
