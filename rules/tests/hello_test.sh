#!/bin/sh
# Runs the rust_binary and checks what it prints.
set -eu
out="$("$1")"
if [ "$out" != "hello from build.rs (42)" ]; then
  echo "unexpected output: $out" >&2
  exit 1
fi
echo "ok: $out"
