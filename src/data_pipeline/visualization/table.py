"""Table: an HTML table we render ourselves (every cell escaped), sortable, with a row limit."""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal

import narwhals as nw
from pydantic import Field, field_validator

from data_pipeline.core.component import Operation
from data_pipeline.core.config import ConfigModel
from data_pipeline.core.errors import ConfigError
from data_pipeline.core.frames import column_names, row_count, to_polars
from data_pipeline.core.secrets import DATA_KEYS
from data_pipeline.visualization.base import Visualization, VisualizationConfig, to_records

__all__ = ["Table", "TableConfig"]


def _check_spec(spec: str) -> str:
    try:
        format(1234.5678, spec)
    except (ValueError, TypeError) as exc:
        raise ValueError(
            f"{spec!r} is not a Python format spec such as ',.2f' or '.1%' ({exc})"
        ) from None
    return spec


#: a strftime directive (``%Y``, ``%-d``, ``%#H``): what makes a format a date/time pattern
_STRFTIME = re.compile(r"%[-#_^0]?[A-Za-z]")


def _format_kind(spec: str) -> Literal["number", "date"]:
    """``number`` for a format spec Python applies to a float, ``date`` for a strftime pattern."""
    try:
        format(1234.5678, spec)
    except (ValueError, TypeError):
        if _STRFTIME.search(spec.replace("%%", "")):  # "%%" is a literal percent sign
            return "date"
        raise ValueError(
            f"{spec!r} is neither a Python number format spec such as ',.2f' or '.1%' nor a "
            "strftime pattern such as '%Y-%m-%d'"
        ) from None
    return "number"


class TableConfig(VisualizationConfig):
    """Table keys: ``columns``, ``titles``, ``formats``, ``max_rows``, ``sort_by``, ``descending``."""

    columns: list[str] | None = None
    """The columns shown, in this order. None: every column of the data."""
    titles: Annotated[dict[str, str], DATA_KEYS] = Field(default_factory=dict)
    """Header text by column name (``{"revenue": "Revenue ($)"}``); other columns are headed
    by their name. Every column named must be in the data."""
    formats: Annotated[dict[str, str], DATA_KEYS] = Field(default_factory=dict)
    """A format by column: a Python number format spec for a numeric column
    (``{"revenue": ",.2f", "share": ".1%"}``, replacing ``float_format`` / ``int_format``), a
    strftime pattern for a Date, Datetime or Time column (``{"day": "%d %b %Y"}``). When the
    table is built each entry must be one or the other; when it renders, its kind must match
    the column's type (a number spec on a date, a pattern on a number, or any format on another
    type is a ConfigError naming the column). Every column named must be in the data."""
    max_rows: int = Field(default=100, ge=1, le=100_000)
    """The most rows shown (1 to 100,000), the first ones after ``sort_by``; the caption says
    how many were left out."""
    sort_by: str | None = None
    """The column the rows are sorted on (nulls last) before ``max_rows`` cuts them, on the
    input's engine; it need not be one of ``columns``. None: the input's order. The reader can
    still re-sort the shown rows by clicking a header."""
    descending: bool = False
    """Sort ``sort_by`` from the largest value down."""
    float_format: str = ",.2f"
    """The Python format spec of float cells without an entry in ``formats`` (``,.2f``:
    thousands separators, two decimals). NaN and null cells are empty."""
    int_format: str = ","
    """The Python format spec of integer cells without an entry in ``formats`` (``,``:
    thousands separators). Booleans show as ``true`` / ``false``."""

    @field_validator("formats")
    @classmethod
    def _check_formats(cls, value: dict[str, str]) -> dict[str, str]:
        for column, spec in value.items():
            try:
                _format_kind(spec)
            except ValueError as exc:
                raise ValueError(f"formats.{column}: {exc}") from None
        return value

    @field_validator("float_format", "int_format")
    @classmethod
    def _check_default(cls, value: str) -> str:
        return _check_spec(value)


