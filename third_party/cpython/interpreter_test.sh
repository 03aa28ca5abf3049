#!/usr/bin/env bash
# Runs interpreter_test.py with an interpreter the @cpython overlay built.
#   interpreter_test.sh <python3> <interpreter_test.py> <shared modules list> <built-in modules list> <X.Y>
set -euo pipefail
python="$PWD/$1"; script="$PWD/$2"; list="$PWD/$3"; builtins="$PWD/$4"; version="$5"
export PYTHONDONTWRITEBYTECODE=1
unset PYTHONHOME PYTHONPATH PYTHONSTARTUP
cd "${TEST_TMPDIR:-/tmp}"
exec "$python" "$script" "$list" "$builtins" "$version"
