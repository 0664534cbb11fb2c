"""Shared fixtures: the engine matrix, real-service checks, sample data."""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest

ENGINES: list[Any] = [
    "pandas",
    "polars",
    "polars-lazy",
    "pyarrow",
    "duckdb",
    pytest.param("pyspark", marks=pytest.mark.spark),
]

REQUIRE_SERVICES = os.environ.get("DATA_PIPELINE_REQUIRE_SERVICES") == "1"

# Property tests: derandomized (the same examples for the same loaded modules: Hypothesis also
# draws constants from the project modules imported so far, so the full suite draws other
# examples than one file run alone), no per-example deadline and no "too slow" health check:
# these machines are shared and noisy, and a time limit is not a test.
try:
    from hypothesis import HealthCheck
    from hypothesis import settings as _hypothesis_settings

    _hypothesis_settings.register_profile(
        "data-pipeline",
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    _hypothesis_settings.load_profile("data-pipeline")
except ImportError:  # pragma: no cover - hypothesis is in the test extra
    pass


def require_service(name: str, host: str, port: int) -> None:
    """Skip (or, under DATA_PIPELINE_REQUIRE_SERVICES=1, fail) when a server is unreachable."""
    try:
        with socket.create_connection((host, port), timeout=2):
            return
    except OSError as exc:
        message = f"{name} is not reachable on {host}:{port} ({exc})"
        if REQUIRE_SERVICES:
            pytest.fail(message + "; DATA_PIPELINE_REQUIRE_SERVICES=1 forbids skipping")
        pytest.skip(message)


def spark_unavailable() -> str | None:
    """Why a local SparkSession cannot start here (pyspark or Java missing), or ``None``."""
    if importlib.util.find_spec("pyspark") is None:
        return "pyspark is not installed (pip install 'data-pipeline[spark]')"
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").exists():
        return None
    if shutil.which("java") is None:
        return "Java (17 or later) is not installed or not on PATH, and JAVA_HOME is not set"
    return None


#: the JDBC driver jars that Debian's libpostgresql-jdbc-java and libmariadb-java install
JDBC_JARS = [
    jar
    for jar in ("/usr/share/java/postgresql.jar", "/usr/share/java/mariadb-java-client.jar")
    if os.path.exists(jar)
]

#: Hadoop's S3A file system for the Spark S3 tests: hadoop-aws 3.3.1 and its AWS SDK bundle,
#: which scripts/fetch-spark-jars.sh (run by `make pytest`) takes from PyPI's sagemaker_pyspark
#: 1.4.5 source archive (the pyspark wheel has no hadoop-aws; Maven Central is unreachable here)
SPARK_JARS_DIR = Path(
    os.environ.get("DATA_PIPELINE_SPARK_JARS")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    / "data-pipeline"
    / "spark-jars"
)
S3A_JARS = [
    str(SPARK_JARS_DIR / jar)
    for jar in ("hadoop-aws-3.3.1.jar", "aws-java-sdk-bundle-1.11.901.jar")
    if (SPARK_JARS_DIR / jar).is_file()
]
if len(S3A_JARS) < 2:
    S3A_JARS = []

#: Google's GCS connector for Hadoop 3 for the Spark GCS test, which scripts/fetch-spark-jars.sh
#: (run by `make pytest`) takes from PyPI's pyspark-gcs 2.2.6.1 source archive
GCS_JARS = [
    str(SPARK_JARS_DIR / jar)
    for jar in ("gcs-connector-hadoop3-2.2.6-shaded.jar",)
    if (SPARK_JARS_DIR / jar).is_file()
]

#: connector 2.2.6 under pyspark 4's Hadoop 3.5 defaults (core-default.xml): its fs.gs.impl names
#: a class the wheel lacks, and it reads these sizes as plain numbers where the defaults carry
#: units ("64m" -> NumberFormatException) (docs/spark.md)
GCS_COMPAT = {
    "spark.hadoop.fs.gs.impl": "com.google.cloud.hadoop.fs.gcs.GoogleHadoopFileSystem",
    "spark.hadoop.fs.AbstractFileSystem.gs.impl": "com.google.cloud.hadoop.fs.gcs.GoogleHadoopFS",
    "spark.hadoop.fs.gs.block.size": "67108864",
    "spark.hadoop.fs.gs.rewrite.max.chunk.size": "536870912",
    "spark.hadoop.fs.gs.outputstream.buffer.size": "8388608",
    "spark.hadoop.fs.gs.inputstream.inplace.seek.limit": "8388608",
    "spark.hadoop.fs.gs.inputstream.min.range.request.size": "2097152",
}

#: hadoop-aws 3.3.1 under pyspark 4's Hadoop 3.4+ defaults (core-default.xml): it reads these
#: as plain numbers where the newer defaults carry units ("60s" -> NumberFormatException), and
#: the default credential providers are AWS SDK v2 classes it does not have (docs/spark.md)
S3A_COMPAT = {
    "spark.hadoop.fs.s3a.threads.keepalivetime": "60",
    "spark.hadoop.fs.s3a.connection.establish.timeout": "30000",
    "spark.hadoop.fs.s3a.connection.timeout": "200000",
    "spark.hadoop.fs.s3a.multipart.purge.age": "86400",
    "spark.hadoop.fs.s3a.aws.credentials.provider": (
        "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider"
    ),
}

_LOG4J = """rootLogger.level = error
rootLogger.appenderRef.stdout.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{HH:mm:ss} %p %c{1}: %m%n
"""


@pytest.fixture(autouse=True)
def _fresh_secret_registry() -> Iterator[None]:
    """Each test starts with the secret values registered by earlier tests forgotten.

    A process remembers every secret value its configs held and masks it in all text; across a
    whole test session that would include test passwords such as "nope" or "missing" and mask
    those words in the messages later tests check.
    """
    from data_pipeline.core import secrets

    with secrets._lock:
        saved = (set(secrets._secret_values), secrets._pattern)
    yield
    with secrets._lock:
        secrets._secret_values.clear()
        secrets._secret_values.update(saved[0])
        secrets._pattern = saved[1]


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """ONE local SparkSession for the whole test run (starting one takes ~15 s).

    Skips when pyspark or Java is missing; fails instead under DATA_PIPELINE_REQUIRE_SERVICES=1.
    Bound to 127.0.0.1, no UI, two shuffle partitions, UTC, quiet logs; the JDBC, S3A and GCS
    jars that are present.
    """
    reason = spark_unavailable()
    if reason:
        if REQUIRE_SERVICES:
            pytest.fail(
                f"Spark unavailable: {reason}; DATA_PIPELINE_REQUIRE_SERVICES=1 forbids skipping"
            )
        pytest.skip(f"Spark unavailable: {reason}")
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    log4j = tmp_path_factory.mktemp("spark") / "log4j2.properties"
    log4j.write_text(_LOG4J, encoding="utf-8")
    from pyspark.sql import SparkSession

    builder = SparkSession.builder
    for key, value in S3A_COMPAT.items() if S3A_JARS else ():
        builder = builder.config(key, value)
    for key, value in GCS_COMPAT.items() if GCS_JARS else ():
        builder = builder.config(key, value)
    session = (
        builder.master("local[2]")
        .appName("data-pipeline-tests")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.default.parallelism", "2")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        # tiny test frames: compiling generated code costs more than it saves
        .config("spark.sql.codegen.wholeStage", "false")
        .config("spark.sql.adaptive.enabled", "false")
        .config("spark.driver.extraJavaOptions", f"-Dlog4j2.configurationFile=file:{log4j}")
        # the JDBC drivers of Debian's libpostgresql-jdbc-java / libmariadb-java (.ci/run),
        # Hadoop's S3A file system and the GCS connector (scripts/fetch-spark-jars.sh)
        .config("spark.jars", ",".join(JDBC_JARS + S3A_JARS + GCS_JARS))
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture
def interleaved() -> Iterator[None]:
    """Switch threads every microsecond (instead of 5 ms) so two calls overlap."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


@pytest.fixture(scope="session")
def duckdb_connection() -> Iterator[Any]:
    import duckdb

    con = duckdb.connect()
    yield con
    con.close()


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


Maker = Callable[[Any], Any]


@pytest.fixture
def make_frame(engine: str, duckdb_connection: Any, request: pytest.FixtureRequest) -> Maker:
    """``make_frame(data)`` -> a native frame of the current engine from a dict or polars frame."""

    def make(data: Any) -> Any:
        df = data if isinstance(data, pl.DataFrame) else pl.DataFrame(data, strict=False)
        if engine == "polars":
            return df
        if engine == "polars-lazy":
            return df.lazy()
        if engine == "pandas":
            return df.to_pandas()
        if engine == "pyarrow":
            return df.to_arrow()
        if engine == "duckdb":
            return duckdb_connection.from_arrow(df.to_arrow())
        if engine == "pyspark":
            spark = request.getfixturevalue("spark")
            return spark_frame(spark, df)
        raise AssertionError(engine)

    return make


def forbid_collecting(monkeypatch: pytest.MonkeyPatch, frame: Any, data: list[str]) -> None:
    """Make every way of bringing a frame's rows to the driver fail for frames holding a data
    column (on the class Spark made); the tasks' small metadata rows, and the key check's one
    aggregate row (``__dp_n``), may come."""
    cls = type(frame)
    for method in ("toArrow", "toPandas", "collect", "toLocalIterator"):
        real = getattr(cls, method)

        def guarded(self: Any, *args: Any, _real: Any = real, _m: str = method, **kw: Any) -> Any:
            if set(self.columns) & set(data) and "__dp_n" not in self.columns:
                raise AssertionError(f"the driver collected rows of the data ({_m})")
            return _real(self, *args, **kw)

        monkeypatch.setattr(cls, method, guarded)


def spark_frame(spark: Any, df: pl.DataFrame) -> Any:
    """A Spark DataFrame from Arrow (keeps nulls, NaN and dtypes; no pandas on the way).

    Spark makes a naive Arrow timestamp a session-zoned TIMESTAMP: cast back to TIMESTAMP_NTZ so
    that naive stays naive, as on the other engines.
    """
    frame = spark.createDataFrame(df.to_arrow())
    naive = [c for c, t in df.schema.items() if isinstance(t, pl.Datetime) and t.time_zone is None]
    if naive:
        from pyspark.sql import functions as F

        quoted = {c: "`" + c.replace("`", "``") + "`" for c in naive}
        frame = frame.withColumns({c: F.col(quoted[c]).cast("timestamp_ntz") for c in naive})
    return frame


def to_polars(native: Any) -> pl.DataFrame:
    """Any engine's result as a polars DataFrame, for comparison with the oracle."""
    from data_pipeline.core.frames import to_polars as convert

    return convert(native)  # PySpark: Narwhals collects it through Arrow (toArrow), no pandas


def native_type_name(native: Any) -> str:
    return f"{type(native).__module__.split('.')[0]}.{type(native).__name__}"


@pytest.fixture
def same_type() -> Callable[[Any, Any], bool]:
    def check(a: Any, b: Any) -> bool:
        return type(a) is type(b)

    return check
