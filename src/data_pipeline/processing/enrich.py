"""DataEnricher: derived columns, date parts, buckets and lookups against reference data."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

import narwhals as nw
from pydantic import Field, field_validator, model_validator

from data_pipeline.core.component import Operation
from data_pipeline.core.config import ConfigModel
from data_pipeline.core.engines import engine_of, match_engine, pandas_nullable
from data_pipeline.core.errors import ConfigError, UnsupportedOperationError
from data_pipeline.core.expr import Expression, assign, parse_assignment
from data_pipeline.core.frames import column_names, require_columns, to_polars
from data_pipeline.core.secrets import DATA_KEYS
from data_pipeline.processing._rest import RestFetcher, RestLookup
from data_pipeline.processing.base import DataProcessor
from data_pipeline.processing.join import JoinValidationError, _duplicate_keys

__all__ = ["DATE_PARTS", "Bucket", "DataEnricher", "DataEnricherConfig", "Lookup"]

#: Date parts ``date_parts`` can extract (``weekday``: Monday = 1 ... Sunday = 7).
DATE_PARTS: tuple[str, ...] = (
    "year",
    "quarter",
    "month",
    "day",
    "weekday",
    "day_of_year",
    "hour",
    "minute",
    "second",
    "date",
)


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class Bucket(ConfigModel):
    """``{"column": "age", "breaks": [18, 65], "labels": ["minor", "adult", "senior"]}``.

    Intervals are ``[low, high)``: ``breaks`` b1 < b2 < ... give ``len(breaks) + 1`` buckets
    (below b1, [b1, b2), ..., from the last break up). Default labels: ``"< 18"``,
    ``"18 - 65"``, ``">= 65"``. The output column is ``as`` (default ``<column>_bucket``).
    """

    column: str
    """The numeric column to bucket; a null value gets a null bucket."""
    breaks: list[float] = Field(min_length=1)
    """The bucket boundaries, strictly increasing (at least one): n breaks make n + 1 buckets,
    each including its lower boundary."""
    labels: list[str] | None = None
    """The bucket names, one per bucket (``len(breaks) + 1``), lowest first. None:
    ``"< b1"``, ``"b1 - b2"``, ..., ``">= bn"``."""
    as_: str | None = Field(default=None, alias="as")
    """The name of the output column. None: ``<column>_bucket``."""

    @model_validator(mode="after")
    def _check(self) -> Bucket:
        if any(b >= a for b, a in itertools.pairwise(self.breaks)):
            raise ValueError(f"breaks must be strictly increasing, got {self.breaks}")
        if self.labels is not None and len(self.labels) != len(self.breaks) + 1:
            raise ValueError(
                f"{len(self.breaks)} breaks make {len(self.breaks) + 1} buckets, "
                f"so give {len(self.breaks) + 1} labels (got {len(self.labels)})"
            )
        return self

    @property
    def output(self) -> str:
        return self.as_ or f"{self.column}_bucket"


class Lookup(ConfigModel):
    """A lookup: left-join the named reference frame and fill misses with ``defaults``.

    ``{"reference": "products", "on": "product_id", "columns": ["category"],
    "defaults": {"category": "unknown"}}``; or ``left_on``/``right_on`` when the key names differ.
    The reference must have unique keys (a lookup never multiplies rows).
    """

    reference: str
    """The name of the reference frame, given as ``references={name: frame}`` or with
    ``set_reference(name, frame)``; a name with no frame is a ConfigError at run time."""
    on: list[str] | None = None
    """Key columns (a name or a list) with the same names in the data and the reference. Give
    either ``on`` or ``left_on`` + ``right_on``."""
    left_on: list[str] | None = None
    """The data's key columns when the names differ, paired by position with ``right_on``."""
    right_on: list[str] | None = None
    """The reference's key columns, paired with ``left_on``; they are not added to the data."""
    columns: list[str] | None = None
    """The reference columns to add (a name or a list). None: every reference column but the
    keys. A column the data has already is a ConfigError."""
    defaults: Annotated[dict[str, Any], DATA_KEYS] = Field(default_factory=dict)
    """Values by added column for the rows whose key found no match (a matched null stays
    null); added columns without a default are null for those rows."""

    _lists = field_validator("on", "left_on", "right_on", "columns", mode="before")(_as_list)

    @model_validator(mode="after")
    def _keys(self) -> Lookup:
        if self.on is None and not (self.left_on and self.right_on):
            raise ValueError("a lookup needs 'on', or 'left_on' and 'right_on'")
        if self.on is not None and (self.left_on or self.right_on):
            raise ValueError("give either 'on' or 'left_on' + 'right_on', not both")
        if self.left_on and self.right_on and len(self.left_on) != len(self.right_on):
            raise ValueError("'left_on' and 'right_on' must name as many columns each")
        return self

    @property
    def left_keys(self) -> list[str]:
        return list(self.on or self.left_on or [])

    @property
    def right_keys(self) -> list[str]:
        return list(self.on or self.right_on or [])


