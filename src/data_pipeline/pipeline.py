"""A whole pipeline from one YAML file: sources, transformations, storage, processing, dashboards.

The file uses the same class names and config keys as the Python API::

    name: sales
    engine: polars            # polars (lazy) | pandas | duckdb | arrow | spark
    sources:
      sales:
        type: FileSystemSource
        config: {path: data/sales.csv}
    transformations:
      clean:                   # a list of steps; input: the only source
        - type: MissingValueHandler
          config: {strategy: fill, columns: [age, income, education]}
    storage:
      lake:
        type: FileSystemStorage
        config: {base_path: output/lake}
        store:
          - {data: clean, table: sales_clean, if_exists: replace}
    processing:
      daily:
        input: clean           # the mapping form names its input
        steps:
          - type: DataAggregator
            config: {group_by: [date], aggregations: {revenue: sum}}
    dashboards:
      sales:
        title: Sales
        path: output/sales.html
        visualizations:
          - {type: LineChart, name: revenue, data: daily, config: {x: date, y: revenue}}

Rules:

* ``${NAME}`` and ``${NAME:-default}`` are replaced from the environment before validation.
* Everything is validated before anything runs; an error names the YAML path
  (``transformations.clean[1].config.strategy``) and the allowed values.
* A transformation or processing pipeline is a list of steps (its input is the only source, or the
  only transformation for processing) or a mapping ``{input: NAME, steps: [...]}``.
* Relative paths in the config keys ``path``, ``base_path``, ``database`` (only where it names a
  local file: SQLite, DuckDB, the embedded document store; never a server's database name),
  ``state_path`` (also under ``incremental``), ``reject_path`` and ``log_path`` are resolved
  against the YAML file's folder; so are the default local files (incremental state, rejected
  rows, local logs: ``.data_pipeline/...`` beside the YAML file, whatever the working directory).
* Before anything runs, the whole file is checked and every problem is reported at once: the
  shape, each component's config, names, and column names through the steps (from the sources'
  columns where they are cheap to know: local file headers and schemas).
* A ``store`` entry runs as soon as its data exists: after transformations for sources and
  transformations, after processing for processing outputs.
* A DataJoiner's ``right_table`` or a DataEnricher lookup's ``reference`` may name a data set of
  the file (made before the processing pipeline runs).
* :func:`follow_pipeline` (``data-pipeline run FILE --follow``) runs a file with a
  StreamingSource continuously, one micro-batch at a time.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from data_pipeline._follow import BatchSummary, FollowRun, follow_pipeline, validate_follow
from data_pipeline.core.config import (
    ConfigModel,
    format_validation_error,
    interpolate_env,
    unknown_key_hint,
)
from data_pipeline.core.errors import ConfigError, DataPipelineError, InputNotFoundError
from data_pipeline.core.frames import row_count, to_narwhals
from data_pipeline.core.log import get_logger

__all__ = [
    "BatchSummary",
    "FollowRun",
    "PipelineFile",
    "PipelineRun",
    "StageResult",
    "follow_pipeline",
    "load_pipeline",
    "render_dashboards",
    "run_pipeline",
    "validate_follow",
]

logger = get_logger(__name__)

Engine = Literal["polars", "pandas", "duckdb", "arrow", "spark"]
STAGES = ("ingestion", "transformation", "storage", "processing", "visualization")
BASE_CLASSES = frozenset(
    {
        "DataSource",
        "Transformer",
        "DataFrameTransformer",
        "StorageSystem",
        "DataProcessor",
        "Visualization",
        "Chart",
    }
)
PATH_KEYS = ("path", "base_path", "database", "state_path", "reject_path", "log_path")


# -- the file's shape -----------------------------------------------------------------------


class ComponentSpec(ConfigModel):
    type: str
    """The class name of the component in its layer (``FileSystemSource``,
    ``MissingValueHandler``, ``DataWarehouseStorage``, ``LineChart``, ...); an unknown name fails
    with the allowed ones."""
    name: str | None = None
    """The component's name in logs, metadata and errors. Steps default to
    ``<pipeline>_<index>_<type>``, visualizations to ``<type>_<index>``. Sources and storage
    systems are named by their key in the file: a ``name`` other than the key is an error."""
    config: dict[str, Any] = Field(default_factory=dict)
    """The component's config, exactly the keys of its class (see the layer references); it
    is validated before anything runs. Relative ``path``, ``base_path``, ``state_path``,
    ``reject_path``, ``log_path`` and a file ``database`` are read from the YAML file's folder."""


class StoreSpec(ConfigModel):
    data: str
    """The data set to store: the name of a source, transformation or processing pipeline
    of the file. It is stored as soon as it exists."""
    table: str | None = None
    """The table (collection, key prefix or file name) to write; absent: the data set's
    name."""
    if_exists: str | None = None
    """``fail``, ``replace``, ``append`` or ``upsert`` (as the storage system supports);
    absent: the storage system's ``default_if_exists``."""


class StorageSpec(ComponentSpec):
    store: list[StoreSpec] = Field(default_factory=list)
    """What this storage system stores: a list of ``{data, table, if_exists}`` entries (keys
    below); empty: nothing (e.g. a system that only keeps the checkpoint or the rejects)."""


class StepsSpec(ConfigModel):
    input: str | None = None
    """The data set the steps run on (a source, or a transformation for processing).
    Absent: the only source (transformations); the only transformation, or the only source
    when the file has no transformation (processing). With several candidates it is required."""
    steps: list[ComponentSpec]
    """The steps, run in order, each ``{type, name, config}`` (keys above); the list form
    ``clean: [...]`` of a transformation or processing pipeline is this list alone."""
    stream: dict[str, Any] | None = None
    """With ``--follow``: the StreamProcessor's keys (``emit``, ``allowed_lateness``, ...)."""


class VisualizationSpec(ComponentSpec):
    data: str | None = None
    """The data set the visualization draws (a source, transformation or processing
    output); absent: the only output of the last stage the file has (processing, else
    transformations, else sources). With several candidates it is required."""
    span: int = Field(default=1, ge=1, le=12)
    """Grid columns the visualization spans (as ``Dashboard.add_visualization(span=...)``)."""
    position: int | None = None
    """Insert at this position instead of the end (as ``add_visualization(position=...)``)."""


