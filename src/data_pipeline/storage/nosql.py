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

import contextlib
import hashlib
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
)
from data_pipeline.core.files import check_file_name, target_lock
from data_pipeline.core.secrets import redact_text
from data_pipeline.core.types import parse_type
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
from data_pipeline.storage._values import (
    Holds,
    check_holdable,
    documents,
    from_documents,
    from_text,
    schema_bytes,
    schema_from_bytes,
    text_columns,
)
from data_pipeline.storage.base import IfExists, StorageSystem, StoreResult

if TYPE_CHECKING:
    import polars as pl

__all__ = ["NoSQLDBStorage", "NoSQLDBStorageConfig"]

_DEFAULT_PORTS = {"mongodb": 27017, "redis": 6379}
STAGE_PREFIX = "__dp_stage_"
_MONTY_EXT = ".collection"  # montydb's SQLite engine: one file per collection
SCHEMAS = "__dp_schema"  # one document per collection: the polars schema its data was stored with

# BSON: datetimes in milliseconds, signed 64-bit integers, Decimal128 (34 digits).
DOCUMENT_HOLDS = Holds("BSON documents", time_unit="ms", uint64=False, decimal_digits=34)
# JSON values: no NaN/infinity, no bytes; durations have no agreed text form.
JSON_HOLDS = Holds("JSON values", nan_inf=False, binary=False, duration=False)
HASH_HOLDS = Holds("Redis hashes")


