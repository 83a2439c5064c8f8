#!/bin/bash
# EMR bootstrap action: install the Spark job's pinned Python packages on every node (master and core).
#   install_packages.sh s3://bucket/.../requirements-emr.txt [extra requirement ...]
# Runs before Spark starts, as the hadoop user; a non-zero exit fails the cluster with this log in
# <log uri>/<cluster id>/node/<instance>/bootstrap-actions/.
set -euo pipefail

requirements_uri="$1"
shift

# The interpreter PySpark uses on EMR 7.x; override with PYSPARK_PYTHON in the spark-env classification.
python="${FRUITFLOW_PYTHON:-/usr/bin/python3}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

aws s3 cp "$requirements_uri" "$work/requirements.txt"
echo "fruitflow bootstrap: $("$python" --version) on $(hostname)"

# Prefer wheels: a source build on a fresh node is slow and may lack compilers. The system pip is left as
# it is (upgrading an RPM-installed pip can fail to uninstall it).
sudo "$python" -m pip install --prefer-binary -r "$work/requirements.txt" "$@"
"$python" -c "import tensorflow, PIL, pyarrow, pandas; print('fruitflow bootstrap: tensorflow', tensorflow.__version__)"
