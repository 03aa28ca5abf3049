#!/bin/sh
# Runs rust_base64_test.py with an interpreter Ferrule built, in a clean
# environment. Arguments: the interpreter, the test script, the shared
# extension module's file.
set -eu
python="$PWD/$1"; script="$PWD/$2"; shared="$PWD/$3"
cd "${TEST_TMPDIR:-/tmp}"
exec env -i PATH=/usr/bin:/bin LC_ALL=C.UTF-8 PYTHONNOUSERSITE=1 "$python" -B "$script" "$shared"
