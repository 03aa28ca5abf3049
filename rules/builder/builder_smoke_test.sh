#!/bin/sh
# Checks the Bazel-built builder: its help lists subcommands, rewrite works,
# and a bad call fails with a message instead of a crash.
set -eu
builder="$1"
"$builder" help | grep -q rewrite
printf 'include /tmp/sandbox/42/execroot/ferrule/Include/Python.h\n' > in.txt
"$builder" rewrite --in in.txt --out out.txt --replace /tmp/sandbox/42/execroot/ferrule/=
test "$(cat out.txt)" = "include Include/Python.h"
if "$builder" rewrite --in missing.txt --out x 2> err.txt; then
    echo "rewrite of a missing file succeeded" >&2
    exit 1
fi
grep -q missing.txt err.txt
echo "builder smoke test passed"