class Table(Visualization):
    """Table visualization: columns, number and date formats, sortable headers, a row limit.

    Sorting (``sort_by``) and the row limit run on the input's engine before collecting; the
    caption says how many rows were left out. In the HTML page every cell is escaped and a
    click on a header sorts the rows.

    Raises:
        ConfigError: the config is invalid when the table is built (an entry of ``formats``
            that is neither a number format spec nor a strftime pattern, ``max_rows`` outside
            1..100,000, ...), or, when it renders, an entry of ``formats`` does not fit its
            column's type (a number spec on a date column, a strftime pattern on a number
            column, a format on a text column).
        ChartColumnNotFoundError: a column named in ``columns``, ``sort_by``, ``formats`` or
            ``titles`` is not in the data.
        VisualizationError: rendering failed otherwise (the message names the table).

    Example:
        >>> table = Table(name="top_products", config={
        ...     "columns": ["product", "revenue"], "sort_by": "revenue", "descending": True,
        ...     "formats": {"revenue": ",.2f"}, "max_rows": 20,
        ... })
        >>> table.settings.max_rows
        20
    """

    config_model: ClassVar[type[ConfigModel]] = TableConfig
    kind: ClassVar[str] = "table"
    settings: TableConfig

    def fields(self) -> list[str]:
        return list(self.settings.columns or [])

    def _render(self, frame: Any, op: Operation) -> dict[str, Any]:
        s = self.settings
        names = column_names(frame)
        columns = list(s.columns or names)
        self._require(frame, [*columns, s.sort_by, *s.formats, *s.titles])
        total = row_count(frame)
        if total is None:
            total = int(to_polars(frame.select(nw.len())).item())
        selected = frame.select([nw.col(c) for c in columns])
        if s.sort_by is not None:
            if s.sort_by not in columns:
                selected = frame.select([nw.col(c) for c in dict.fromkeys([*columns, s.sort_by])])
            selected = selected.sort(s.sort_by, descending=s.descending, nulls_last=True)
        df = to_polars(selected.head(s.max_rows)).select(columns)
        self._check_format_kinds(df.schema)
        records = to_records(df, for_vega=False)  # HTML, not Vega: values as they are
        numeric = {c: df.schema[c].is_numeric() for c in columns}
        rows = [
            [self._format(c, r[c], df.schema[c]) for c in columns] for r in df.iter_rows(named=True)
        ]
        shown = df.height
        caption = None
        if total > shown:
            caption = f"Showing {shown:,} of {total:,} rows ({total - shown:,} left out)."
        op.rows_out = shown
        op.details["rows_left_out"] = total - shown
        return {
            "type": "table",
            "name": self.name,
            "title": s.title,
            "description": s.description,
            "columns": [
                {"name": c, "title": s.titles.get(c, c), "numeric": numeric[c]} for c in columns
            ],
            "rows": rows,
            "records": records,
            "total_rows": total,
            "shown_rows": shown,
            "caption": caption,
        }

    def _check_format_kinds(self, schema: Any) -> None:
        """Each entry of ``formats`` must suit its column's type (number spec / strftime)."""
        import polars as pl

        for column, spec in self.settings.formats.items():
            dtype = schema[column]
            wanted: str | None = None
            if dtype.is_numeric():
                wanted = "number"
            elif dtype in (pl.Date, pl.Time) or isinstance(dtype, pl.Datetime):
                wanted = "date"
            if wanted is None:
                raise ConfigError(
                    f"config.formats.{column}: {spec!r} cannot format column {column!r} of type "
                    f"{dtype}",
                    component=self.label,
                    hint="formats applies to numeric columns (a number spec such as ',.2f') and "
                    "to date, datetime and time columns (a strftime pattern such as '%Y-%m-%d'); "
                    f"drop the entry for {column!r}",
                )
            if _format_kind(spec) != wanted:
                what = "a numeric" if wanted == "number" else "a date/time"
                example = "',.2f' or '.1%'" if wanted == "number" else "'%Y-%m-%d' or '%d %b %Y'"
                kind = "number format spec" if wanted == "number" else "date strftime pattern"
                raise ConfigError(
                    f"config.formats.{column}: {spec!r} does not fit {what} column "
                    f"({column!r} is {dtype})",
                    component=self.label,
                    hint=f"give column {column!r} a {kind} such as {example}",
                )

    def _format(self, column: str, value: Any, dtype: Any) -> str:
        if value is None:
            return ""
        s = self.settings
        if isinstance(value, float) and value != value:  # NaN
            return ""
        spec = s.formats.get(column)
        try:
            if spec is not None and hasattr(value, "strftime"):
                return str(value.strftime(spec))
            if spec is not None and not isinstance(value, bool):
                return format(value, spec)  # a number (int, float, Decimal): checked at render
            if isinstance(value, bool):
                return str(value).lower()
            if isinstance(value, int):
                return format(value, s.int_format)
            if isinstance(value, float):
                return format(value, s.float_format)
        except (ValueError, TypeError):
            pass
        return str(value)
