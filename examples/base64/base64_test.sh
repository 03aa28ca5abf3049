#!/bin/sh
# Imports the built extension modules into the interpreter they were built
# for and runs base64_test.py. Arguments: the Python interpreter, the test
# script, then the module files (their directories go on PYTHONPATH).
set -eu
python="$1"
script="$2"
shift 2
path=""
for m in "$@"; do
  path="$path${path:+:}$(dirname "$m")"
done
# A clean interpreter: no user site-packages, no host PYTHON* variables.
exec env -i PATH=/usr/bin:/bin LC_ALL=C.UTF-8 PYTHONPATH="$path" PYTHONNOUSERSITE=1 "$python" -B "$script"
