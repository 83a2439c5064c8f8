#!/usr/bin/env bash
# Sets up everything fruitflow needs on a fresh machine: Java 17 for Spark, and a virtualenv in .venv
# with the pinned packages. Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

java_major() {
  java -version 2>&1 | awk -F'"' '/version/ {split($2, v, "."); print (v[1] == "1" ? v[2] : v[1]); exit}'
}

if ! command -v java >/dev/null 2>&1 || [ "$(java_major)" -lt 17 ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
    echo "setup: installing Java 17 (Spark needs it)"
    apt-get update -qq
    # Debian 12 has 17; newer releases only 21 (default-jre-headless), which Spark 4 runs on too.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless >/dev/null 2>&1 \
      || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq default-jre-headless >/dev/null
  else
    echo "setup: Spark needs Java 17 or newer. Install it (e.g. 'sudo apt-get install openjdk-17-jre-headless'" \
         "or 'brew install openjdk@17') and run this again." >&2
    exit 1
  fi
fi

# Native BLAS/LAPACK for Spark ML's PCA (without them it falls back to slower pure-Java code). Optional.
if [ ! -e /usr/lib/x86_64-linux-gnu/liblapack.so.3 ] && [ ! -e /usr/lib/aarch64-linux-gnu/liblapack.so.3 ] \
   && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
  echo "setup: installing OpenBLAS (native BLAS/LAPACK for Spark ML)"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libopenblas0-pthread >/dev/null) \
    || echo "setup: OpenBLAS not installed; Spark ML will use its Java fallback"
fi

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c "import ensurepip, venv" >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
    echo "setup: installing python3 and python3-venv"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv >/dev/null
  else
    echo "setup: needs Python 3.11 or 3.12 with venv (e.g. 'sudo apt-get install python3-venv')" >&2
    exit 1
  fi
fi
if ! "$PYTHON" -c "import sys; sys.exit(not (3, 11) <= sys.version_info[:2] <= (3, 12))"; then
  echo "setup: fruitflow pins packages for Python 3.11-3.12; $($PYTHON --version) found." \
       "Run with PYTHON=/path/to/python3.11 bash .ci/setup.sh" >&2
  exit 1
fi
if ! .venv/bin/python -m pip --version >/dev/null 2>&1; then  # missing, or half-made by an earlier failure
  echo "setup: creating .venv with $($PYTHON --version)"
  rm -rf .venv
  "$PYTHON" -m venv .venv
fi
stamp=$(cat pyproject.toml .ci/constraints.txt | sha256sum | cut -c1-16)
if [ "$(cat .venv/.installed 2>/dev/null)" != "$stamp" ]; then
  echo "setup: installing pinned packages into .venv (first time: a few minutes, ~3 GB)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -c .ci/constraints.txt -e ".[dev]"
  echo "$stamp" > .venv/.installed
fi
# The driver JVM's class archive (tasks/local/class_archive.py): Spark's classes mapped at start, ~1.5-3 s sooner
# each run. Made once per Spark and JVM (~15 s), under ~/.cache/fruitflow/jvm.
.venv/bin/python -m tasks.local.class_archive | sed 's/^/setup: /'
# The tests' EMR parity environments (Python 3.9 + Spark 3.5.6, tests/parity_env.py): built once per pin set,
# a minute or two on a new machine, here rather than inside the first test that needs them.
.venv/bin/python -m tests.parity_env | sed 's/^/setup: /'
echo "setup: ready ($(java -version 2>&1 | head -1); $(.venv/bin/python --version))"