class DashboardSpec(ConfigModel):
    title: str | None = None
    """The dashboard's title (the Dashboard's ``title`` key). Given here and inside ``config``
    with different values, it is an error."""
    description: str | None = None
    """Text shown under the title (the Dashboard's ``description`` key). Given here and inside
    ``config`` with different values, it is an error."""
    path: str | None = None
    """The HTML file ``data-pipeline run`` and ``data-pipeline dashboard`` write (relative to
    the YAML file's folder); absent: ``<dashboard name>.html`` there."""
    config: dict[str, Any] = Field(default_factory=dict)
    """Further keys of the Dashboard's own config (layout, theme, ...: see the visualization
    reference). Visualizations declared in its ``visualizations`` draw the data set their
    ``data`` names, as those of the entry's ``visualizations`` do (same default, same checks),
    and come first on the page."""
    visualizations: list[VisualizationSpec] = Field(default_factory=list)
    """The charts, tables and KPIs, in order: ``{type, name, data, config, span, position}``
    each (keys below)."""


class SparkSpec(ConfigModel):
    """``spark:`` settings used when ``engine: spark`` (the session is shared by the process)."""

    master: str | None = None
    """``local[4]``, ``spark://host:7077``, ``yarn``, ...; unset: ``spark.master`` or local."""
    app_name: str = "data-pipeline"
    """The Spark application name (shown in the Spark UI); applies only when this process
    creates the session."""
    conf: dict[str, str | int | float | bool] = Field(default_factory=dict)
    """Spark settings, e.g. ``spark.sql.shuffle.partitions: 64``."""
    max_driver_bytes: int | None = Field(default=256 * 1024 * 1024, ge=0)
    """Frames moved between the driver and Spark above this size (a source read on the driver,
    a frame collected for a storage that cannot take it from the executors) warn;
    null: no check."""
    on_large: Literal["warn", "refuse"] = "warn"
    """``refuse``: such a frame is an error naming it and what to change, instead of a warning."""


class CheckpointSpec(ConfigModel):
    """``checkpoint:`` of a followed pipeline (see docs/pipelines.md)."""

    storage: str | None = None
    """The storage system whose transaction holds the checkpoint (default: the one that stores
    the streaming data sets)."""
    name: str | None = None
    """The checkpoint's name (default: the pipeline's name)."""
    path: str | None = None
    """A folder for a checkpoint file instead (the stores are then at least once)."""


class RejectsSpec(ConfigModel):
    """``rejects:`` of a followed pipeline: where rejected rows go, with the reason."""

    storage: str | None = None
    """The storage system (a key under ``storage:``) that receives the rejected rows; absent:
    the one that keeps the checkpoint, else a CSV file ``.data_pipeline/rejects/<name>.csv``."""
    table: str | None = None
    """The table the rejected rows go to in that storage system (default ``_dp_rejects``)."""
    path: str | None = None
    """A CSV file instead of a table."""


class PipelineFile(ConfigModel):
    """The validated content of a pipeline YAML file."""

    name: str = "pipeline"
    """The pipeline's name: shown by the CLI, and the default name of its checkpoint and of
    its rejects CSV file (so two pipelines sharing a storage need different names)."""
    description: str | None = None
    """Free text for the reader of the file; not used when running."""
    engine: Engine = "polars"
    """The frame type data moves in between the stages: ``polars`` (lazy frames),
    ``pandas``, ``duckdb`` (relations), ``arrow`` or ``spark`` (see ``spark``). Sources' output
    is converted to it; every step then runs on that engine."""
    spark: SparkSpec | None = None
    """With ``engine: spark`` only: the Spark session's settings (keys below)."""
    sources: dict[str, ComponentSpec] = Field(default_factory=dict)
    """Name -> a source ``{type, config}``; the name is the data set it makes."""
    transformations: dict[str, StepsSpec] = Field(default_factory=dict)
    """Name -> a transformation pipeline: a list of steps, or ``{input, steps}``; the name is
    the data set it makes. Run after every source is read."""
    storage: dict[str, StorageSpec] = Field(default_factory=dict)
    """Name -> a storage system ``{type, config, store: [...]}``; each ``store`` entry runs
    as soon as its data set exists."""
    processing: dict[str, StepsSpec] = Field(default_factory=dict)
    """Name -> a processing pipeline: a list of steps, or ``{input, steps, stream}``; the
    name is the data set it makes. Run after the transformations and their stores."""
    dashboards: dict[str, DashboardSpec] = Field(default_factory=dict)
    """Name -> a dashboard ``{title, path, visualizations: [...]}``, rendered last."""
    checkpoint: CheckpointSpec | bool | None = None
    """With ``--follow``: where the checkpoint is kept (``false``: none, at least once)."""
    rejects: RejectsSpec | None = None
    """With ``--follow``: where rejected rows go (default: the table ``_dp_rejects`` beside the
    checkpoint)."""

    @model_validator(mode="after")
    def _spark_needs_engine(self) -> PipelineFile:
        if self.spark is not None and self.engine != "spark":
            raise ValueError(
                f"a spark: section is given but engine is {self.engine!r}; set engine: spark"
            )
        return self

    @field_validator("transformations", "processing", mode="before")
    @classmethod
    def _list_form(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: {"steps": v} if isinstance(v, list) else v for k, v in value.items()}
        return value


# -- loading and validating -----------------------------------------------------------------


@dataclass
class LoadedPipeline:
    """A validated pipeline file with every component built (nothing has run yet)."""

    spec: PipelineFile
    base_dir: Path
    sources: dict[str, Any]
    transformations: dict[str, tuple[str, Any]]  # name -> (input, TransformationPipeline)
    storage: dict[str, tuple[Any, list[StoreSpec]]]
    processing: dict[str, tuple[str, Any]]
    dashboards: dict[str, tuple[Any, DashboardSpec, dict[str, str]]]  # viz name -> data name
    source_file: Path | None = None


def _layer_classes(layer: str, base: type) -> dict[str, type]:
    import importlib

    module = importlib.import_module(f"data_pipeline.{layer}")
    classes = {}
    for name in getattr(module, "__all__", []):
        obj = getattr(module, name)
        if isinstance(obj, type) and issubclass(obj, base) and name not in BASE_CLASSES:
            classes[name] = obj
    return classes


