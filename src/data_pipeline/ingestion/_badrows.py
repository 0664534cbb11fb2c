"""Malformed rows: find them, then drop them or route them to a reject file.

JSON Lines: a line that is not a JSON object is bad. CSV: a row is bad when it has a different
number of fields than the header, or when a value cannot be parsed as its column's type (inferred from the first ``infer_schema_length`` rows, or given by
``schema_overrides``). Lines are split natively; fields and casts are checked in polars. When the
file contains the quote character, physical lines are joined into records by quote parity, so a
quoted field spanning several lines stays one record (its line is the record's first line).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from data_pipeline.core.errors import ParseError
from data_pipeline.core.secrets import redact_url

if TYPE_CHECKING:
    import polars as pl

    from data_pipeline.ingestion.filesystem import FileSystemSource

__all__ = ["first_bad_row", "first_misshapen_row", "read_checked"]


def _split(source: FileSystemSource, file: str) -> tuple[list[bytes], list[bytes], int]:
    """(preamble lines incl. header, data lines, line number of the first data line)."""
    data = source._utf8(file)
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ParseError(
            f"file {file!r} is not valid UTF-8 at byte {exc.start} (line {line})",
            component=source.label,
            hint="set 'encoding' to the file's encoding (e.g. latin-1, cp1252)",
        ) from None
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    head = source.settings.skip_rows + (1 if source.settings.has_header else 0)
    return lines[:head], lines[head:], head + 1


def _check_file(source: FileSystemSource, file: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(good rows typed as the file's schema, bad rows: file, line, reason, raw)."""
    import polars as pl

    settings = source.settings
    options = source.csv_options()
    string_options = source.csv_options(strings=True)
    preamble, lines, first_line = _split(source, file)
    raw = pl.Series("raw", lines, dtype=pl.Binary).cast(pl.String, strict=False)
    frame = pl.DataFrame({"raw": raw}).with_row_index("line", offset=first_line)
    frame = frame.with_columns(pl.col("raw").str.strip_suffix("\r"))
    if settings.quote_char and frame["raw"].str.contains(settings.quote_char, literal=True).any():
        frame = _join_quoted_records(frame, settings.quote_char)
    # an empty line is no record (as for polars' reader); a line of blanks is a record with
    # one field, bad unless the file has one column, and counted like every bad row
    frame = frame.filter(pl.col("raw") != "")
    if settings.comment_prefix:
        frame = frame.filter(~pl.col("raw").str.starts_with(settings.comment_prefix))
    header = b"\n".join(preamble) + (b"\n" if preamble else b"")
    names = (
        pl.scan_csv(header + (frame["raw"][0].encode() if frame.height else b""), **string_options)
        .collect_schema()
        .names()
    )
    expected = len(names)
    delim = options["separator"]
    quote = settings.quote_char
    text = pl.col("raw")
    if quote:
        q = "\\" + quote if quote in ".^$*+?()[]{}|\\" else quote
        text = text.str.replace_all(f"{q}(?:[^{q}]|{q}{q})*{q}", "")
    frame = frame.with_columns(fields=text.str.count_matches(delim, literal=True) + 1)
    frame = frame.with_columns(
        reason=pl.when(pl.col("fields") != expected).then(
            pl.format("expected {} fields, found {}", pl.lit(expected), pl.col("fields"))
        )
    )
    shaped = frame.filter(pl.col("reason").is_null())
    body = header + "\n".join(shaped["raw"].to_list()).encode()
    strings = (
        pl.read_csv(body, **string_options)
        if shaped.height
        else pl.DataFrame({n: [] for n in names}, schema=dict.fromkeys(names, pl.String))
    )
    try:
        schema = pl.scan_csv(body, **options).collect_schema() if shaped.height else strings.schema
    except Exception:
        schema = strings.schema
    typed: dict[str, pl.Series] = {}
    reasons = pl.Series("reason", [None] * strings.height, dtype=pl.String)
    for name, dtype in schema.items():
        col = strings[name]
        if dtype == pl.String:
            typed[name] = col
            continue
        converted = _convert(col, dtype)
        failed = col.is_not_null() & converted.is_null()
        if failed.any():
            msg = pl.format(
                "column '{}': cannot parse '{}' as {}", pl.lit(name), col, pl.lit(str(dtype))
            )
            reasons = (
                pl.select(pl.when(reasons.is_null() & failed).then(msg).otherwise(reasons))
                .to_series()
                .alias("reason")
            )
        typed[name] = converted
    good = pl.DataFrame(typed).filter(reasons.is_null())
    type_bad = (
        shaped.select("line", "raw").with_columns(reasons).filter(pl.col("reason").is_not_null())
    )
    bad = pl.concat(
        [
            frame.filter(pl.col("reason").is_not_null()).select("line", "raw", "reason"),
            type_bad.select("line", "raw", "reason"),
        ]
    ).sort("line")
    bad = bad.select(pl.lit(file).alias("file"), pl.col("line").cast(pl.Int64), "reason", "raw")
    return good, bad