class DataEnricherConfig(ConfigModel):
    """Config of :class:`DataEnricher` (see its docstring)."""

    derived: Annotated[dict[str, str] | list[str], DATA_KEYS] = Field(default_factory=dict)
    """New columns from expressions, made first and in order (each may use the ones before):
    ``{"revenue": "quantity * price"}`` or ``["revenue = quantity * price"]``. An existing
    column of that name is replaced."""
    date_parts: Annotated[dict[str, list[str]], DATA_KEYS] = Field(default_factory=dict)
    """Parts to extract by date or datetime column (a part or a list), each into
    ``<column>_<part>``: ``year``, ``quarter``, ``month``, ``day``, ``weekday`` (Monday 1 to
    Sunday 7), ``day_of_year``, ``hour``, ``minute``, ``second``, ``date`` (not on pandas).
    Another part is a ConfigError when the enricher is built."""
    buckets: list[Bucket] = Field(default_factory=list)
    """Numeric columns cut into labelled intervals (keys below), after the date parts."""
    lookups: list[Lookup] = Field(default_factory=list)
    """Left joins against reference frames on unique keys (keys below), after the buckets; a
    lookup never adds rows, and a reference with duplicate keys is a JoinValidationError."""
    rest_lookups: list[RestLookup] = Field(default_factory=list)
    """Fields fetched from a REST endpoint per distinct key (keys below), last; misses (404)
    and failures get the lookup's ``defaults`` and are counted in the metadata."""

    @field_validator("date_parts", mode="before")
    @classmethod
    def _parts_lists(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: [v] if isinstance(v, str) else v for k, v in value.items()}
        return value