def _invalid(path: str, message: str, hint: str | None = None) -> ConfigError:
    return ConfigError(f"{path}: {message}", component="pipeline file", hint=hint)


# server databases: ``database`` is a name on the server, not a file beside the YAML file
_SERVER_DB_TYPES = frozenset(
    {"postgresql", "postgres", "mysql", "mariadb", "mongodb", "mongo", "redis", "other"}
)


def _names_local_file(key: str, config: Mapping[str, Any]) -> bool:
    """Whether ``config[key]`` names a local file or folder (``database`` only for file
    databases: SQLite, DuckDB, the embedded document store)."""
    if key != "database":
        return True
    if config.get("url") or config.get("host"):
        return False
    kind = str(config.get("db_type") or config.get("engine") or "").strip().lower()
    return kind not in _SERVER_DB_TYPES


def _resolve_paths(config: dict[str, Any], base_dir: Path) -> dict[str, Any]:
    out = dict(config)
    for key in PATH_KEYS:
        value = out.get(key)
        if (
            isinstance(value, str)
            and value
            and "://" not in value
            and value != ":memory:"
            and _names_local_file(key, out)
        ):
            p = Path(value).expanduser()
            if not p.is_absolute():
                out[key] = str(base_dir / p)
    incremental = out.get("incremental")
    if isinstance(incremental, Mapping):  # REST and database sources: incremental.state_path
        out["incremental"] = _resolve_paths(dict(incremental), base_dir)
    return out


def _build(cls: type, name: str, config: dict[str, Any], path: str, base_dir: Path) -> Any:
    from data_pipeline.core.config import validate_config

    config = _resolve_paths(config, base_dir)
    model = getattr(cls, "config_model", None)
    if model is not None:
        validate_config(
            model, config, component=f"{cls.__name__} {name!r}", prefix=f"{path}.config"
        )
    return cls(name=name, config=config)


