#!/usr/bin/env bash
# The S3 tests of `engine: spark` (tests/e2e/test_spark_s3.py) need Hadoop's S3A file system,
# which the pyspark wheel lacks, and Maven Central is not reachable from our machines. PyPI's
# sagemaker_pyspark 1.4.5 source archive carries hadoop-aws 3.3.1 and the AWS SDK bundle
# 1.11.901 (deps/jars/); fetch it once with pip (hash pinned), keep the two jars, drop the rest.
#
#   scripts/fetch-s3a-jars.sh [PYTHON]     (make pytest runs it with the venv's python)
#
# Into $DATA_PIPELINE_SPARK_JARS, default ${XDG_CACHE_HOME:-~/.cache}/data-pipeline/spark-jars
# (tests/conftest.py looks there). Nothing to do when both jars are present. On failure it says
# so and exits 0: the S3 tests then skip, or fail under DATA_PIPELINE_REQUIRE_SERVICES=1.
set -u
PYTHON=${1:-python3}
DIR=${DATA_PIPELINE_SPARK_JARS:-${XDG_CACHE_HOME:-$HOME/.cache}/data-pipeline/spark-jars}
JARS=(hadoop-aws-3.3.1.jar aws-java-sdk-bundle-1.11.901.jar)
SDIST=sagemaker_pyspark-1.4.5
SHA256=05ca2d5081d7138ce29a8fb0a9cba077f28c825288ed07aed46a82e63c0bf1fb

missing=0
for jar in "${JARS[@]}"; do [ -s "$DIR/$jar" ] || missing=1; done
[ "$missing" = 0 ] && exit 0

fail() { echo "fetch-s3a-jars: $*; the Spark S3 tests will skip (or fail under DATA_PIPELINE_REQUIRE_SERVICES=1)" >&2; exit 0; }
mkdir -p "$DIR" || fail "cannot create $DIR"
work=$(mktemp -d "$DIR/.fetch-XXXXXX") || fail "cannot create a temporary directory in $DIR"
trap 'rm -rf "$work"' EXIT
echo "fetching hadoop-aws 3.3.1 and aws-java-sdk-bundle 1.11.901 from PyPI ($SDIST, 181 MB) into $DIR"
echo "sagemaker_pyspark==1.4.5 --hash=sha256:$SHA256" > "$work/req.txt"
"$PYTHON" -m pip download -q --no-deps --no-binary :all: --require-hashes -r "$work/req.txt" \
  -d "$work" || fail "pip download $SDIST failed"
members=()
for jar in "${JARS[@]}"; do members+=("$SDIST/deps/jars/$jar"); done
tar -xzf "$work/$SDIST.tar.gz" -C "$work" "${members[@]}" || fail "$SDIST.tar.gz has not the expected jars"
for jar in "${JARS[@]}"; do
  mv -f "$work/$SDIST/deps/jars/$jar" "$DIR/$jar" || fail "cannot move $jar into $DIR"
done
echo "fetch-s3a-jars: ${JARS[*]} in $DIR"
