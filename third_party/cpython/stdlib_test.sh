#!/usr/bin/env bash
# Runs tests of CPython's own test suite (Lib/test) with the interpreter
# Ferrule built, through CPython's test runner (python -m test), one module
# after another in one process.
#   stdlib_test.sh <python3> <testsuite dir> <test name>...
# Fails when the runner reports anything but success, or when it skipped a
# whole module (one whose imports this build lacks: the list must name only
# modules that run here).
set -euo pipefail
python="$PWD/$1"; suite="$PWD/$2"; shift 2
tmp="${TEST_TMPDIR:-$(mktemp -d)}"
export PYTHONPATH="$suite" PYTHONDONTWRITEBYTECODE=1 TMPDIR="$tmp" HOME="$tmp"
unset PYTHONHOME PYTHONSTARTUP
cd "$tmp"
echo "interpreter: $("$python" -c 'import sys; print(sys.version.replace(chr(10), " "), "at", sys.prefix)')"
log="$tmp/regrtest.log"
rc=0
"$python" -m test --verbose2 "$@" 2>&1 | tee "$log" || rc=$?
[ "$rc" = 0 ] || exit "$rc"
if grep -Eq '^[0-9]+ tests? (skipped|run no tests)' "$log"; then
  echo "stdlib_test.sh: the runner skipped whole modules or ran none of their tests (listed above); take them off the list or build what they import" >&2
  exit 1
fi