class NoSQLDBStorageConfig(ServerConfig):
    """Config of :class:`NoSQLDBStorage`."""

    db_type: Literal["embedded", "mongodb", "redis"] = "embedded"
    """``embedded``: a document store in local files or memory (montydb, the ``embedded``
    extra; no server); ``mongodb`` (``mongo``); ``redis``: rows as hashes or JSON strings."""
    default_table: str | None = Field(default=None, alias="default_collection")
    """The collection (Redis: the table name used in keys) ``store()`` writes and
    ``retrieve()`` reads when called without one."""
    default_if_exists: IfExists = "append"
    """What ``store()`` does when the collection exists and the call gives no ``if_exists``:
    ``fail``, ``replace``, ``append`` or ``upsert`` (replace the documents with the same
    ``primary_key``, add the others). Documents: every mode rebuilds the collection in a stage
    and swaps it in, so ``append`` also costs the whole collection."""
    primary_key: ColumnList = None
    """Column(s) identifying a row (one name or a list): ``upsert`` matches on them, a unique
    index is built on them (MongoDB), and on Redis they name each row's key
    (``<table>:<key>``) when ``key_template`` is absent. ``store(primary_key=...)`` overrides it."""
    key_template: str | None = None
    """Redis only: the key of each row, with ``{column}`` placeholders and ``{table}``
    (``customer:{customer_id}``); absent: ``{table}:{<primary key columns>}``. Two rows with one
    key, or a null in a key column, are refused."""
    value_format: Literal["hash", "json"] = "hash"
    """Redis only: ``hash`` stores each row as a hash of its non-null values as text (types
    restored on ``retrieve()``); ``json`` as one JSON string (``SET``)."""
    ttl: int | None = Field(default=None, gt=0)
    """Redis only: seconds after which each stored key expires (``store(ttl=...)`` overrides
    it); absent: keys never expire."""
    batch_size: int = Field(default=10_000, gt=0)
    """MongoDB: documents per ``insert_many`` / ``bulk_write`` call; bounds the request size
    only (a store still lands whole). The embedded store and Redis ignore it."""

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

    Raises:
        ConfigError: an invalid config (``key_template`` or ``ttl`` off Redis, a template without a
            column, a non-numeric Redis ``database``), ``upsert`` without a primary key, Redis
            without ``key_template`` or ``primary_key``, a query that is not a filter document, or
            an unknown option.
        DependencyError: montydb, pymongo or redis is not installed.
        StorageConnectionError: the server cannot be reached.
        StorageAuthenticationError: the credentials were refused.
        StorageSchemaError: a column name a document cannot hold (a ``.`` or a leading ``$``), a
            type the store cannot hold, a ``key_template`` column missing from the data, or nulls in
            key columns.
        InputNotFoundError: ``retrieve()`` of a collection (or Redis table) that does not exist.
        StorageError: ``if_exists: fail`` and the collection exists, a key repeated in the data, or
            any other failure.

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
                self._client = mongo_client(cfg)
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
            from data_pipeline.core.redis_client import redis_client

            password = cfg.password.get_secret_value() if cfg.password else None
            try:
                db = None if cfg.database is None else int(cfg.database)
            except ValueError:
                raise ConfigError(
                    f"database must be a Redis database number, got {cfg.database!r}",
                    component=self.label,
                ) from None
            self._client = redis_client(  # beside a url, the keys given replace the URL's
                redis,
                url=cfg.url,
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
        if self.settings.db_type == "embedded":  # a collection is a file: one plain name
            check_file_name(target, what="collection", component=self.label)
        if target.startswith("__dp_"):
            raise ConfigError(
                f"collection name {target!r} is reserved (the store's own records)",
                component=self.label,
                hint="choose a name that does not start with '__dp_'",
            )
        key = primary_key(options, self.settings.primary_key)
        if self._spark_writes(data):
            return self._store_spark(data, target, if_exists, key)
        frame = as_polars(data)
        if key:
            require_key_columns(key, frame.columns, what=repr(target), component=self.label)
            check_unique_key(frame, key, target, self.label)
        details: dict[str, Any] = {"db_type": self.settings.db_type}
        if self.settings.db_type == "redis":
            details["action"] = self._store_redis(
                frame, target, if_exists, key, options.get("ttl", self.settings.ttl)
            )
        else:
            require_upsert_key(if_exists, key, component=self.label)
            action, leftovers, _ = self._store_documents(frame, target, if_exists, key)
            details.update(action=action, leftovers_dropped=leftovers)
        return StoreResult(
            target=target,
            rows=int(frame.height),
            bytes=int(frame.estimated_size()),
            details=details,
        )

    def writes_spark(self, if_exists: str | None = None) -> bool:
        return self.settings.db_type == "mongodb"

    def _check_documents(self, frame: pl.DataFrame) -> None:
        """Types a document can hold, and field names that do not read as paths or operators."""
        check_holdable(frame, DOCUMENT_HOLDS, component=self.label)
        bad = [c for c in frame.columns if "." in c or c.startswith("$")]
        if bad:
            raise StorageSchemaError(
                f"column name {bad[0]!r} cannot be a document field: field names with '.' or "
                "a leading '$' read as paths and operators in queries",
                component=self.label,
                hint="rename the column (e.g. frame.rename({...})) before storing",
            )

    def _store_spark(
        self, data: Any, target: str, if_exists: str, key: list[str] | None
    ) -> StoreResult:
        """MongoDB from Spark's executors: this process prepares the staging collection (a
        server-side copy of the target for append/upsert, its indexes, a unique index on the
        key), every partition writes its own documents into it (``mapInArrow``: no row passes
        through this process), then the staging collection is renamed over the target as for
        any other load. A retried task rewrites the same documents (ids made of the load, the
        partition and the row number), so a retry does not double them."""
        import polars as pl

        from data_pipeline._spark import check_unique_key_spark, spark_to_polars_schema

        if key:
            require_key_columns(key, list(data.columns), what=repr(target), component=self.label)
        require_upsert_key(if_exists, key, component=self.label)
        schema = spark_to_polars_schema(data)
        empty = pl.DataFrame(schema=schema)
        if key:
            check_unique_key_spark(data, key, target, self.label)
        action, leftovers, rows = self._store_documents(empty, target, if_exists, key, spark=data)
        return StoreResult(
            target=target,
            rows=rows,
            bytes=0,
            details={
                "db_type": "mongodb",
                "action": action,
                "leftovers_dropped": leftovers,
                "engine": "spark-executors",
            },
        )

    def _store_documents(
        self,
        frame: pl.DataFrame,
        target: str,
        if_exists: str,
        key: list[str] | None,
        *,
        spark: Any = None,
    ) -> tuple[str, list[str], int]:
        """Every mode builds the collection's new content in a staging collection and swaps
        it in: MongoDB renames it over the target (``dropTarget``); the embedded store (SQLite
        files) renames the staging file over the collection's file, or moves the collection in
        memory. A reader, or a crash, sees the old collection or the new one.

        ``spark``: a Spark frame; ``frame`` is then an empty frame of its schema, and the
        executors write the documents into the prepared stage. Returns the action, the
        leftover stages dropped and the documents written."""
        self._check_documents(frame)
        docs = documents(frame) if spark is None else []
        db = self._database()
        with self._collection_lock(db):
            leftovers = self._drop_leftovers(db, target)
            present = target in db.list_collection_names()
            exists = present and db[target].count_documents({}, limit=1) > 0
            if exists and if_exists == "fail":
                raise already_exists_error(
                    f"collection {target!r}", where=self.where(), component=self.label
                )
            stage = f"{_stage_prefix(target)}{uuid.uuid4().hex[:12]}"
            try:
                if if_exists == "replace" or not exists:
                    action = "replaced" if exists else "created"
                    self._fill_stage(db, stage, target if present else None, key, docs, copy=False)
                elif if_exists == "append":
                    action = "appended"
                    self._fill_stage(db, stage, target, key, docs, copy=True)
                else:
                    assert key is not None
                    action = "upserted"
                    self._upsert_stage(db, stage, target, key, docs)
                written = len(docs)
                if spark is not None:
                    from data_pipeline._spark import write_documents

                    upsert = action == "upserted"
                    written = write_documents(
                        spark, self.settings, db.name, stage, key, upsert=upsert
                    )
                self._swap(db, stage, target)
            except Exception as exc:
                raise self._document_error(exc, target) from None
            finally:
                if stage in db.list_collection_names():
                    self._drop(db, stage)
            self._save_schema(db, target, frame.schema, if_exists == "replace" or not exists)
        return action, leftovers, written

    # the pieces of a document load

    def _collection_lock(self, db: Any) -> Any:
        """The embedded store's database directory is locked while a load runs (writers wait
        for each other, so a stage left in it belongs to a killed load)."""
        path = self._embedded_dir(db)
        return target_lock(path) if path else contextlib.nullcontext()

    def _embedded_storage(self) -> Any:
        return self._client._storage if self.settings.db_type == "embedded" else None

    def _embedded_dir(self, db: Any) -> str | None:
        storage = self._embedded_storage()
        if storage is None or type(storage).__name__ != "SQLiteStorage":
            return None
        path = storage._db_path(db.name)
        os.makedirs(path, exist_ok=True)
        return str(path)

    def _drop_leftovers(self, db: Any, target: str) -> list[str]:
        prefix = _stage_prefix(target)
        names = [n for n in db.list_collection_names() if n.startswith(prefix)]
        for name in names:
            self._drop(db, name)
        return names

    def _drop(self, db: Any, name: str) -> None:
        db.drop_collection(name)
        folder = self._embedded_dir(db)
        if folder:
            for suffix in ("-wal", "-shm", "-journal"):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(os.path.join(folder, name + _MONTY_EXT + suffix))

    def _copy_indexes(self, db: Any, source: str, stage: str) -> None:
        for name, spec in db[source].index_information().items():
            if name == "_id_":
                continue
            options = {k: v for k, v in spec.items() if k not in ("key", "v", "ns")}
            db[stage].create_index(spec["key"], name=name, **options)

    def _fill_stage(
        self,
        db: Any,
        stage: str,
        source: str | None,
        key: list[str] | None,
        docs: list[dict[str, Any]],
        *,
        copy: bool,
    ) -> None:
        """``stage`` = (a copy of ``source`` when ``copy``) + ``docs``, with the target's indexes
        (MongoDB) and a unique index on the key."""
        step = self.settings.batch_size
        if self.settings.db_type == "embedded":
            # One insert into a fresh collection: montydb checks each new _id against a list of
            # the collection's ids, so inserting into a non-empty one is quadratic.
            rows = (list(db[source].find({})) if copy and source is not None else []) + docs
            db.create_collection(stage)
            if rows:
                db[stage].insert_many(rows)
            return
        if copy and source is not None:
            db[source].aggregate([{"$match": {}}, {"$out": stage}])
        if stage not in db.list_collection_names():
            db.create_collection(stage)
        if source is not None:
            self._copy_indexes(db, source, stage)
        if key:
            db[stage].create_index([(k, 1) for k in key], unique=True)
        for i in range(0, len(docs), step):
            db[stage].insert_many(docs[i : i + step], ordered=True)

    def _upsert_stage(
        self, db: Any, stage: str, target: str, key: list[str], docs: list[dict[str, Any]]
    ) -> None:
        """``stage`` = ``target`` with ``docs`` replacing the documents of the same key and the
        rest added. MongoDB: a server-side copy, then a bulk of ``ReplaceOne(upsert=True)``.
        Embedded: one read of the old documents and one insert of the merged ones (O(n); the
        store's own ``replace_one`` scans the collection per call)."""
        if self.settings.db_type != "embedded":
            self._fill_stage(db, stage, target, key, [], copy=True)
            replace_documents(db[stage], docs, key, self.settings.batch_size)
            return
        old = list(db[target].find({}))
        position = {tuple(_hashable(d.get(k)) for k in key): i for i, d in enumerate(old)}
        for doc in docs:
            where = position.get(tuple(_hashable(doc.get(k)) for k in key))
            if where is None:
                old.append(doc)
            else:
                doc["_id"] = old[where]["_id"]
                old[where] = doc
        self._fill_stage(db, stage, None, key, old, copy=False)

    def _swap(self, db: Any, stage: str, target: str) -> None:
        if self.settings.db_type != "embedded":
            db[stage].rename(target, dropTarget=True)
            return
        storage = self._embedded_storage()
        folder = self._embedded_dir(db)
        if folder:
            staged = os.path.join(folder, stage + _MONTY_EXT)
            final = os.path.join(folder, target + _MONTY_EXT)
            _checkpoint(staged)
            if os.path.exists(final):
                _checkpoint(final)  # no journal of the old file may outlive it
            os.replace(staged, final)
            return
        if type(storage).__name__ == "MemoryStorage":
            collections = storage._repo[db.name]
            collections[target] = collections.pop(stage)
            return
        # another montydb engine (flatfile, lightning): not atomic (docs/storage.md)
        rows = list(db[stage].find({}))
        db[target].delete_many({})
        if rows:
            db[target].insert_many(rows)

    def _save_schema(self, db: Any, target: str, schema: Any, replace: bool) -> None:
        """The polars schema of the collection's data, read back by ``retrieve`` to restore
        the types (written after the data; a read tolerates a record that does not fit)."""
        if not replace:
            previous = self._load_schema(db, target)
            if previous is not None:
                schema = {**dict(previous), **dict(schema)}
        db[SCHEMAS].replace_one(
            {"_id": target}, {"_id": target, "schema": schema_bytes(schema)}, upsert=True
        )

    def _load_schema(self, db: Any, target: str) -> Any:
        record = (
            db[SCHEMAS].find_one({"_id": target}) if SCHEMAS in db.list_collection_names() else None
        )
        if not record:
            return None
        try:
            return schema_from_bytes(bytes(record["schema"]))
        except Exception:
            return None

    def _document_error(self, exc: Exception, target: str) -> Exception:
        if type(exc).__name__ in ("BulkWriteError", "DuplicateKeyError"):
            details = getattr(exc, "details", None) or {}
            errors = details.get("writeErrors") or [{}]
            sample = errors[0].get("keyValue") or errors[0].get("errmsg") or str(exc)
            return StorageError(
                f"duplicate key in collection {target!r}: {sample}; the collection is unchanged",
                component=self.label,
                hint="use if_exists='upsert' to merge on the primary key",
            )
        return exc

    def _store_redis(
        self,
        frame: pl.DataFrame,
        target: str,
        if_exists: str,
        key: list[str] | None,
        ttl: int | None,
    ) -> str:

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
        schema = dict(frame.schema)
        if self.settings.value_format == "json":
            check_holdable(frame, JSON_HOLDS, component=self.label)
            # one JSON document per line: JSON escapes line breaks inside strings, so only
            # "\n" separates rows (str.splitlines() also splits at U+2028, U+0085, ...)
            lines = frame.write_ndjson().split("\n")[: frame.height]
        else:
            check_holdable(frame, HASH_HOLDS, component=self.label)
            text = text_columns(frame)
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
                previous = _load_schema(client.get(schema_key))
                if previous:
                    schema = {**previous, **schema}
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
            pipe.set(schema_key, schema_bytes(schema))
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
        ids = [str(d.pop("_id")) if "_id" in d else None for d in docs] if include_id else None
        schema = self._load_schema(db, target)
        try:
            frame = from_documents(docs, schema, columns)
        except Exception:  # a record that does not fit the data (see _save_schema): infer
            frame = from_documents(docs, None, columns)
        if ids is not None:
            import polars as pl

            frame = frame.with_columns(pl.Series("_id", ids, dtype=pl.String)).select(
                "_id", *frame.columns
            )
        return frame

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
        schema = _load_schema(raw_schema) or {}
        texts = {
            name: pl.Binary if dtype == pl.Binary else pl.String for name, dtype in schema.items()
        }
        if self.settings.value_format == "json":
            lines = [v for v in values if v]
            # temporal and decimal values are JSON strings: read as text, parsed like hashes
            as_text = {n: (pl.String if _text_in_json(t) else t) for n, t in schema.items()}
            if not lines:
                frame = pl.DataFrame(schema=schema)
            else:
                raw = pl.read_ndjson(b"\n".join(_as_bytes(v) for v in lines), schema=as_text)
                frame = from_text(raw, schema)
        else:
            binary = {n for n, t in texts.items() if t == pl.Binary}
            rows = []
            for d in values:
                row = {_as_text(k): v for k, v in d.items()}
                rows.append({k: v if k in binary else _as_text(v) for k, v in row.items()})
            raw = (
                pl.DataFrame(rows, schema=texts, orient="row")
                if rows
                else pl.DataFrame(schema=texts)
            )
            frame = from_text(raw, schema)
        if condition:
            frame = frame.filter(_filter_expr(condition))
        if columns:
            frame = frame.select(columns)
        if limit:
            frame = frame.head(limit)
        return frame


# -- helpers ---------------------------------------------------------------------------------


def mongo_client(cfg: NoSQLDBStorageConfig) -> Any:
    """A pymongo client of the configured server (also built on Spark's executors)."""
    pymongo = import_optional("pymongo", extra="mongodb", feature="MongoDB support")
    kwargs: dict[str, Any] = {"serverSelectionTimeoutMS": cfg.connect_timeout * 1000}
    if cfg.username:
        kwargs["username"] = cfg.username
    if cfg.password:
        kwargs["password"] = cfg.password.get_secret_value()
    if cfg.url:
        return pymongo.MongoClient(cfg.url, **kwargs)
    return pymongo.MongoClient(cfg.host, cfg.port, **kwargs)


def replace_documents(
    collection: Any, docs: list[dict[str, Any]], match: list[str], step: int
) -> None:
    """Each document replaces the one with the same ``match`` fields, or is added (bulk
    ``ReplaceOne(upsert=True)`` in chunks of ``step``): writing the same documents twice gives
    what writing them once did."""
    from pymongo import ReplaceOne

    for i in range(0, len(docs), step):
        ops = [ReplaceOne({k: d[k] for k in match}, d, upsert=True) for d in docs[i : i + step]]
        collection.bulk_write(ops, ordered=False)


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


def _stage_prefix(target: str) -> str:
    """Staging collections of one target share a prefix, so the next load finds a killed one's."""
    return f"{STAGE_PREFIX}{hashlib.sha256(target.encode()).hexdigest()[:10]}_"


def _hashable(value: Any) -> Any:
    return (
        value
        if not isinstance(value, (list, dict))
        else json.dumps(value, default=str, sort_keys=True)
    )


def _checkpoint(path: str) -> None:
    """Fold a SQLite file's write-ahead log into it (and end the log) before it is renamed."""
    import sqlite3

    if not os.path.exists(path):
        return
    con = sqlite3.connect(path)
    try:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        con.close()


def _as_text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _as_bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def _text_in_json(dtype: Any) -> bool:
    """Types that polars writes to JSON as strings (and cannot read back from them itself)."""
    import polars as pl

    return dtype in (pl.Date, pl.Time) or isinstance(dtype, (pl.Datetime, pl.Decimal))


def _load_schema(raw: Any) -> dict[str, Any] | None:
    """The stored schema: the bytes of :func:`schema_bytes`, or the JSON of type names that
    version 0.2 wrote ({"column": "Int64", ...})."""
    if not raw:
        return None
    if raw[:1] in (b"{", "{"):
        return {name: _legacy_dtype(text) for name, text in json.loads(raw).items()}
    return dict(schema_from_bytes(raw))


def _legacy_dtype(text: str) -> Any:
    """A type name as version 0.2 kept it (``Int64``, ``Datetime(time_unit='us', ...)``),
    read by the one vocabulary of :mod:`data_pipeline.core.types`; text when it names none."""
    import polars as pl

    try:
        return parse_type(text).polars()
    except ConfigError:
        return pl.String


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
