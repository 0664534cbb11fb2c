#!/usr/bin/env bash
# The dashboard tests drive a real headless Chromium (Debian's package, never a downloaded build).
# Install it when it is missing and we may (root with apt-get); otherwise say so: the browser tests
# then skip, or fail under DATA_PIPELINE_REQUIRE_SERVICES=1.
set -u
if command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ]; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian's chromium for the browser tests"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  exit $?
fi
echo "chromium is not installed; browser tests will skip (run: sudo apt-get install chromium)" >&2
exit 0