def _component_class(classes: dict[str, type], type_name: str, path: str, what: str) -> type:
    if type_name not in classes:
        import difflib

        close = difflib.get_close_matches(type_name, list(classes), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise _invalid(
            f"{path}.type",
            f"unknown {what} type {type_name!r}",
            hint + f"allowed: {', '.join(sorted(classes))}",
        )
    return classes[type_name]


def load_pipeline(
    source: str | Path | Mapping[str, Any], *, environ: Mapping[str, str] | None = None
) -> LoadedPipeline:
    """Read, interpolate and validate a pipeline file, and build every component.

    Raises :class:`ConfigError` naming the YAML path of the first problem found.
    """
    import yaml

    source_file: Path | None = None
    if isinstance(source, Mapping):
        raw: Any = dict(source)
        base_dir = Path.cwd()
    else:
        source_file = Path(source)
        if not source_file.is_file():
            raise InputNotFoundError(
                f"pipeline file {str(source_file)!r} does not exist",
                component="pipeline file",
                hint="check the path passed to `data-pipeline run`",
            )
        base_dir = source_file.resolve().parent
        try:
            raw = yaml.safe_load(source_file.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise ConfigError(
                f"{source_file} is not valid YAML{where}: {getattr(exc, 'problem', exc)}",
                component="pipeline file",
            ) from None
    if not isinstance(raw, Mapping):
        raise _invalid(
            "(top level)", "a pipeline file must be a mapping with sources, transformations, ..."
        )
    raw = interpolate_env(raw, environ=environ)
    try:
        spec = PipelineFile.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(
            f"invalid pipeline file: {format_validation_error(exc)}",
            component="pipeline file",
            hint=unknown_key_hint(PipelineFile, exc)
            or f"top-level keys: {', '.join(PipelineFile.model_fields)}",
        ) from None
    return _build_all(spec, base_dir, source_file)


class _Problems:
    """Every problem found in a file, reported together (not one per run of `validate`)."""

    def __init__(self) -> None:
        self.errors: list[ConfigError] = []

    def add(self, error: ConfigError) -> None:
        self.errors.append(error)

    def attempt(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)``, or None with its ConfigError kept."""
        try:
            return fn(*args, **kwargs)
        except ConfigError as exc:
            self.errors.append(exc)
            return None

    def raise_all(self) -> None:
        if not self.errors:
            return
        if len(self.errors) == 1:
            raise self.errors[0]
        lines = []
        for exc in self.errors:
            where = (
                f"{exc.component}: " if exc.component and exc.component != "pipeline file" else ""
            )
            lines.append(
                f"  - {where}{exc.detail}" + (f"\n    hint: {exc.hint}" if exc.hint else "")
            )
        raise ConfigError(
            f"{len(self.errors)} problems in the pipeline file:\n" + "\n".join(lines),
            component="pipeline file",
            hint="fix them all; nothing was run",
        )


def _build_all(spec: PipelineFile, base_dir: Path, source_file: Path | None) -> LoadedPipeline:
    from data_pipeline.ingestion import DataSource
    from data_pipeline.processing import DataProcessor, ProcessingPipeline
    from data_pipeline.storage import StorageSystem
    from data_pipeline.transformation import TransformationPipeline, Transformer
    from data_pipeline.visualization import Dashboard, Visualization

    problems = _Problems()
    datasets: dict[str, str] = {}  # name -> where it is declared

    def declare(name: str, where: str) -> None:
        if name in datasets:
            raise _invalid(
                where,
                f"the name {name!r} is already used by {datasets[name]}",
                "names of sources, transformations and processing pipelines must be unique",
            )
        datasets[name] = where

    def build(
        classes: dict[str, type], spec_: ComponentSpec, name: str, path: str, what: str
    ) -> Any:
        def make() -> Any:
            cls = _component_class(classes, spec_.type, path, what)
            return _build(cls, name, spec_.config, path, base_dir)

        return problems.attempt(make)

    def named_by_key(spec_: ComponentSpec, name: str, path: str) -> None:
        if spec_.name is not None and spec_.name != name:
            problems.add(
                _invalid(
                    f"{path}.name",
                    f"the name {spec_.name!r} differs from the key {name!r}",
                    f"{path.split('.')[0]} are named by their key: rename the key to "
                    f"{spec_.name!r} or remove name:",
                )
            )

    source_classes = _layer_classes("ingestion", DataSource)
    sources = {}
    for name, s in spec.sources.items():
        path = f"sources.{name}"
        named_by_key(s, name, path)
        problems.attempt(declare, name, path)
        built = build(source_classes, s, name, path, "source")
        if built is not None:
            sources[name] = built

    def steps_of(
        section: str,
        name: str,
        steps: StepsSpec,
        classes: dict[str, type],
        pipeline: Any,
        default_inputs: list[str],
    ) -> tuple[str, Any] | None:
        path = f"{section}.{name}"
        inp = steps.input
        if inp is None:
            if len(default_inputs) != 1:
                problems.add(
                    _invalid(
                        f"{path}.input",
                        "no input given and there is not exactly one candidate",
                        f"write {section}: {{{name}: {{input: NAME, steps: [...]}}}} with one "
                        "of: " + (", ".join(default_inputs) or "(none declared)"),
                    )
                )
            else:
                inp = default_inputs[0]
        elif inp not in datasets:
            problems.add(
                _invalid(f"{path}.input", f"unknown input {inp!r}", f"known: {', '.join(datasets)}")
            )
            inp = None
        complete = inp is not None
        for i, step in enumerate(steps.steps):
            step_path = f"{path}[{i}]"
            built = build(
                classes,
                step,
                step.name or f"{name}_{i}_{step.type}",
                step_path,
                section.rstrip("s") + " step",
            )
            if built is None:
                complete = False
                continue
            problems.attempt(_check_references, built, step_path, datasets)
            if problems.attempt(pipeline.add, built) is None:
                complete = False
        problems.attempt(declare, name, path)
        return (inp, pipeline) if complete and inp is not None else None

    transformer_classes = _layer_classes("transformation", Transformer)
    transformations = {}
    for name, ts in spec.transformations.items():
        made = steps_of(
            "transformations",
            name,
            ts,
            transformer_classes,
            TransformationPipeline(name),
            list(spec.sources),
        )
        if made is not None:
            transformations[name] = made
    processor_classes = _layer_classes("processing", DataProcessor)
    from data_pipeline.processing.stream import StreamProcessorConfig

    for name, psteps in spec.processing.items():
        if psteps.stream is not None:
            from data_pipeline.core.config import validate_config

            problems.attempt(
                validate_config,
                StreamProcessorConfig,
                psteps.stream,
                component="pipeline file",
                prefix=f"processing.{name}.stream",
            )
    processing = {}
    for name, ps in spec.processing.items():
        made = steps_of(
            "processing",
            name,
            ps,
            processor_classes,
            ProcessingPipeline(name),
            list(spec.transformations) or list(spec.sources),
        )
        if made is not None:
            processing[name] = made

    storage_classes = _layer_classes("storage", StorageSystem)
    storage = {}
    for name, st in spec.storage.items():
        path = f"storage.{name}"
        named_by_key(st, name, path)
        system = build(storage_classes, st, name, path, "storage")
        for i, entry in enumerate(st.store):
            if entry.data not in datasets:
                problems.add(
                    _invalid(
                        f"{path}.store[{i}].data",
                        f"unknown data {entry.data!r}",
                        f"known: {', '.join(datasets)}",
                    )
                )
        if system is not None:
            storage[name] = (system, st.store)

    viz_classes = _layer_classes("visualization", Visualization)
    last_output = list(spec.processing) or list(spec.transformations) or list(spec.sources)
    dashboards = {}

    def data_of(given: str | None, vpath: str) -> str | None:
        """The data set a visualization draws: ``given``, else the only last output."""
        if given is None:
            if len(last_output) != 1:
                problems.add(
                    _invalid(
                        f"{vpath}.data",
                        "no data given and there is not exactly one candidate",
                        f"known: {', '.join(datasets)}",
                    )
                )
                return None
            given = last_output[0]
        if given not in datasets:
            problems.add(
                _invalid(
                    f"{vpath}.data",
                    f"unknown data {given!r}",
                    f"known: {', '.join(datasets)}",
                )
            )
            return None
        return given

    for name, d in spec.dashboards.items():
        path = f"dashboards.{name}"
        dconfig = dict(d.config)
        for key, value in (("title", d.title), ("description", d.description)):
            if value is None:
                continue
            inner = dconfig.setdefault(key, value)
            if inner != value:
                problems.add(
                    _invalid(
                        f"{path}.{key}",
                        f"{key} {value!r} differs from {path}.config.{key} {inner!r}",
                        f"give the {key} once (at {path}.{key})",
                    )
                )
        dashboard = problems.attempt(_build, Dashboard, name, dconfig, path, base_dir)
        feeds: dict[str, str] = {}

        # visualizations declared inside the Dashboard's own config (built with it)
        for i, declared in enumerate(dashboard.visualizations if dashboard is not None else []):
            data_name = data_of(
                dashboard.data_names.get(declared.name), f"{path}.config.visualizations[{i}]"
            )
            if data_name is not None:
                feeds[declared.name] = data_name
        for i, v in enumerate(d.visualizations):
            vpath = f"{path}.visualizations[{i}]"
            vname = v.name or f"{v.type}_{i}"
            data_name = data_of(v.data, vpath)
            if data_name is None:
                continue
            viz = build(viz_classes, v, vname, vpath, "visualization")
            if viz is None or dashboard is None:
                continue
            problems.attempt(dashboard.add_visualization, viz, span=v.span, position=v.position)
            feeds[vname] = data_name
        if dashboard is not None:
            dashboards[name] = (dashboard, d, feeds)

    loaded = LoadedPipeline(
        spec, base_dir, sources, transformations, storage, processing, dashboards, source_file
    )
    if not problems.errors:  # column names through the file, from the sources' columns
        for error in _column_problems(loaded):
            problems.errors.append(error)
    problems.raise_all()
    return loaded


def _column_problems(loaded: LoadedPipeline) -> list[ConfigError]:
    """Column names through the whole file, from the sources' columns where they are cheap to
    know (local file headers and schemas; :meth:`peek_columns`). Every step's required columns
    must exist where it runs; every chart's columns in its data. Unknown columns (a remote or
    database source, a join with an unknown right side) end the check of that path silently."""
    import difflib

    from data_pipeline.processing import DataEnricher, DataJoiner

    known: dict[str, list[str] | None] = {}
    for name, source in loaded.sources.items():
        peek = getattr(source, "peek_columns", None)
        try:
            known[name] = list(peek()) if peek is not None else None
        except Exception:  # missing files, remote sources: the run reports those
            known[name] = None
    errors: list[ConfigError] = []

    def missing_error(where: str, what: str, missing: list[str], there: list[str]) -> ConfigError:
        guesses = [g for m in missing for g in difflib.get_close_matches(m, there, n=1)]
        guess = f"did you mean {', '.join(map(repr, guesses))}? " if guesses else ""
        return _invalid(
            where,
            f"{what} needs column(s) {', '.join(map(repr, missing))}, which will not exist there",
            f"{guess}columns there: {', '.join(map(repr, there)) or '(none)'}",
        )

    def walk(section: str, name: str, inp: str, pipe: Any) -> None:
        current = known.get(inp)
        if current is None:
            known[name] = None
            return
        for position, step in enumerate(pipe.steps):
            missing = [c for c in step.required_columns(current) if c not in current]
            if missing:
                errors.append(
                    missing_error(
                        f"{section}.{name}[{position}]",
                        f"{type(step).__name__} {step.name!r}",
                        missing,
                        current,
                    )
                )
            if isinstance(step, DataJoiner) and step.how not in ("semi", "anti"):
                right = known.get(step.settings.right_table or "")
                if right is None:
                    known[name] = None
                    return
                current = step._output_names(list(current), right)
                continue
            try:
                current = list(step.output_columns(current))
            except Exception:
                known[name] = None
                return
            if isinstance(step, DataEnricher):  # lookups bring their reference's columns
                for lookup in step.settings.lookups:
                    if lookup.columns:
                        continue
                    ref = known.get(lookup.reference)
                    if ref is None:
                        known[name] = None
                        return
                    current += [c for c in ref if c not in lookup.right_keys and c not in current]
        known[name] = current

    for name, (inp, tpipe) in loaded.transformations.items():
        walk("transformations", name, inp, tpipe)
    for name, (inp, ppipe) in loaded.processing.items():
        walk("processing", name, inp, ppipe)
    for dname, (dashboard, dspec, feeds) in loaded.dashboards.items():
        where = [  # (YAML path, visualization name): the Dashboard config's, then the file's
            *(
                (f"dashboards.{dname}.config.visualizations[{i}]", v.name)
                for i, v in enumerate(dashboard.settings.visualizations)
            ),
            *(
                (f"dashboards.{dname}.visualizations[{i}]", v.name or f"{v.type}_{i}")
                for i, v in enumerate(dspec.visualizations)
            ),
        ]
        for vpath, vname in where:
            columns = known.get(feeds.get(vname, ""))
            viz = next((x for x in _dashboard_items(loaded, dname) if x.name == vname), None)
            if columns is None or viz is None:
                continue
            literal = getattr(viz.settings, "color", None)
            missing = [c for c in viz.fields() if c not in columns and c != literal]
            if missing:
                errors.append(
                    missing_error(
                        f"{vpath}.config",
                        f"{type(viz).__name__} {vname!r}",
                        missing,
                        columns,
                    )
                )
    return errors


def _dashboard_items(loaded: LoadedPipeline, name: str) -> list[Any]:
    return list(loaded.dashboards[name][0].visualizations)


def _check_references(step: Any, path: str, datasets: Mapping[str, str]) -> None:
    """A join's ``right_table`` / a lookup's ``reference`` must name a data set declared before."""
    from data_pipeline.processing import DataEnricher, DataJoiner

    named: list[tuple[str, str]] = []
    if isinstance(step, DataJoiner) and step.settings.right_table is not None:
        named.append((f"{path}.config.right_table", step.settings.right_table))
    elif isinstance(step, DataEnricher):
        named += [
            (f"{path}.config.lookups[{i}].reference", lookup.reference)
            for i, lookup in enumerate(step.settings.lookups)
        ]
    for where, name in named:
        if name not in datasets:
            raise _invalid(
                where,
                f"unknown data set {name!r}",
                "name a source, transformation or processing pipeline declared before this one; "
                f"known: {', '.join(datasets) or '(none)'}",
            )


# -- running --------------------------------------------------------------------------------


@dataclass
class StageResult:
    stage: str
    seconds: float = 0.0
    rows: int | None = None
    items: list[str] = field(default_factory=list)


@dataclass
class PipelineRun:
    """What a run did: per-stage rows and seconds, the datasets it made, the files it wrote."""

    stages: dict[str, StageResult]
    data: dict[str, Any]
    outputs: dict[str, str]
    seconds: float


def _spark_session(spec: SparkSpec | None) -> Any:
    """The process's SparkSession, built with the file's ``spark:`` settings."""
    from data_pipeline.core.deps import import_optional

    sql = import_optional("pyspark.sql", extra="spark", feature="engine: spark")
    builder = sql.SparkSession.builder
    if spec is not None:
        builder = builder.appName(spec.app_name)
        if spec.master:
            builder = builder.master(spec.master)
        for key, value in spec.conf.items():
            builder = builder.config(
                key, str(value).lower() if isinstance(value, bool) else str(value)
            )
    session = builder.getOrCreate()
    if spec is not None:
        for key, value in spec.conf.items():  # runtime settings also apply to a running session
            text = str(value).lower() if isinstance(value, bool) else str(value)
            try:
                if session.conf.get(key, None) == text:
                    continue  # the session has it (a static key of a session made with it)
                session.conf.set(key, text)
            except Exception:  # a static setting of a session that already runs: kept as it is
                logger.warning(
                    "spark: %s cannot change on a running session (it is %r); kept as it is",
                    key,
                    _conf_value(session, key),
                )
    return session


def _conf_value(session: Any, key: str) -> str | None:
    try:
        return str(session.conf.get(key, None))
    except Exception:
        return None


def _to_engine(data: Any, engine: str, spark: SparkSpec | None = None) -> Any:
    """``data`` as a frame of the pipeline's ``engine`` (``polars`` means a LazyFrame here).

    The conversion is :func:`data_pipeline.core.engines.to_engine`'s (one mechanism: no pandas
    index column, names differing only by case refused by DuckDB and Spark, ...); Spark gets the
    session built from the file's ``spark:`` settings.
    """
    from data_pipeline.core.engines import engine_of, to_engine

    if engine == "spark":
        if engine_of(data) == "pyspark":
            return data
        return to_engine(data, "pyspark", session=_spark_session(spark), component="pipeline")
    if engine not in _PIPELINE_ENGINES:
        raise ConfigError(f"unknown engine {engine!r}", component="pipeline")
    return to_engine(data, _PIPELINE_ENGINES[engine], component="pipeline")


#: ``engine:`` of a pipeline file -> the engine name of :mod:`data_pipeline.core.engines`
_PIPELINE_ENGINES = {
    "polars": "polars-lazy",
    "pandas": "pandas",
    "arrow": "pyarrow",
    "duckdb": "duckdb",
}


def _consumers(loaded: LoadedPipeline) -> dict[str, int]:
    """How many steps of the file read each data set (transformations, processing pipelines
    and their joins/lookups, store entries, dashboard charts)."""
    count: dict[str, int] = {}

    def add(name: str) -> None:
        count[name] = count.get(name, 0) + 1

    for inp, _ in loaded.transformations.values():
        add(inp)
    known = {*loaded.sources, *loaded.transformations, *loaded.processing}
    for inp, ppipe in loaded.processing.values():
        add(inp)
        for _, ref in _dataset_references(ppipe, known):
            add(ref)
    for _, entries in loaded.storage.values():
        for entry in entries:
            add(entry.data)
    for _, _, feeds in loaded.dashboards.values():
        for dname in feeds.values():
            add(dname)
    return count


def _spark_read(source: Any, spec: SparkSpec | None) -> tuple[Any, str]:
    """``engine: spark``: the source as a DataFrame the executors read (``spark.read``, JDBC),
    or None and the reason the driver reads it instead."""
    reason = source.spark_unsupported()
    if reason is None:
        out = source.ingest_spark(_spark_session(spec))
        if out is not None:
            return out, ""
        reason = "nothing new to read"
    logger.info("%s: read on the Spark driver (%s)", source.label, reason)
    return None, reason


def _run_batches(
    loaded: LoadedPipeline,
    chunked: Mapping[str, Iterator[Any]],
    batched: list[tuple[str, str, Any]],
    data: dict[str, Any],
    stored: set[tuple[str, int]],
    stages: dict[str, StageResult],
    outputs: dict[str, str],
) -> None:
    """Sources read in batches (``chunk_size``): each batch goes through the transformations
    of its source and into the stores of their outputs, one batch at a time; the first batch of
    an entry is stored with its ``if_exists``, the next ones appended (``upsert`` stays upsert).
    Only data sets that a processing pipeline or a dashboard reads are kept whole (in Arrow)."""
    from data_pipeline.core.frames import to_arrow

    engine = loaded.spec.engine
    names = {*chunked, *(name for name, _, _ in batched)}
    needed = {inp for inp, _ in loaded.processing.values()} | {
        d for _, _, feeds in loaded.dashboards.values() for d in feeds.values()
    }
    known = {*loaded.sources, *loaded.transformations, *loaded.processing}
    for _, ppipe in loaded.processing.values():
        needed |= {ref for _, ref in _dataset_references(ppipe, known)}
    kept: dict[str, list[Any]] = {n: [] for n in names & needed}
    entries = [
        (sname, i, system, entry)
        for sname, (system, items) in loaded.storage.items()
        for i, entry in enumerate(items)
        if entry.data in names
    ]
    for source_name, batches in chunked.items():
        empty = True
        for raw in batches:
            batch = {source_name: _to_engine(raw, engine, loaded.spec.spark)}
            for name, inp, tpipe in batched:
                if inp in batch:
                    batch[name] = _materialize(tpipe.transform(batch[inp]))
            for sname, i, system, entry in entries:
                if entry.data not in batch:
                    continue
                mode = entry.if_exists
                if (sname, i) in stored and mode in ("replace", "fail"):
                    mode = "append"
                result = system.store(batch[entry.data], entry.table or entry.data, if_exists=mode)
                if (sname, i) not in stored:
                    stored.add((sname, i))
                    stages["storage"].items.append(
                        f"{entry.data} -> {sname}.{entry.table or entry.data} (in batches)"
                    )
                stages["storage"].rows = (stages["storage"].rows or 0) + result.rows
                outputs[f"{sname}:{entry.table or entry.data}"] = str(result.target)
            for name in kept:
                if name in batch:
                    kept[name].append(to_arrow(batch[name]))
            empty = False
        if empty:
            logger.info("%s: no rows to read", source_name)
    import pyarrow as pa

    for name, tables in kept.items():
        if tables:
            data[name] = _to_engine(
                pa.concat_tables(tables, promote_options="default"), engine, loaded.spec.spark
            )


def _spark_from_driver(source: Any, data: Any, reason: str, spec: SparkSpec | None) -> Any:
    """A frame the driver read, sent to Spark as Arrow (size checked)."""
    from data_pipeline._spark import DEFAULT_MAX_DRIVER_BYTES, check_driver_size
    from data_pipeline.core.frames import to_arrow

    table = to_arrow(data)
    limit = spec.max_driver_bytes if spec is not None else DEFAULT_MAX_DRIVER_BYTES
    check_driver_size(
        table.nbytes,
        f"source {source.name!r} read on the driver ({reason}) and sent to Spark",
        limit=limit,
        refuse=spec is not None and spec.on_large == "refuse",
        setting="a file or PostgreSQL/MySQL source the executors can read",
    )
    return _to_engine(table, "spark", spec)


def _guard_collect(frame: Any, what: str, spec: SparkSpec | None, instead: str) -> None:
    """Before a Spark frame is collected to the driver: warn (or refuse) above the limit."""
    from data_pipeline._spark import DEFAULT_MAX_DRIVER_BYTES, check_driver_size, plan_bytes
    from data_pipeline.core.engines import is_spark

    if not is_spark(frame):
        return
    limit = spec.max_driver_bytes if spec is not None else DEFAULT_MAX_DRIVER_BYTES
    check_driver_size(
        plan_bytes(frame),
        f"{what} collects the Spark frame to the driver",
        limit=limit,
        refuse=spec is not None and spec.on_large == "refuse",
        setting=instead,
    )


@contextlib.contextmanager
def _spark_errors(engine: str, what: str) -> Iterator[None]:
    """``engine: spark``: Spark failures (out of memory, Py4J, Connect) as our errors."""
    if engine != "spark":
        yield
        return
    from data_pipeline._spark import translated

    with translated(what):
        yield


def _materialize(data: Any, consumers: int | None = None) -> Any:
    """Compute a lazy result once so that several consumers do not recompute it.

    Spark: cached only when more than one step reads it (``consumers``; None: always), and
    unpersisted by the run after its last consumer."""
    from data_pipeline.core.engines import engine_of, to_arrow, to_engine

    engine = engine_of(data)
    if engine == "polars-lazy":
        return to_engine(data, "polars")
    if engine == "duckdb":  # computed once into Arrow, a relation on DuckDB's default connection
        return to_engine(to_arrow(data), "duckdb")
    if engine == "pyspark":
        if consumers is not None and consumers < 2:
            return data  # one reader: caching would only hold executor memory
        return data.cache()  # computed by Spark at the first use, kept for the next consumers
    return data


def run_pipeline(
    pipeline: LoadedPipeline | str | Path | Mapping[str, Any],
    *,
    on_stage: Callable[[str, str], None] | None = None,
    environ: Mapping[str, str] | None = None,
) -> PipelineRun:
    """Run a pipeline file (or an already loaded one) end to end.

    ``on_stage(stage, event)`` is called with event ``"start"`` and ``"done"`` for progress display.
    """
    loaded = (
        pipeline
        if isinstance(pipeline, LoadedPipeline)
        else load_pipeline(pipeline, environ=environ)
    )
    from data_pipeline.core.files import local_root

    with local_root(loaded.base_dir):  # default state/reject files beside the YAML file
        return _run_loaded(loaded, on_stage)


def _run_loaded(loaded: LoadedPipeline, on_stage: Callable[[str, str], None] | None) -> PipelineRun:
    engine = loaded.spec.engine
    stages = {s: StageResult(s) for s in STAGES}
    data: dict[str, Any] = {}
    outputs: dict[str, str] = {}
    started = time.perf_counter()

    def stage(name: str) -> _Stage:
        return _Stage(stages[name], on_stage)

    stored: set[tuple[str, int]] = set()

    def store_ready() -> None:
        for sname, (system, entries) in loaded.storage.items():
            for i, entry in enumerate(entries):
                if (sname, i) in stored or entry.data not in data:
                    continue
                frame = data[entry.data]
                what = f"storing {entry.data!r} in {sname!r}"
                if engine == "spark" and not system.writes_spark(entry.if_exists):
                    _guard_collect(
                        frame,
                        what,
                        loaded.spec.spark,
                        "a Parquet FileSystemStorage, a PostgreSQL/MySQL RelationalDBStorage, a "
                        "MongoDB NoSQLDBStorage, or a DataWarehouseStorage on DuckDB, on Delta "
                        "(a local or shared path) or (engine: sqlalchemy) on a PostgreSQL/MySQL URL",
                    )
                with _spark_errors(engine, what):
                    result = system.store(
                        frame, entry.table or entry.data, if_exists=entry.if_exists
                    )
                used(entry.data)
                stored.add((sname, i))
                stages["storage"].rows = (stages["storage"].rows or 0) + result.rows
                stages["storage"].items.append(
                    f"{entry.data} -> {sname}.{entry.table or entry.data}"
                )
                outputs[f"{sname}:{entry.table or entry.data}"] = str(result.target)

    # with `checkpoint:` the sources' positions and cursors commit with what the run stores
    from data_pipeline._follow import batch_checkpointer

    job = batch_checkpointer(loaded)
    if job is not None:
        job.restore()

    uses = _consumers(loaded) if engine == "spark" else {}
    left = dict(uses)

    def readers(name: str) -> int | None:
        """Spark: how many steps read ``name`` (cached only above one); else None."""
        return uses.get(name, 0) if engine == "spark" else None

    def used(*names: str) -> None:
        """Spark: a consumer of each of ``names`` is done; the last one unpersists it."""
        for n in names:
            if n in left:
                left[n] -= 1
                if left[n] <= 0 and getattr(data.get(n), "is_cached", False):
                    data[n].unpersist()

    spec = loaded.spec.spark
    chunked: dict[str, Iterator[Any]] = {}  # sources read in batches (chunk_size)
    batched: list[tuple[str, str, Any]] = []  # transformations of their batches, in file order

    with stage("ingestion") as st:
        for name, source in loaded.sources.items():
            out, reason = _spark_read(source, spec) if engine == "spark" else (None, "")
            if out is None:
                raw = source.ingest()
                if isinstance(raw, Iterator):
                    chunked[name] = raw  # runs batch by batch with the stores, below
                    st.add(name, None)
                    continue
                if engine == "spark":
                    out = _spark_from_driver(source, raw, reason, spec)
                else:
                    out = _to_engine(raw, engine, spec)
            if engine == "spark":
                out = _materialize(out, readers(name))
            data[name] = out
            st.add(name, row_count(to_narwhals(out)))

    with stage("transformation") as st:
        for name, (inp, tpipe) in loaded.transformations.items():
            if inp in chunked or any(inp == b for b, _, _ in batched):
                batched.append((name, inp, tpipe))
                continue
            with _spark_errors(engine, f"transformation {name!r}"):
                out = _materialize(tpipe.transform(data[inp]), readers(name))
            used(inp)
            data[name] = out
            st.add(name, row_count(to_narwhals(out)))

    with job.commit() if job is not None else contextlib.nullcontext():
        if chunked:
            with stage("storage"):
                _run_batches(loaded, chunked, batched, data, stored, stages, outputs)
        with stage("storage"):
            store_ready()

        with stage("processing") as st:
            for name, (inp, ppipe) in loaded.processing.items():
                _wire_references(ppipe, data)
                source_data = data[inp]
                with _spark_errors(engine, f"processing {name!r}"):
                    out = _materialize(ppipe.process(source_data), readers(name))
                used(inp, *(ref for _, ref in _dataset_references(ppipe, data)))
                data[name] = out
                st.add(name, row_count(to_narwhals(out)))

        with stage("storage"):
            store_ready()

    with stage("visualization") as st:
        for name, (_, _, feeds) in loaded.dashboards.items():
            # no size guard: a visualization collects only what it shows (a chart at most
            # max_points + 1 rows and counts, a table max_rows, a KPI one value per period)
            with _spark_errors(engine, f"dashboard {name!r}"):
                _render_dashboard(loaded, name, data, outputs)
            used(*feeds.values())
            st.add(f"{name} ({len(feeds)} charts)", None)

    # the run went through: streaming sources acknowledge what they read (a failed run leaves
    # it unacknowledged, to be read again)
    for source in loaded.sources.values():
        close = getattr(source, "close", None)
        if close is not None:
            close()
    return PipelineRun(stages, data, outputs, time.perf_counter() - started)


def render_dashboards(
    pipeline: LoadedPipeline | str | Path | Mapping[str, Any],
    *,
    environ: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Re-render the dashboards of a pipeline from its stored data, without ingesting anything.

    Each visualization's data set is read back from the first storage system that stores it; a
    processing output that was not stored is recomputed from its stored input. Returns the path
    written per dashboard.
    """
    loaded = (
        pipeline
        if isinstance(pipeline, LoadedPipeline)
        else load_pipeline(pipeline, environ=environ)
    )
    stored_at: dict[str, tuple[Any, str]] = {}
    for system, entries in loaded.storage.values():
        for entry in entries:
            stored_at.setdefault(entry.data, (system, entry.table or entry.data))
    cache: dict[str, Any] = {}

    def fetch(name: str, path: str) -> Any:
        if name in cache:
            return cache[name]
        if name in stored_at:
            system, table = stored_at[name]
            cache[name] = system.retrieve(table)
        elif name in loaded.processing:
            inp, ppipe = loaded.processing[name]
            known = {*loaded.sources, *loaded.transformations, *loaded.processing}
            refs = {
                ref: _to_engine(fetch(ref, path), loaded.spec.engine, loaded.spec.spark)
                for _, ref in _dataset_references(ppipe, known)
            }
            _wire_references(ppipe, refs)
            cache[name] = _materialize(
                ppipe.process(_to_engine(fetch(inp, path), loaded.spec.engine, loaded.spec.spark))
            )
        else:
            raise ConfigError(
                f"{path}: the data set {name!r} is not stored by any storage system",
                component="pipeline file",
                hint=f"add a store entry for {name!r} (or for the input of the processing pipeline that makes it), "
                "or run the whole pipeline with `data-pipeline run`",
            )
        return cache[name]

    written: dict[str, str] = {}
    for name, (dashboard, _, feeds) in loaded.dashboards.items():
        path = f"dashboards.{name}"
        viz_data = {vname: fetch(dname, path) for vname, dname in feeds.items()}
        target = _dashboard_path(loaded, name)
        dashboard.save_html(str(target), viz_data)
        written[name] = str(target)
    return written


