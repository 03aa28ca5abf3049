#!/usr/bin/env bash
# Runs interpreter_test.py with the interpreter @cpython built.
#   interpreter_test.sh <python3> <interpreter_test.py> <shared modules list>
set -euo pipefail
python="$PWD/$1"; script="$PWD/$2"; list="$PWD/$3"
export PYTHONDONTWRITEBYTECODE=1
unset PYTHONHOME PYTHONPATH PYTHONSTARTUP
cd "${TEST_TMPDIR:-/tmp}"
exec "$python" "$script" "$list"
