#!/bin/sh
# Runs base64_bench.py with an interpreter Ferrule built, in a clean
# environment (bazel run). Arguments: the interpreter, the script, then the
# script's own options (--samples, --min-sample).
set -eu
python="$PWD/$1"; script="$PWD/$2"; shift 2
exec env -i PATH=/usr/bin:/bin LC_ALL=C.UTF-8 PYTHONNOUSERSITE=1 "$python" -B "$script" "$@"