class _Stage:
    def __init__(self, result: StageResult, callback: Callable[[str, str], None] | None) -> None:
        self.result = result
        self.callback = callback
        self._start = 0.0

    def add(self, item: str, rows: int | None) -> None:
        self.result.items.append(item)
        if rows is not None:
            self.result.rows = (self.result.rows or 0) + rows

    def __enter__(self) -> _Stage:
        self._start = time.perf_counter()
        if self.callback:
            self.callback(self.result.stage, "start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.result.seconds += time.perf_counter() - self._start
        if self.callback:
            self.callback(self.result.stage, "failed" if exc[0] else "done")


def describe_error(exc: BaseException) -> str:
    """The message to show a user for a failed run."""
    if isinstance(exc, DataPipelineError):
        return str(exc)
    from data_pipeline.core.secrets import redact_text

    return redact_text(f"{type(exc).__name__}: {exc}")


# -- helpers shared with following a stream (data_pipeline/_follow.py) ----------------------


def _dataset_references(ppipe: Any, names: Collection[str]) -> list[tuple[Any, str]]:
    """(step, data set) for each DataJoiner ``right_table`` / DataEnricher lookup ``reference``
    of a processing pipeline that names a data set of the file."""
    from data_pipeline.processing import DataEnricher, DataJoiner

    refs: list[tuple[Any, str]] = []
    for step in ppipe.processors:
        table = step.settings.right_table if isinstance(step, DataJoiner) else None
        if table is not None and table in names:
            refs.append((step, table))
        elif isinstance(step, DataEnricher):
            refs += [(step, lk.reference) for lk in step.settings.lookups if lk.reference in names]
    return refs


def _wire_references(ppipe: Any, data: Mapping[str, Any]) -> None:
    """Hand the data sets that the pipeline's joins and lookups name to those steps.

    In a pipeline file, a DataJoiner's ``right_table`` and a DataEnricher lookup's ``reference``
    may name a data set of the file (a source, transformation or processing output made before).
    """
    from data_pipeline.processing import DataJoiner

    for step, name in _dataset_references(ppipe, data):
        if isinstance(step, DataJoiner):
            step.set_right(data[name])
        else:
            step.set_reference(name, data[name])


def _render_dashboard(
    loaded: LoadedPipeline, name: str, data: Mapping[str, Any], outputs: dict[str, str]
) -> None:
    dashboard, _, feeds = loaded.dashboards[name]
    viz_data = {vname: data[dname] for vname, dname in feeds.items()}
    target = _dashboard_path(loaded, name)
    dashboard.save_html(str(target), viz_data)
    outputs[f"dashboard:{name}"] = str(target)


def _dashboard_path(loaded: LoadedPipeline, name: str) -> Path:
    """The HTML file of dashboard ``name``: its ``path``, else ``<name>.html`` (the name made a
    safe file name), beside the YAML file."""
    from data_pipeline.core.files import safe_file_name

    target = Path(loaded.dashboards[name][1].path or f"{safe_file_name(name)}.html")
    return target if target.is_absolute() else loaded.base_dir / target


def _release(frames: Mapping[str, Any]) -> None:
    """Unpersist the Spark DataFrames that :func:`_materialize` cached for one batch."""
    for frame in frames.values():
        if getattr(frame, "is_cached", False) and hasattr(frame, "unpersist"):
            frame.unpersist()
