"""NoSQLDBStorage: an embedded document store (default), MongoDB, and Redis.

* ``embedded`` (default): `montydb <https://github.com/davidlatwe/montydb>`_, a MongoDB-like
  document store in a local directory (or ``:memory:``), queried with MongoDB filters.
* ``mongodb``: pymongo; ``upsert`` is an unordered bulk of ``ReplaceOne(upsert=True)`` on the
  primary key; ``replace`` loads a staging collection and renames it over the target (atomic).
* ``redis``: one hash (or one JSON string) per row under a key template such as
  ``"customer:{customer_id}"``, optional TTL, written in one MULTI/EXEC pipeline, with a set of
  the table's keys and its column types so that ``retrieve`` restores typed columns.
"""

from __future__ import annotations

import json
import os
import string
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator, model_validator

from data_pipeline.core.deps import import_optional
from data_pipeline.core.errors import (
    ConfigError,
    InputNotFoundError,
    StorageError,
    StorageSchemaError,
    UnsupportedOperationError,
)
from data_pipeline.core.secrets import redact_text
from data_pipeline.core.types import from_polars, parse_type
from data_pipeline.storage._common import (
    ColumnList,
    ServerConfig,
    already_exists_error,
    as_polars,
    check_identifier,
    check_unique_key,
    connection_error,
    not_found_error,
    primary_key,
    reject_unknown_options,
    require_key_columns,
    require_upsert_key,
)
from data_pipeline.storage.base import IfExists, StorageSystem, StoreResult

if TYPE_CHECKING:
    import polars as pl

__all__ = ["NoSQLDBStorage", "NoSQLDBStorageConfig"]

_DEFAULT_PORTS = {"mongodb": 27017, "redis": 6379}


