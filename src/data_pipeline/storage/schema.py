"""SchemaField, Schema and SchemaRegistry: declared table schemas, validation and versioning.

A :class:`Schema` lists typed fields, a primary key and a description; it round-trips through
JSON and checks a frame of any engine with :meth:`Schema.validate`, which returns every
violation (missing columns, wrong types, nulls in non-nullable fields, duplicate keys) instead of
stopping at the first. A :class:`SchemaRegistry` keeps numbered versions of each schema, checks
the compatibility mode (BACKWARD, FORWARD, FULL or NONE) when a new version is registered, and
persists itself to a JSON file written atomically.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from data_pipeline.core.engines import to_polars
from data_pipeline.core.errors import (
    ConfigError,
    NotFoundError,
    StorageSchemaError,
    UnsupportedOperationError,
)
from data_pipeline.core.types import DataType, from_polars, parse_type
from data_pipeline.storage._common import reject_unknown_options

if TYPE_CHECKING:
    import polars as pl

__all__ = [
    "COMPATIBILITY_MODES",
    "FIELD_TYPES",
    "Schema",
    "SchemaField",
    "SchemaRegistry",
    "SchemaViolation",
]

#: the logical types of fields (any name :func:`data_pipeline.core.types.parse_type` reads is
#: accepted: ``integer``, ``text``, ``decimal(10,2)``, ``datetime[us, UTC]``, ...)
FIELD_TYPES: tuple[str, ...] = (
    "string",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float32",
    "float64",
    "decimal",
    "bool",
    "date",
    "datetime",
    "time",
    "duration",
    "binary",
    "category",
)

CompatibilityMode = Literal["BACKWARD", "FORWARD", "FULL", "NONE"]
COMPATIBILITY_MODES: tuple[str, ...] = ("BACKWARD", "FORWARD", "FULL", "NONE")


def _normalise_type(value: str) -> str:
    """The canonical name of a field type (one vocabulary: :mod:`data_pipeline.core.types`)."""
    try:
        return parse_type(value).name
    except ConfigError as exc:
        raise ConfigError(
            f"unknown field type {value!r}", component="SchemaField", hint=exc.hint
        ) from None


def type_of(dtype: Any) -> str:
    """The schema type name of a polars dtype (its own name when it has no logical type)."""
    try:
        return from_polars(dtype).name
    except UnsupportedOperationError:
        return str(dtype).lower()


class SchemaField:
    """Class representing a field in a schema: name, type, nullability, description.

    Raises:
        ConfigError: an empty name, or an unknown type name.

    Example:
        >>> SchemaField("order_id", "int64", nullable=False).to_dict()
        {'name': 'order_id', 'type': 'int64', 'nullable': False}
    """

    def __init__(
        self,
        name: str,
        type: str = "string",
        nullable: bool = True,
        description: str | None = None,
        default: Any = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ConfigError(
                f"a field needs a non-empty name, got {name!r}", component="SchemaField"
            )
        self.name = name
        self.type = _normalise_type(type)
        self.nullable = bool(nullable)
        self.description = description
        self.default = default

    @property
    def data_type(self) -> DataType:
        """The logical type of this field."""
        return parse_type(self.type)

    @property
    def dtype(self) -> Any:
        """The polars dtype of this field."""
        return self.data_type.polars()

    def accepts(self, type_name: str) -> bool:
        """True when a column of ``type_name`` fits this field (same type or a widening).

        A field declared ``datetime`` (no time zone) takes datetimes of any zone, as it always
        did; a field with a zone takes only that zone.
        """
        try:
            given = parse_type(type_name)
        except ConfigError:
            return False
        mine = self.data_type
        if mine.kind == "datetime" and given.kind == "datetime" and mine.time_zone is None:
            return True
        return given.widens_to(mine)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type, "nullable": self.nullable}
        if self.description:
            out["description"] = self.description
        if self.default is not None:
            out["default"] = self.default
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SchemaField:
        reject_unknown_options(
            data,
            ("name", "type", "nullable", "description", "default"),
            what="field key",
            hint="a field has name, type, nullable, description, default",
            component="SchemaField",
        )
        return cls(**dict(data))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SchemaField) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash((self.name, self.type, self.nullable))

    def __repr__(self) -> str:
        null = "" if self.nullable else ", nullable=False"
        return f"SchemaField({self.name!r}, {self.type!r}{null})"


@dataclass
class SchemaViolation:
    """One way a frame does not fit a schema."""

    kind: Literal[
        "missing_column", "unexpected_column", "wrong_type", "null_value", "duplicate_key"
    ]
    column: str | None
    message: str
    count: int | None = None
    sample: Any = None

    def __str__(self) -> str:
        return self.message


class Schema:
    """Class representing a schema for a data storage system: fields, primary key, description.

    Raises:
        ConfigError: a repeated field, a primary key column that is not a field, or invalid JSON or
            mapping in ``from_json`` / ``from_dict``.
        NotFoundError: ``field()`` of an unknown name.
        StorageSchemaError: ``check()`` of data that does not fit (every violation is listed).

    Example:
        >>> schema = Schema("orders", [
        ...     SchemaField("order_id", "int64", nullable=False),
        ...     SchemaField("amount", "float64"),
        ... ], primary_key=["order_id"], description="one row per order")
        >>> Schema.from_json(schema.to_json()) == schema
        True
    """

    def __init__(
        self,
        name: str,
        fields: Iterable[SchemaField | Mapping[str, Any]],
        primary_key: Sequence[str] | str | None = None,
        description: str | None = None,
        version: int | None = None,
    ) -> None:
        self.name = name
        self.fields = [
            f if isinstance(f, SchemaField) else SchemaField.from_dict(f) for f in fields
        ]
        names = [f.name for f in self.fields]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ConfigError(
                f"schema {name!r} repeats field(s) {', '.join(map(repr, dup))}", component="Schema"
            )
        self.primary_key = (
            [primary_key] if isinstance(primary_key, str) else list(primary_key or [])
        )
        unknown = [k for k in self.primary_key if k not in names]
        if unknown:
            raise ConfigError(
                f"primary key column(s) {', '.join(map(repr, unknown))} are not fields of schema {name!r}",
                component="Schema",
                hint=f"fields: {', '.join(map(repr, names))}",
            )
        self.description = description
        self.version = version

    # -- access --------------------------------------------------------------------------

    @property
    def field_names(self) -> list[str]:
        return [f.name for f in self.fields]

    def field(self, name: str) -> SchemaField:
        for f in self.fields:
            if f.name == name:
                return f
        raise NotFoundError(
            f"schema {self.name!r} has no field {name!r}",
            component="Schema",
            hint=f"fields: {', '.join(map(repr, self.field_names))}",
        )

    def polars_schema(self) -> dict[str, Any]:
        return {f.name: f.dtype for f in self.fields}

    # -- serialisation -------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "fields": [f.to_dict() for f in self.fields]}
        if self.primary_key:
            out["primary_key"] = list(self.primary_key)
        if self.description:
            out["description"] = self.description
        if self.version is not None:
            out["version"] = self.version
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Schema:
        reject_unknown_options(
            data,
            ("name", "fields", "primary_key", "description", "version"),
            what="schema key",
            hint="a schema has name, fields, primary_key, description, version",
            component="Schema",
        )
        if "name" not in data or "fields" not in data:
            raise ConfigError("a schema needs 'name' and 'fields'", component="Schema")
        return cls(
            data["name"],
            data["fields"],
            primary_key=data.get("primary_key"),
            description=data.get("description"),
            version=data.get("version"),
        )

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_json(cls, text: str) -> Schema:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"invalid schema JSON: {exc}", component="Schema") from None
        return cls.from_dict(data)

    @classmethod
    def from_frame(
        cls, name: str, data: Any, primary_key: Sequence[str] | str | None = None
    ) -> Schema:
        """The schema of a frame of any engine (all fields nullable except the primary key)."""
        import narwhals as nw

        frame = nw.from_native(data) if not isinstance(data, (nw.DataFrame, nw.LazyFrame)) else data
        schema = to_polars(frame.head(0)).schema
        key = [primary_key] if isinstance(primary_key, str) else list(primary_key or [])
        return cls(
            name,
            [SchemaField(n, type_of(d), nullable=n not in key) for n, d in schema.items()],
            primary_key=key,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Schema):
            return False
        mine, theirs = self.to_dict(), other.to_dict()
        mine.pop("version", None)
        theirs.pop("version", None)
        return mine == theirs

    def __hash__(self) -> int:
        return hash(self.to_json(sort_keys=True))

    def __repr__(self) -> str:
        return f"Schema({self.name!r}, fields={self.fields!r}, primary_key={self.primary_key!r})"

    # -- validation ----------------------------------------------------------------------

    def validate(self, data: Any, *, allow_extra: bool = True) -> list[SchemaViolation]:
        """Every violation of this schema by a frame of any engine (an empty list: it fits)."""
        import polars as pl

        frame = to_polars(data)
        out: list[SchemaViolation] = []
        present = frame.schema
        for f in self.fields:
            if f.name not in present:
                out.append(
                    SchemaViolation(
                        "missing_column",
                        f.name,
                        f"column {f.name!r} ({f.type}) is missing from the data",
                    )
                )
                continue
            actual = type_of(present[f.name])
            if not f.accepts(actual) and present[f.name] != pl.Null:
                out.append(
                    SchemaViolation(
                        "wrong_type",
                        f.name,
                        f"column {f.name!r} has type {actual}, the schema says {f.type}",
                    )
                )
        if not allow_extra:
            for name in frame.columns:
                if name not in self.field_names:
                    out.append(
                        SchemaViolation(
                            "unexpected_column",
                            name,
                            f"column {name!r} is not in schema {self.name!r}",
                        )
                    )
        checks = [f.name for f in self.fields if not f.nullable and f.name in present]
        if checks:
            nulls = frame.select(pl.col(c).null_count() for c in checks).row(0)
            for name, count in zip(checks, nulls, strict=True):
                if count:
                    first = frame.with_row_index("__row").filter(pl.col(name).is_null())["__row"][0]
                    out.append(
                        SchemaViolation(
                            "null_value",
                            name,
                            f"column {name!r} is not nullable but has {count} null(s), first at row {first}",
                            count=int(count),
                            sample=int(first),
                        )
                    )
        key = [k for k in self.primary_key if k in present]
        if key and len(key) == len(self.primary_key):
            dup = frame.group_by(key).len().filter(pl.col("len") > 1)
            if dup.height:
                sample = dup.sort(key).row(0, named=True)
                sample.pop("len")
                out.append(
                    SchemaViolation(
                        "duplicate_key",
                        ", ".join(key),
                        f"primary key ({', '.join(key)}) has {dup.height} duplicated value(s), e.g. {sample}",
                        count=int(dup.height),
                        sample=sample,
                    )
                )
        return out

    def check(self, data: Any, *, component: str | None = None) -> None:
        """Raise :class:`StorageSchemaError` listing every violation, if there are any."""
        problems = self.validate(data)
        if problems:
            raise StorageSchemaError(
                f"data does not fit schema {self.name!r}: " + "; ".join(map(str, problems)),
                component=component,
                hint="fix the data, or register a new version of the schema",
            )

    def cast(self, data: Any) -> pl.DataFrame:
        """The frame as polars with every schema field cast to its declared type, in schema order."""
        import polars as pl

        frame = to_polars(data)
        exprs = []
        for f in self.fields:
            if f.name in frame.columns:
                exprs.append(pl.col(f.name).cast(f.dtype))
            else:
                exprs.append(pl.lit(f.default, dtype=f.dtype).alias(f.name))
        extra = [c for c in frame.columns if c not in self.field_names]
        return frame.select([*exprs, *extra])

    # -- compatibility -------------------------------------------------------------------

    def backward_problems(self, old: Schema) -> list[str]:
        """Why this (new) schema cannot read data written with ``old`` (empty: it can)."""
        problems = []
        old_fields = {f.name: f for f in old.fields}
        for f in self.fields:
            before = old_fields.get(f.name)
            if before is None:
                if not f.nullable and f.default is None:
                    problems.append(f"new field {f.name!r} is required and has no default")
            elif not f.accepts(before.type):
                problems.append(
                    f"field {f.name!r} changed type {before.type} -> {f.type}, which is not a widening"
                )
            elif before.nullable and not f.nullable:
                problems.append(f"field {f.name!r} became non-nullable")
        return problems

    def forward_problems(self, old: Schema) -> list[str]:
        """Why ``old`` cannot read data written with this (new) schema (empty: it can)."""
        return old.backward_problems(self)

    def compatibility_problems(self, old: Schema, mode: str) -> list[str]:
        mode = mode.upper()
        if mode == "NONE":
            return []
        problems = []
        if mode in ("BACKWARD", "FULL"):
            problems += [f"backward: {p}" for p in self.backward_problems(old)]
        if mode in ("FORWARD", "FULL"):
            problems += [f"forward: {p}" for p in self.forward_problems(old)]
        return problems


class SchemaRegistry:
    """Registry for schemas: numbered versions, compatibility checks, persisted to a JSON file.

    Instead of ``path``, ``storage=`` (a RelationalDBStorage or DataWarehouseStorage) keeps the
    versions in its table ``table`` (default ``schema_registry``), one row per version.

    ``register`` checks a new version against the latest one under the registry's (or the
    call's) compatibility mode and raises :class:`StorageSchemaError` listing every problem.

    Raises:
        ConfigError: an unknown compatibility mode, both ``path`` and ``storage``, or ``register()``
            of something that is not a Schema.
        StorageSchemaError: ``register()`` of a version incompatible with the latest one (every
            problem is listed), or a registry file that cannot be read.
        NotFoundError: ``get()`` of an unknown schema or version.

    Example:
        >>> registry = SchemaRegistry(compatibility="BACKWARD")   # or path="schemas.json"
        >>> registry.register(Schema("orders", [SchemaField("id", "int64", nullable=False)]))
        1
        >>> registry.get("orders").version
        1
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        compatibility: str = "BACKWARD",
        *,
        storage: Any = None,
        table: str = "schema_registry",
    ) -> None:
        mode = str(compatibility).upper()
        if mode not in COMPATIBILITY_MODES:
            raise ConfigError(
                f"unknown compatibility {compatibility!r}",
                component="SchemaRegistry",
                hint=f"use one of {', '.join(COMPATIBILITY_MODES)}",
            )
        self.compatibility = mode
        self.path = os.fspath(path) if path is not None else None
        self._lock = threading.Lock()
        self._schemas: dict[str, list[Schema]] = {}
        self._modes: dict[str, str] = {}
        self.storage = storage
        self.table = table
        if path is not None and storage is not None:
            raise ConfigError("pass either path= or storage=, not both", component="SchemaRegistry")
        if self.path and os.path.exists(self.path):
            self._load()
        elif storage is not None:
            self._load_storage()

    def _load_storage(self) -> None:
        """Read every version from the storage system's table (absent table: empty registry)."""
        from data_pipeline.core.errors import InputNotFoundError

        try:
            rows = self.storage.retrieve(self.table)
        except InputNotFoundError:
            return
        for row in rows.sort(["name", "version"]).iter_rows(named=True):
            self._schemas.setdefault(row["name"], []).append(Schema.from_json(row["schema"]))
            if row.get("compatibility"):
                self._modes[row["name"]] = row["compatibility"]

    # -- persistence ----------------------------------------------------------------------

    def _load(self) -> None:
        assert self.path is not None
        try:
            with open(self.path, encoding="utf-8") as handle:
                data = json.load(handle)
        except (OSError, json.JSONDecodeError) as exc:
            raise StorageSchemaError(
                f"cannot read schema registry {self.path!r}: {exc}",
                component="SchemaRegistry",
                hint="fix or remove the file",
            ) from None
        self._modes = dict(data.get("compatibility_overrides", {}))
        for name, versions in data.get("schemas", {}).items():
            self._schemas[name] = [Schema.from_dict(v) for v in versions]

    def _save_storage(self, schema: Schema, mode: str | None) -> None:
        """Append one version row (name, version, schema JSON, compatibility) to the table."""
        import polars as pl

        row = pl.DataFrame(
            {
                "name": [schema.name],
                "version": [int(schema.version or 0)],
                "schema": [schema.to_json()],
                "compatibility": [mode or ""],
            }
        )
        try:
            self.storage.store(row, self.table, if_exists="append")
        except BaseException:
            self._schemas[schema.name].pop()  # keep memory and table in step
            raise

    def _save(self) -> None:
        if not self.path:
            return
        data = {
            "compatibility": self.compatibility,
            "compatibility_overrides": self._modes,
            "schemas": {n: [s.to_dict() for s in vs] for n, vs in self._schemas.items()},
        }
        parent = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(parent, exist_ok=True)
        tmp = os.path.join(parent, f".{os.path.basename(self.path)}.tmp-{uuid.uuid4().hex}")
        try:
            with open(tmp, "w", encoding="utf-8") as handle:
                json.dump(data, handle, indent=2)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.remove(tmp)
            raise

    # -- API --------------------------------------------------------------------------------

    def register(self, schema: Schema, *, compatibility: str | None = None) -> int:
        """Add ``schema`` as the next version of its name; returns the version number.

        Registering a schema equal to the latest version returns that version unchanged.
        """
        if not isinstance(schema, Schema):
            raise ConfigError(
                f"register expects a Schema, got {type(schema).__name__}",
                component="SchemaRegistry",
            )
        with self._lock:
            versions = self._schemas.setdefault(schema.name, [])
            mode = (compatibility or self._modes.get(schema.name) or self.compatibility).upper()
            if mode not in COMPATIBILITY_MODES:
                raise ConfigError(
                    f"unknown compatibility {compatibility!r}",
                    component="SchemaRegistry",
                    hint=f"use one of {', '.join(COMPATIBILITY_MODES)}",
                )
            if versions:
                latest = versions[-1]
                if latest == schema:
                    return int(latest.version or len(versions))
                problems = schema.compatibility_problems(latest, mode)
                if problems:
                    raise StorageSchemaError(
                        f"schema {schema.name!r} is not {mode} compatible with version "
                        f"{latest.version}: " + "; ".join(problems),
                        component="SchemaRegistry",
                        hint="change the schema, or register with compatibility='NONE'",
                    )
            stored = Schema.from_dict({**schema.to_dict(), "version": len(versions) + 1})
            versions.append(stored)
            if compatibility:
                self._modes[schema.name] = mode
            self._save()
            if self.storage is not None:
                self._save_storage(stored, compatibility and mode)
            return len(versions)

    def get(self, name: str, version: int | None = None) -> Schema:
        """The latest version of ``name``, or the given ``version``."""
        versions = self._schemas.get(name)
        if not versions:
            known = sorted(self._schemas)
            raise NotFoundError(
                f"no schema named {name!r}",
                component="SchemaRegistry",
                hint=f"registered: {', '.join(map(repr, known))}"
                if known
                else "no schema is registered yet",
            )
        if version is None:
            return versions[-1]
        if not 1 <= version <= len(versions):
            raise NotFoundError(
                f"schema {name!r} has no version {version}",
                component="SchemaRegistry",
                hint=f"versions: {', '.join(str(v.version) for v in versions)}",
            )
        return versions[version - 1]

    def latest(self, name: str) -> Schema:
        return self.get(name)

    def versions(self, name: str) -> list[int]:
        return [int(s.version or i + 1) for i, s in enumerate(self._schemas.get(name, []))]

    def list_schemas(self) -> list[str]:
        return sorted(self._schemas)

    def check_compatibility(self, schema: Schema, *, compatibility: str | None = None) -> list[str]:
        """The problems :meth:`register` would report, without registering."""
        versions = self._schemas.get(schema.name)
        if not versions:
            return []
        mode = (compatibility or self._modes.get(schema.name) or self.compatibility).upper()
        return schema.compatibility_problems(versions[-1], mode)

    def __contains__(self, name: object) -> bool:
        return name in self._schemas

    def __len__(self) -> int:
        return len(self._schemas)
