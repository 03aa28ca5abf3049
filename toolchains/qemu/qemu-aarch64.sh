#!/bin/sh
# Runs a linux-aarch64 program on this machine under qemu-user, with the
# aarch64 C library of the toolchain root: `bazel test --run_under=...`.
if ! command -v qemu-aarch64 >/dev/null 2>&1; then
  echo "qemu-aarch64: not found: aarch64 binaries run under qemu-user (Debian's qemu-user package, in the toolchain root: run tests through tools/root.sh)" >&2
  exit 127
fi
exec qemu-aarch64 -L /usr/aarch64-linux-gnu "$@"