class NoSQLDBStorageConfig(ServerConfig):
    """Config of :class:`NoSQLDBStorage`."""

    db_type: Literal["embedded", "mongodb", "redis"] = "embedded"
    default_table: str | None = Field(default=None, alias="default_collection")
    default_if_exists: IfExists = "append"
    primary_key: ColumnList = None
    key_template: str | None = None
    value_format: Literal["hash", "json"] = "hash"
    ttl: int | None = Field(default=None, gt=0)
    batch_size: int = Field(default=10_000, gt=0)

    @field_validator("db_type", mode="before")
    @classmethod
    def _alias(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip().lower()
            return {"mongo": "mongodb", "montydb": "embedded", "document": "embedded"}.get(
                value, value
            )
        return value

    @model_validator(mode="after")
    def _check(self) -> NoSQLDBStorageConfig:
        if self.port is None and self.db_type in _DEFAULT_PORTS:
            self.port = _DEFAULT_PORTS[self.db_type]
        if self.db_type != "redis" and (self.key_template or self.ttl):
            raise ValueError("key_template and ttl apply to db_type 'redis'")
        if self.key_template:
            fields = _template_fields(self.key_template)
            if not fields and "{table}" not in self.key_template:
                raise ValueError(
                    "key_template needs at least one {column} placeholder, e.g. 'customer:{id}'"
                )
        return self


def _template_fields(template: str) -> list[str]:
    return [f for _, f, _, _ in string.Formatter().parse(template) if f and f != "table"]


class NoSQLDBStorage(StorageSystem):
    """Storage system for NoSQL databases: embedded documents (default), MongoDB or Redis.

    Documents stores: ``store(data, "customers", if_exists=...)`` writes one document per row;
    ``retrieve("customers", query={"age": {"$gt": 30}})`` (or ``filter=``) reads them back into a
    frame. Redis: each row goes to ``key_template`` (default ``"{table}:{<primary key>}"``) as a
    hash (``value_format: hash``) or a JSON string (``json``), with optional ``ttl`` seconds.

    Example:
        >>> cache = NoSQLDBStorage(name="cache", config={
        ...     "db_type": "redis",
        ...     "host": "localhost",
        ...     "port": 6379,
        ...     "database": "0",
        ...     "key_template": "customer:{customer_id}",
        ...     "primary_key": ["customer_id"],
        ...     "ttl": 3600,
        ... })
        >>> docs = NoSQLDBStorage(name="docs", config={"database": "data/docs"})  # embedded
    """

    config_model = NoSQLDBStorageConfig
    settings: NoSQLDBStorageConfig
    accepts_primary_key = True

    def __init__(self, name: str, config: Any = None) -> None:
        super().__init__(name, config)
        self._client: Any = None
        self._memory_db = f"data_pipeline_{uuid.uuid4().hex[:12]}"

    def where(self) -> str:
        cfg = self.settings
        if cfg.db_type == "embedded":
            return f"embedded store {cfg.database or ':memory:'!r}"
        if cfg.url:
            return redact_text(cfg.url)
        return f"{cfg.host}:{cfg.port}/{cfg.database or ('0' if cfg.db_type == 'redis' else 'data_pipeline')}"

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # -- connections ---------------------------------------------------------------------

    def _connect_error(self, exc: Exception, auth: bool = False) -> Exception:
        return connection_error(
            exc,
            what=self.settings.db_type,
            where=self.where(),
            component=self.label,
            auth=auth,
            lines=1,
        )

    def _database(self) -> Any:
        """The document database (montydb or pymongo), connected on first use and kept."""
        cfg = self.settings
        if self._client is None:
            if cfg.db_type == "embedded":
                montydb = import_optional(
                    "montydb", extra="embedded", feature="The embedded document store"
                )
                location = cfg.database or ":memory:"
                try:
                    # montydb keeps process-wide settings; pin them so that clients can coexist.
                    if location == ":memory:":
                        montydb.set_storage(":memory:", "memory", use_bson=True)
                    elif not os.path.isfile(os.path.join(location, ".monty.storage")):
                        os.makedirs(location, exist_ok=True)
                        montydb.set_storage(location, "sqlite", use_bson=True)
                    self._client = montydb.MontyClient(location)
                except Exception as exc:
                    raise self._connect_error(exc) from None
            else:
                pymongo = import_optional("pymongo", extra="mongodb", feature="MongoDB support")
                kwargs: dict[str, Any] = {"serverSelectionTimeoutMS": cfg.connect_timeout * 1000}
                if cfg.username:
                    kwargs["username"] = cfg.username
                if cfg.password:
                    kwargs["password"] = cfg.password.get_secret_value()
                if cfg.url:
                    self._client = pymongo.MongoClient(cfg.url, **kwargs)
                else:
                    self._client = pymongo.MongoClient(cfg.host, cfg.port, **kwargs)
                try:
                    self._client.admin.command("ping")
                except pymongo.errors.OperationFailure as exc:
                    self.close()
                    raise self._connect_error(exc, auth=exc.code in (13, 18)) from None
                except pymongo.errors.PyMongoError as exc:
                    self.close()
                    raise self._connect_error(exc) from None
        if cfg.db_type == "embedded":
            # montydb's memory storage is shared by the whole process: one database per object
            name = (
                self._memory_db if (cfg.database or ":memory:") == ":memory:" else "data_pipeline"
            )
        else:
            name = cfg.database or "data_pipeline"
        return self._client[name]

    @contextmanager
    def _redis(self) -> Iterator[Any]:
        redis = import_optional("redis", extra="redis", feature="Redis support")
        cfg = self.settings
        if self._client is None:
            password = cfg.password.get_secret_value() if cfg.password else None
            if cfg.url:
                self._client = redis.Redis.from_url(
                    cfg.url, password=password, socket_connect_timeout=cfg.connect_timeout
                )
            else:
                try:
                    db = int(cfg.database or 0)
                except ValueError:
                    raise ConfigError(
                        f"database must be a Redis database number, got {cfg.database!r}",
                        component=self.label,
                    ) from None
                self._client = redis.Redis(
                    host=cfg.host,
                    port=cfg.port,
                    db=db,
                    username=cfg.username,
                    password=password,
                    socket_connect_timeout=cfg.connect_timeout,
                )
        try:
            yield self._client
        except redis.exceptions.AuthenticationError as exc:
            self.close()
            raise self._connect_error(exc, auth=True) from None
        except redis.exceptions.ResponseError as exc:
            if "WRONGPASS" in str(exc) or "NOAUTH" in str(exc):
                self.close()
                raise self._connect_error(exc, auth=True) from None
            raise
        except redis.exceptions.ConnectionError as exc:
            self.close()
            raise self._connect_error(exc) from None

    # -- store ---------------------------------------------------------------------------

    def _store(self, data: Any, target: str, if_exists: str, **options: Any) -> StoreResult:
        reject_unknown_options(
            options,
            ("primary_key", "ttl", "not_null"),
            hint="store() accepts table, if_exists, primary_key, ttl",
            component=self.label,
        )
        check_identifier(target, what="collection", component=self.label)
        key = primary_key(options, self.settings.primary_key)
        frame = as_polars(data)
        if key:
            require_key_columns(key, frame.columns, what=repr(target), component=self.label)
            check_unique_key(frame, key, target, self.label)
        if self.settings.db_type == "redis":
            action = self._store_redis(
                frame, target, if_exists, key, options.get("ttl", self.settings.ttl)
            )
        else:
            require_upsert_key(if_exists, key, component=self.label)
            action = self._store_documents(frame, target, if_exists, key)
        return StoreResult(
            target=target,
            rows=int(frame.height),
            bytes=int(frame.estimated_size()),
            details={"action": action, "db_type": self.settings.db_type},
        )

    def _store_documents(
        self, frame: pl.DataFrame, target: str, if_exists: str, key: list[str] | None
    ) -> str:
        db = self._database()
        embedded = self.settings.db_type == "embedded"
        present = target in db.list_collection_names()
        exists = present and db[target].count_documents({}, limit=1) > 0
        if exists and if_exists == "fail":
            raise already_exists_error(
                f"collection {target!r}", where=self.where(), component=self.label
            )
        docs = _documents(frame)
        step = self.settings.batch_size
        try:
            if if_exists == "replace" or not exists:
                if embedded:  # montydb has no rename: clear, then insert
                    if present:
                        db[target].delete_many({})
                    for i in range(0, len(docs), step):
                        db[target].insert_many(docs[i : i + step])
                else:
                    stage = f"__dp_stage_{uuid.uuid4().hex[:12]}"
                    try:
                        if key:
                            db[stage].create_index([(k, 1) for k in key], unique=True)
                        for i in range(0, len(docs), step):
                            db[stage].insert_many(docs[i : i + step], ordered=True)
                        if docs or key:
                            db[stage].rename(target, dropTarget=True)
                        else:
                            db.drop_collection(target)
                    finally:
                        db.drop_collection(stage)
                return "replaced" if exists else "created"
            if if_exists == "append":
                if key and not embedded:
                    db[target].create_index([(k, 1) for k in key], unique=True)
                for i in range(0, len(docs), step):
                    db[target].insert_many(docs[i : i + step], ordered=True)
                return "appended"
            assert key is not None
            if embedded:
                for doc in docs:
                    db[target].replace_one({k: doc[k] for k in key}, doc, upsert=True)
            else:
                from pymongo import ReplaceOne

                db[target].create_index([(k, 1) for k in key], unique=True)
                for i in range(0, len(docs), step):
                    ops = [
                        ReplaceOne({k: d[k] for k in key}, d, upsert=True)
                        for d in docs[i : i + step]
                    ]
                    db[target].bulk_write(ops, ordered=False)
            return "upserted"
        except Exception as exc:
            if type(exc).__name__ in ("BulkWriteError", "DuplicateKeyError"):
                details = getattr(exc, "details", None) or {}
                errors = details.get("writeErrors") or [{}]
                sample = errors[0].get("keyValue") or errors[0].get("errmsg") or str(exc)
                raise StorageError(
                    f"duplicate key in collection {target!r}: {sample} "
                    f"({details.get('nInserted', 0)} document(s) of this call were written before it)",
                    component=self.label,
                    hint="use if_exists='upsert' to merge on the primary key",
                ) from None
            raise

    def _store_redis(
        self,
        frame: pl.DataFrame,
        target: str,
        if_exists: str,
        key: list[str] | None,
        ttl: int | None,
    ) -> str:
        import polars as pl

        template = self.settings.key_template
        if template is None:
            if not key:
                raise ConfigError(
                    "Redis needs key_template or primary_key to name each row's key",
                    component=self.label,
                    hint="set key_template: 'customer:{customer_id}' or primary_key: ['customer_id']",
                )
            template = "{table}:" + ":".join("{" + k + "}" for k in key)
        fields = _template_fields(template)
        missing = [f for f in fields if f not in frame.columns]
        if missing:
            raise StorageSchemaError(
                f"key_template {template!r} names column(s) {', '.join(map(repr, missing))} not in the data",
                component=self.label,
                hint=f"the data has columns: {', '.join(map(repr, frame.columns))}",
            )
        keys = frame.select(_key_expr(template, target).alias("key"))["key"]
        if keys.null_count():
            raise StorageSchemaError(
                f"{keys.null_count()} row(s) have nulls in key column(s) {', '.join(fields)}",
                component=self.label,
                hint="drop or fill those rows before storing",
            )
        if keys.n_unique() != len(keys):
            raise StorageError(
                f"key_template {template!r} gives the same key to several rows of the data for {target!r}",
                component=self.label,
                hint="use a template with the full primary key",
            )
        index, schema_key = f"__dp__:{target}:keys", f"__dp__:{target}:schema"
        schema = {name: _type_name(dtype) for name, dtype in frame.schema.items()}
        if self.settings.value_format == "json":
            lines = _documents_json(frame)
        else:
            text = frame.select(pl.all().cast(pl.String))
        key_list = keys.to_list()
        with self._redis() as client:
            exists = bool(client.exists(index))
            if exists and if_exists == "fail":
                raise already_exists_error(
                    f"table {target!r}", where=f"Redis {self.where()}", component=self.label
                )
            old: list[Any] = (
                list(client.smembers(index)) if exists and if_exists == "replace" else []
            )
            if exists and if_exists != "replace":
                previous = client.get(schema_key)
                if previous:
                    schema = {**json.loads(previous), **schema}
            pipe = client.pipeline(transaction=True)
            if old:
                for i in range(0, len(old), 10_000):
                    pipe.unlink(*old[i : i + 10_000])
                pipe.delete(index)
            if exists and if_exists == "upsert" and self.settings.value_format == "hash":
                for i in range(0, len(key_list), 10_000):
                    pipe.unlink(*key_list[i : i + 10_000])
            if self.settings.value_format == "json":
                for k, line in zip(key_list, lines, strict=True):
                    pipe.set(k, line, ex=ttl)
            else:
                columns = text.columns
                for k, row in zip(key_list, text.iter_rows(), strict=True):
                    mapping = {c: v for c, v in zip(columns, row, strict=True) if v is not None}
                    if mapping:
                        pipe.hset(k, mapping=mapping)
                    if ttl:
                        pipe.expire(k, ttl)
            for i in range(0, len(key_list), 10_000):
                pipe.sadd(index, *key_list[i : i + 10_000])
            pipe.set(schema_key, json.dumps(schema))
            pipe.execute()
        if if_exists == "replace" and exists:
            return "replaced"
        return "created" if not exists else ("upserted" if if_exists == "upsert" else "appended")

    # -- retrieve ------------------------------------------------------------------------

    def _retrieve(
        self,
        target: str | None,
        *,
        query: Any,
        params: Any,
        filter: dict[str, Any] | None = None,
        columns: list[str] | None = None,
        limit: int | None = None,
        include_id: bool = False,
        **options: Any,
    ) -> Any:
        reject_unknown_options(
            options,
            (),
            hint="retrieve() accepts table, query/filter, columns, limit, include_id, output",
            component=self.label,
        )
        if target is None:
            raise ConfigError(
                "no collection given and no default_table configured",
                component=self.label,
                hint="call retrieve('collection')",
            )
        if query is not None and filter is not None:
            raise ConfigError("pass either query= or filter=, not both", component=self.label)
        condition = query if query is not None else filter
        if condition is not None and not isinstance(condition, dict):
            raise ConfigError(
                f"a NoSQL query is a filter document (dict), got {type(condition).__name__}",
                component=self.label,
                hint='e.g. query={"age": {"$gt": 30}}',
            )
        if self.settings.db_type == "redis":
            return self._retrieve_redis(target, condition, columns, limit)
        db = self._database()
        if target not in db.list_collection_names():
            known = [c for c in db.list_collection_names() if not c.startswith("__dp_")]
            raise not_found_error(
                f"collection {target!r} does not exist in {self.where()}",
                sorted(known),
                kind="collections",
                empty="nothing is stored yet",
                component=self.label,
            )
        projection: dict[str, int] | None = None
        if columns:
            projection = {c: 1 for c in columns}
            if not include_id:
                projection["_id"] = 0
        elif not include_id:
            projection = {"_id": 0}
        cursor = db[target].find(condition or {}, projection)
        if limit:
            cursor = cursor.limit(limit)
        docs = list(cursor)
        if include_id:
            for d in docs:
                if "_id" in d:
                    d["_id"] = str(d["_id"])
        return _frame_from_documents(docs, columns)

    def _retrieve_redis(
        self,
        target: str,
        condition: dict[str, Any] | None,
        columns: list[str] | None,
        limit: int | None,
    ) -> Any:
        import polars as pl

        index, schema_key = f"__dp__:{target}:keys", f"__dp__:{target}:schema"
        with self._redis() as client:
            raw_schema = client.get(schema_key)
            if raw_schema is None:
                raise InputNotFoundError(
                    f"table {target!r} does not exist in Redis {self.where()}",
                    component=self.label,
                    hint="store it first; only tables written by NoSQLDBStorage can be read back",
                )
            keys = sorted(client.smembers(index))
            pipe = client.pipeline(transaction=False)
            for k in keys:
                if self.settings.value_format == "json":
                    pipe.get(k)
                else:
                    pipe.hgetall(k)
            values = pipe.execute()
        schema = {name: _parse_dtype(text) for name, text in json.loads(raw_schema).items()}
        if self.settings.value_format == "json":
            lines = [v.decode() if isinstance(v, bytes) else v for v in values if v]
            if not lines:
                frame = pl.DataFrame(schema=schema)
            else:
                # Polars' JSON reader takes only some types: read the others as text, then parse
                as_text = {n: d for n, d in schema.items() if not _json_readable(d)}
                read = {n: pl.String if n in as_text else d for n, d in schema.items()}
                frame = pl.read_ndjson(("\n".join(lines)).encode(), schema=read)
                if as_text:
                    frame = frame.with_columns(_from_string(n, d) for n, d in as_text.items())
        else:
            rows = [
                {(k.decode() if isinstance(k, bytes) else k): v.decode() for k, v in d.items()}
                for d in values
                if d
            ]
            text = pl.DataFrame(rows, schema=dict.fromkeys(schema, pl.String), orient="row")
            frame = text.select(_from_string(name, dtype) for name, dtype in schema.items())
        if condition:
            frame = frame.filter(_filter_expr(condition))
        if columns:
            frame = frame.select(columns)
        if limit:
            frame = frame.head(limit)
        return frame


# -- helpers ---------------------------------------------------------------------------------


def _key_expr(template: str, table: str) -> Any:
    """A polars expression building each row's key from ``template`` (vectorised)."""
    import polars as pl

    parts: list[Any] = []
    for literal, name, spec, _ in string.Formatter().parse(template):
        if literal:
            parts.append(pl.lit(literal))
        if name is None:
            continue
        if name == "table":
            parts.append(pl.lit(table))
        else:
            if spec:
                raise ConfigError(
                    f"key_template field {name!r} has a format spec; use plain {{column}} placeholders",
                    component="NoSQLDBStorage",
                )
            parts.append(pl.col(name).cast(pl.String))
    return pl.concat_str(parts) if parts else pl.lit(table)


def _bson_ready(frame: pl.DataFrame) -> pl.DataFrame:
    import polars as pl

    exprs = []
    for name, dtype in frame.schema.items():
        col = pl.col(name)
        if dtype == pl.Date:
            exprs.append(col.cast(pl.Datetime("us")))
        elif dtype == pl.Time or isinstance(dtype, (pl.Categorical, pl.Enum)):
            exprs.append(col.cast(pl.String))
        elif isinstance(dtype, pl.Duration):
            exprs.append(col.dt.total_microseconds())
        elif isinstance(dtype, pl.Decimal):
            exprs.append(col.cast(pl.Float64))
        elif dtype in (pl.UInt64,):
            exprs.append(col.cast(pl.Int64))
        else:
            exprs.append(col)
    return frame.select(exprs)


def _documents(frame: pl.DataFrame) -> list[dict[str, Any]]:
    return _bson_ready(frame).to_dicts()


def _documents_json(frame: pl.DataFrame) -> list[str]:
    text = frame.write_ndjson()
    return text.splitlines()


def _frame_from_documents(docs: list[dict[str, Any]], columns: list[str] | None) -> pl.DataFrame:
    import polars as pl

    if not docs:
        return pl.DataFrame({c: [] for c in columns or []})
    return pl.from_dicts(docs, infer_schema_length=None)


def _type_name(dtype: Any) -> str:
    """The name kept beside a Redis table for a column's type (core.types' canonical name)."""
    try:
        return from_polars(dtype).name
    except UnsupportedOperationError:
        return str(dtype)  # nested or null: restored as text


def _parse_dtype(text: str) -> Any:
    """The Polars dtype of a kept type name (canonical, or as older versions wrote it)."""
    import polars as pl

    try:
        return parse_type(text).polars()
    except ConfigError:
        return pl.String


def _json_readable(dtype: Any) -> bool:
    """Types ``polars.read_ndjson`` reads from what ``write_ndjson`` wrote."""
    import polars as pl

    if isinstance(dtype, pl.Datetime) or dtype in (pl.String, pl.Boolean, pl.Date):
        return True
    return dtype in (pl.Int32, pl.Int64, pl.UInt32, pl.UInt64, pl.Float32, pl.Float64)


def _from_string(name: str, dtype: Any) -> Any:
    """Parse a string column (as Redis hashes hold it) back into ``dtype``."""
    import polars as pl

    col = pl.col(name)
    if dtype == pl.String:
        return col
    if dtype == pl.Boolean:
        return col.replace_strict(
            {"true": True, "false": False}, default=None, return_dtype=pl.Boolean
        )
    if isinstance(dtype, pl.Datetime):
        return col.str.to_datetime(time_unit="us", time_zone=dtype.time_zone)
    if dtype == pl.Date:
        return col.str.to_date()
    if dtype == pl.Time:
        return col.str.to_time()
    if isinstance(dtype, pl.Duration):  # ISO 8601 as write_ndjson writes it: -PT1.5S, P0D
        parts = col.str.extract_groups(r"^(-?)P(?:0D|T(\d+)(?:\.(\d{1,9}))?S)$")
        micros = parts.struct[1].cast(pl.Int64).fill_null(0) * 1_000_000 + (
            parts.struct[2].str.pad_end(6, "0").str.slice(0, 6).cast(pl.Int64).fill_null(0)
        )
        sign = pl.when(parts.struct[0] == "-").then(-1).otherwise(1)
        value = pl.when(parts.struct[1].is_not_null() | (col == "P0D")).then(micros * sign)
        return value.cast(pl.Duration("us")).cast(dtype).alias(name)
    return col.cast(dtype)


_OPS = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists")


def _operator(col: Any, op: str, value: Any) -> Any:
    if op == "$eq":
        return col == value
    if op == "$ne":
        return col != value
    if op == "$gt":
        return col > value
    if op == "$gte":
        return col >= value
    if op == "$lt":
        return col < value
    if op == "$lte":
        return col <= value
    if op == "$in":
        return col.is_in(list(value))
    if op == "$nin":
        return ~col.is_in(list(value))
    if op == "$exists":
        return col.is_not_null() if value else col.is_null()
    raise ConfigError(
        f"unsupported filter operator {op!r}",
        component="NoSQLDBStorage",
        hint=f"use one of {', '.join(_OPS)}",
    )


def _filter_expr(condition: dict[str, Any]) -> Any:
    """A MongoDB-style filter as a polars expression (for Redis, which has no query language)."""
    import polars as pl

    exprs = []
    for field, spec in condition.items():
        if field in ("$and", "$or"):
            parts = [_filter_expr(c) for c in spec]
            combined = parts[0]
            for p in parts[1:]:
                combined = combined & p if field == "$and" else combined | p
            exprs.append(combined)
            continue
        col = pl.col(field)
        if isinstance(spec, dict) and spec and all(k.startswith("$") for k in spec):
            for op, value in spec.items():
                exprs.append(_operator(col, op, value))
        else:
            exprs.append(col == spec)
    result = exprs[0]
    for e in exprs[1:]:
        result = result & e
    return result