def _join_quoted_records(frame: pl.DataFrame, quote: str) -> pl.DataFrame:
    """Join physical lines into records where a quoted field spans several lines.

    A line whose cumulative count of quote characters is odd ends inside a quoted field, so the
    next line continues the same record (an escaped ``""`` counts twice and keeps the parity).
    Vectorized in polars; ``line`` is the record's first line.
    """
    import polars as pl

    quotes = pl.col("raw").str.count_matches(quote, literal=True)
    open_after = (quotes.cum_sum() % 2) == 1
    starts = open_after.shift(1, fill_value=False).not_()
    frame = frame.with_columns(record=starts.cast(pl.UInt32).cum_sum())
    if frame["record"].n_unique() == frame.height:
        return frame.drop("record")
    return (
        frame.group_by("record", maintain_order=True)
        .agg(pl.col("line").first(), pl.col("raw").str.join("\n"))
        .drop("record")
    )


def _convert(col: pl.Series, dtype: Any) -> pl.Series:
    import polars as pl

    if dtype == pl.Boolean:
        return col.str.to_lowercase().replace_strict(
            {"true": True, "false": False}, default=None, return_dtype=pl.Boolean
        )
    if dtype == pl.Date:
        return col.str.to_date(strict=False)
    if isinstance(dtype, pl.Datetime):
        return col.str.to_datetime(
            time_unit=dtype.time_unit, time_zone=dtype.time_zone, strict=False
        )
    return col.cast(dtype, strict=False)