class DataEnricher(DataProcessor):
    """Add columns: derived expressions, date parts, buckets, and lookups in reference frames.

    The steps run in this order: ``derived`` (each may use the ones before it), ``date_parts``,
    ``buckets``, ``lookups``. Expressions are the one expression language shared with
    CustomTransformer and DataFilter (``quantity * price``, ``round(price * 1.2, 2)``,
    ``coalesce(discount, 0)``, ``price > 100``; docs/transformation.md, "Expressions"), parsed
    safely by sqlglot (never ``eval``), with the same answer on every engine. ``date_parts`` makes ``<column>_<part>`` for the parts
    ``year quarter month day weekday day_of_year hour minute second date``. ``lookups``
    left-join a reference frame (given as ``references={"name": frame}`` or with
    :meth:`set_reference`) on unique keys and fill the rows that found no match with
    ``defaults``; the number of misses is in the metadata for eager frames. ``rest_lookups``
    fetch fields from a REST endpoint once per distinct key (``url`` with ``{column}``
    placeholders): concurrent, rate-limited, retried, cached; misses (404) and failures are
    counted in the metadata and get ``defaults``.

    Raises:
        ConfigError: the config is invalid: an expression that does not parse, an unknown date
            part, bucket breaks that do not increase or labels of the wrong count, a REST lookup
            URL whose placeholders are not its ``on`` columns; at run time a lookup's reference
            that was never given, or a lookup column the data has already.
        ColumnNotFoundError: a column an expression, date part, bucket or lookup key names is not
            in the data or the reference.
        JoinValidationError: a lookup's reference has duplicate keys.
        UnsupportedOperationError: the date part ``date`` on a pandas frame.
        ProcessingError: the engine failed otherwise (the message names the processor). A REST
            lookup's failed requests raise nothing: they are counted and get the defaults.

    Example:
        >>> import datetime as dt
        >>> import polars as pl
        >>> enricher = DataEnricher(name="enrich", config={
        ...     "derived": ["revenue = quantity * price"],
        ...     "date_parts": {"date": ["year", "month"]},
        ...     "buckets": [{"column": "price", "breaks": [10], "labels": ["cheap", "dear"],
        ...                  "as": "price_band"}],
        ...     "lookups": [{"reference": "products", "on": "product_id",
        ...                  "columns": ["category"], "defaults": {"category": "unknown"}}],
        ... }, references={"products": pl.DataFrame({"product_id": [1], "category": ["toys"]})})
        >>> df = pl.DataFrame({"date": [dt.date(2024, 5, 1)] * 2, "product_id": [1, 2],
        ...                    "quantity": [2, 3], "price": [5.0, 20.0]})
        >>> enricher.process(df).row(1)
        (datetime.date(2024, 5, 1), 2, 3, 20.0, 60.0, 2024, 5, 'dear', 'unknown')
    """

    config_model = DataEnricherConfig
    settings: DataEnricherConfig

    def __init__(
        self, name: str, config: Any = None, *, references: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(name, config)
        s = self.settings
        raw = s.derived
        pairs = (
            [parse_assignment(t, component=self.label) for t in raw]
            if isinstance(raw, list)
            else list(raw.items())
        )
        self.derived: list[tuple[str, Expression]] = [
            (out, Expression(text, what=f"expression for {out!r}", component=self.label))
            for out, text in pairs
        ]
        for column, parts in s.date_parts.items():
            bad = [p for p in parts if p not in DATE_PARTS]
            if bad:
                raise ConfigError(
                    f"config.date_parts.{column}: unknown date part(s) {', '.join(map(repr, bad))}",
                    component=self.label,
                    hint=f"allowed date parts: {', '.join(DATE_PARTS)}",
                )
        self.references: dict[str, Any] = dict(references or {})
        self.fetchers: list[RestFetcher] = []
        for index, spec in enumerate(s.rest_lookups):
            import string

            names = {f for _, f, _, _ in string.Formatter().parse(spec.url) if f}
            unknown = sorted(names - set(spec.on))
            if unknown or not names:
                raise ConfigError(
                    f"config.rest_lookups[{index}].url: placeholders {sorted(names)} must be "
                    f"key columns listed in 'on' ({spec.on})",
                    component=self.label,
                    hint='write e.g. "url": "https://api.example.com/products/{product_id}", '
                    '"on": "product_id"',
                )
            self.fetchers.append(RestFetcher(spec))

    def set_reference(self, name: str, frame: Any) -> DataEnricher:
        """Register the reference frame ``name`` used by lookups."""
        self.references[name] = frame
        return self

    # -- schema ---------------------------------------------------------------------------

    def required_columns(self, columns: Sequence[str]) -> list[str]:
        needed: list[str] = []
        made: set[str] = set()
        for out, expression in self.derived:
            needed += [c for c in expression.columns() if c not in made and c not in needed]
            made.add(out)
        for column in [*self.settings.date_parts, *(b.column for b in self.settings.buckets)]:
            if column not in made and column not in needed:
                needed.append(column)
        for lookup in self.settings.lookups:
            needed += [k for k in lookup.left_keys if k not in made and k not in needed]
        for spec in self.settings.rest_lookups:
            needed += [k for k in spec.on if k not in made and k not in needed]
        return needed

    def output_columns(self, columns: Sequence[str]) -> list[str]:
        out = list(columns)

        def add(name: str) -> None:
            if name not in out:
                out.append(name)

        for name, _ in self.derived:
            add(name)
        for column, parts in self.settings.date_parts.items():
            for part in parts:
                add(f"{column}_{part}")
        for bucket in self.settings.buckets:
            add(bucket.output)
        for lookup in self.settings.lookups:
            ref = self.references.get(lookup.reference)
            for c in lookup.columns or (
                [c for c in column_names(ref) if c not in lookup.right_keys]
                if ref is not None
                else []
            ):
                add(c)
        for spec in self.settings.rest_lookups:
            for c in spec.fields:
                add(c)
        return out

    # -- run ------------------------------------------------------------------------------

    def _apply_frame(self, frame: Any, op: Operation) -> Any:
        if self.derived:
            frame = assign(frame, self.derived)
        parts, numbers = [], []
        pandas = engine_of(frame) == "pandas"
        for column, names in self.settings.date_parts.items():
            for part in names:
                expr = self._date_part(frame, column, part)
                if part != "date":  # every number part is Int64 (Polars: Int8/16/32)
                    numbers.append(f"{column}_{part}")
                    expr = expr if pandas else expr.cast(nw.Int64())
                parts.append(expr.alias(f"{column}_{part}"))
        if parts:
            frame = frame.with_columns(*parts)
        if pandas and numbers:  # float64 where a datetime was NaT: the nullable Int64 there
            import numpy as np

            frame = pandas_nullable(frame, dict.fromkeys(numbers, np.dtype("int64")))
        if self.settings.buckets:
            frame = frame.with_columns(*[_bucket_expr(b) for b in self.settings.buckets])
        misses: dict[str, int] = {}
        for index, lookup in enumerate(self.settings.lookups):
            frame, missed = self._lookup(frame, index, lookup)
            if missed is not None:
                misses[lookup.reference] = missed
        if misses:
            op.details["lookup_misses"] = misses
        rest_stats: dict[str, Any] = {}
        for index, fetcher in enumerate(self.fetchers):
            frame = self._rest_lookup(frame, index, fetcher)
            rest_stats[f"rest_lookups[{index}] {fetcher.label()}"] = dict(fetcher.stats)
        if rest_stats:
            op.details["rest_lookups"] = rest_stats
        return frame

    def _rest_lookup(self, frame: Any, index: int, fetcher: RestFetcher) -> Any:
        import polars as pl

        spec = fetcher.spec
        require_columns(frame, spec.on, component=self.label)
        not_null = [~nw.col(k).is_null() for k in spec.on]
        predicate = not_null[0]
        for extra in not_null[1:]:
            predicate = predicate & extra
        distinct = frame.select(*spec.on).filter(predicate).unique()
        if isinstance(distinct, nw.LazyFrame):
            distinct = distinct.collect()
        keys_frame = to_polars(distinct.to_native())
        keys = [tuple(row) for row in keys_frame.rows()]
        found_keys, found_rows = fetcher.fetch(keys)
        ref = pl.DataFrame(found_keys, schema=keys_frame.schema, orient="row")
        values = {out: [row.get(out) for row in found_rows] for out in spec.fields}
        ref = ref.with_columns(
            *[pl.Series(out, vals, strict=False) for out, vals in values.items()]
        )
        lookup = Lookup(
            reference=f"rest_lookups[{index}]",
            on=spec.on,
            columns=list(spec.fields),
            defaults=spec.defaults,
        )
        joined, _ = self._lookup(frame, 1000 + index, lookup, reference=ref)
        return joined

    def _date_part(self, frame: Any, column: str, part: str) -> Any:
        col = nw.col(column).dt
        if part == "date":
            if engine_of(frame) == "pandas":
                raise UnsupportedOperationError(
                    f"the engine 'pandas' cannot extract the date part 'date' of {column!r}",
                    component=self.label,
                    hint="use the parts year/month/day, or pass a Polars, PyArrow or DuckDB frame",
                )
            return col.date()
        simple = {
            "year": col.year,
            "month": col.month,
            "day": col.day,
            "weekday": col.weekday,
            "day_of_year": col.ordinal_day,
            "hour": col.hour,
            "minute": col.minute,
            "second": col.second,
        }
        if part == "quarter":
            return (col.month() - 1) // 3 + 1
        if part == "weekday" and engine_of(frame) == "pyspark":
            return (col.weekday() + 6) % 7 + 1  # Narwhals gives Sunday 0 on Spark: back to 7
        return simple[part]()

    def _lookup(
        self, frame: Any, index: int, lookup: Lookup, reference: Any = None
    ) -> tuple[Any, int | None]:
        if reference is None and lookup.reference not in self.references:
            known = ", ".join(map(repr, self.references)) or "none"
            raise ConfigError(
                f"config.lookups[{index}]: no reference frame named {lookup.reference!r}",
                component=self.label,
                hint=f"pass references={{{lookup.reference!r}: frame}} or call "
                f"set_reference({lookup.reference!r}, frame); references set: {known}",
            )
        ref = match_engine(
            frame,
            self.references[lookup.reference] if reference is None else reference,
            component=self.label,
            what=f"reference {lookup.reference!r}",
        )
        require_columns(
            ref,
            lookup.right_keys,
            component=self.label,
            what=f"column of reference {lookup.reference!r}",
        )
        ref_cols = column_names(ref)
        wanted = lookup.columns or [c for c in ref_cols if c not in lookup.right_keys]
        require_columns(
            ref, wanted, component=self.label, what=f"column of reference {lookup.reference!r}"
        )
        dups = _duplicate_keys(ref, lookup.right_keys)
        if dups:
            raise JoinValidationError(
                f"the reference {lookup.reference!r} has duplicate keys "
                f"{lookup.right_keys} (e.g. {dups[0][:-1]!r}, {dups[0][-1]} rows); a lookup "
                "needs unique keys",
                component=self.label,
                hint="deduplicate the reference, or use a DataJoiner for a one-to-many join",
            )
        marker = f"__lookup_{index}_matched__"
        left_cols = column_names(frame)
        clash = [c for c in wanted if c in left_cols]
        if clash:
            raise ConfigError(
                f"config.lookups[{index}]: the data already has column(s) "
                f"{', '.join(map(repr, clash))} that the lookup would add",
                component=self.label,
                hint="list only new columns in 'columns', or rename first",
            )
        small = ref.select(*lookup.right_keys, *wanted).with_columns(nw.lit(True).alias(marker))
        if lookup.on is not None:
            joined = frame.join(small, how="left", on=lookup.left_keys)
        else:
            joined = frame.join(
                small, how="left", left_on=lookup.left_keys, right_on=lookup.right_keys
            )
            extra = [
                c for c in lookup.right_keys if c in column_names(joined) and c not in left_cols
            ]
            if extra:
                joined = joined.drop(extra)
        if engine_of(joined) == "pandas":  # unmatched rows: numpy int/bool stay int/bool
            templates = {c: ref.to_native()[c].dtype for c in wanted}
            joined = pandas_nullable(joined, templates)
        missed_expr = nw.col(marker).is_null()
        fills = [
            nw.when(missed_expr).then(nw.lit(lookup.defaults[c])).otherwise(nw.col(c)).alias(c)
            for c in wanted
            if c in lookup.defaults
        ]
        missed: int | None = None
        if isinstance(joined, nw.DataFrame):
            missed = int(joined.select(missed_expr.sum()).item())
        if fills:
            joined = joined.with_columns(*fills)
        return joined.drop(marker), missed


def _bucket_expr(bucket: Bucket) -> Any:
    breaks = bucket.breaks
    labels = bucket.labels or _default_labels(breaks)
    col = nw.col(bucket.column)
    chain: Any = nw.when(col < breaks[0]).then(nw.lit(labels[0]))
    for i in range(1, len(breaks)):
        chain = chain.when(col < breaks[i]).then(nw.lit(labels[i]))
    chain = chain.otherwise(nw.lit(labels[-1]))
    return nw.when(~col.is_null()).then(chain).alias(bucket.output)


def _default_labels(breaks: list[float]) -> list[str]:
    def fmt(x: float) -> str:
        return str(int(x)) if float(x).is_integer() else str(x)

    labels = [f"< {fmt(breaks[0])}"]
    labels += [f"{fmt(a)} - {fmt(b)}" for a, b in itertools.pairwise(breaks)]
    labels.append(f">= {fmt(breaks[-1])}")
    return labels
