#!/bin/sh
# The binary links a static library that a dependency's build script built.
set -eu
out="$("$1")"
[ "$out" = "42" ] || { echo "unexpected output: $out" >&2; exit 1; }
echo "ok: $out"
