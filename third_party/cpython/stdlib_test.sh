#!/usr/bin/env bash
# Runs tests of CPython's own test suite (Lib/test) with the interpreter
# Ferrule built, through CPython's test runner (python -m test).
#   stdlib_test.sh <python3> <testsuite dir> <test name>...
# Fails when the runner reports anything but success.
set -euo pipefail
python="$PWD/$1"; suite="$PWD/$2"; shift 2
tmp="${TEST_TMPDIR:-$(mktemp -d)}"
export PYTHONPATH="$suite" PYTHONDONTWRITEBYTECODE=1 TMPDIR="$tmp" HOME="$tmp"
unset PYTHONHOME PYTHONSTARTUP
cd "$tmp"
echo "interpreter: $("$python" -c 'import sys; print(sys.version.replace(chr(10), " "), "at", sys.prefix)')"
exec "$python" -m test --verbose2 "$@"