def _check_jsonl(source: FileSystemSource, file: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """JSON Lines: a line is bad when it is not a JSON object (each line decoded once)."""
    import json

    import polars as pl

    from data_pipeline.ingestion._common import (
        KindTracker,
        as_json_text,
        conflict_text,
        mixed_json_keys,
    )

    data = source._bytes(file)
    decoded: list[tuple[int, bytes, dict[str, Any]]] = []
    bad: list[tuple[int, str, str]] = []
    for number, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            reason = (
                f"invalid JSON at column {exc.colno}: {exc.msg}"
                if isinstance(exc, json.JSONDecodeError)
                else f"not UTF-8 at byte {exc.start}"
            )
            bad.append((number, reason, line.decode("utf-8", "replace")))
            continue
        if not isinstance(value, dict):
            bad.append(
                (number, f"expected a JSON object, found {type(value).__name__}", line.decode())
            )
            continue
        decoded.append((number, line, value))
    good_lines: list[bytes] = []
    if source.settings.mixed_types == "json":  # keys that mix kinds become JSON text
        records = [v for _, _, v in decoded]
        text = as_json_text(records, mixed_json_keys(records))
        good_lines = [json.dumps(r).encode() for r in text]
    else:  # a line whose value kinds clash with the lines before it is bad
        tracker = KindTracker()
        for number, line, value in decoded:
            clash = tracker.clash(value, number)
            if clash is None:
                tracker.add(value, number)
                good_lines.append(line)
                continue
            bad.append((number, conflict_text(clash, "line"), line.decode()))
    bad.sort()
    good = (
        pl.read_ndjson(
            b"\n".join(good_lines), infer_schema_length=source.settings.infer_schema_length
        )
        if good_lines
        else pl.DataFrame()
    )
    rejected = pl.DataFrame(
        {
            "file": [file] * len(bad),
            "line": [b[0] for b in bad],
            "reason": [b[1] for b in bad],
            "raw": [b[2] for b in bad],
        },
        schema={"file": pl.String, "line": pl.Int64, "reason": pl.String, "raw": pl.String},
    )
    return good, rejected


def read_checked(source: FileSystemSource, files: list[str], fmt: str = "csv") -> Any:
    """Read CSV or JSON Lines files dropping (``skip``) or rejecting (``reject``) bad rows."""
    import polars as pl

    goods, bads = [], []
    column = source.settings.source_file_column
    for file in files:
        good, bad = _check_file(source, file) if fmt == "csv" else _check_jsonl(source, file)
        if column:  # a URL's token or password is not data
            good = good.with_columns(pl.lit(redact_url(file), dtype=pl.String).alias(column))
        goods.append(good)
        bads.append(bad)
    frame = goods[0] if len(goods) == 1 else pl.concat(goods, how="diagonal_relaxed")
    rejected = pl.concat(bads)
    if source.settings.flatten:
        from data_pipeline.ingestion._common import flatten_structs

        frame = flatten_structs(frame)
    op = source.current_operation
    op.rows_in = frame.height + rejected.height
    op.rows_rejected = rejected.height
    if rejected.height:  # a reject file or a log line never shows a URL's token or password
        shown = {f: redact_url(f) for f in rejected["file"].unique().to_list()}
        rejected = rejected.with_columns(pl.col("file").replace_strict(shown))
    if source.settings.on_bad_rows == "skip":
        op.details["rows_skipped"] = rejected.height
    elif rejected.height:
        from data_pipeline.ingestion._common import append_rejects, reject_file

        path = reject_file(source.name, source.settings.reject_path)
        append_rejects(path, rejected, component=source.label)
        op.details["reject_path"] = str(path)
    if rejected.height:
        source.logger.warning(
            "%s: %d bad row(s) %s (first: %s line %s: %s)",
            source.label,
            rejected.height,
            "skipped" if source.settings.on_bad_rows == "skip" else "rejected",
            rejected["file"][0],
            rejected["line"][0],
            rejected["reason"][0],
        )
    return frame.lazy() if source.settings.output == "lazy" else frame


def first_bad_row(source: FileSystemSource, files: list[str], fmt: str = "csv") -> str | None:
    """``file 'x.csv' line 7: expected 3 fields, found 4`` for the first bad row, if found."""
    for file in files:
        try:
            _, bad = _check_file(source, file) if fmt == "csv" else _check_jsonl(source, file)
        except ParseError:
            raise
        except Exception:  # the diagnosis is best effort; the caller reports the polars error
            return None
        if bad.height:
            row = bad.row(0, named=True)
            return f"file {row['file']!r} line {row['line']}: {row['reason']} (raw line {row['raw'][:200]!r})"
    return None


def first_misshapen_row(source: FileSystemSource, files: list[str]) -> str | None:
    """Like :func:`first_bad_row` for CSV, only rows with too few or too many fields (polars'
    reader pads a short row with nulls instead of failing)."""
    for file in files:
        _, bad = _check_file(source, file)
        bad = bad.filter(bad["reason"].str.starts_with("expected "))
        if bad.height:
            row = bad.row(0, named=True)
            return (
                f"file {row['file']!r} line {row['line']}: {row['reason']} "
                f"(raw line {row['raw'][:200]!r})"
            )
    return None
