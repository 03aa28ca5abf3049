#!/usr/bin/env bash
# Vendors the examples' crate-registry dependencies: `cargo vendor` copies the
# crates Cargo.lock pins into third_party/vendor/ (gitignored: vendored
# sources are never committed), then `ferrule vendor --check` verifies that
# the committed Bazel targets (third_party/crates/BUILD*.bazel) match the lock
# file and the vendored copies. After changing Cargo.toml/Cargo.lock, run
# `go run ./cmd/ferrule vendor` and commit the regenerated files.
#
# This is the only step that reaches the crate registry; builds never do.
# Idempotent: cargo vendor is skipped when every pinned crate is present.
set -euo pipefail
cd "$(dirname "$0")/../.."

say() { printf '==> crates: %s\n' "$*"; }

manifest=third_party/crates/Cargo.toml
vendor=third_party/vendor

have_all=1
while read -r name version; do
  if [ ! -f "$vendor/$name-$version/.cargo-checksum.json" ]; then
    have_all=0
    break
  fi
done < <(awk '/^\[\[package\]\]/{n="";v="";s=0} /^name = /{n=$3} /^version = /{v=$3} /^source = /{s=1} /^checksum = /{if(s) print n, v}' third_party/crates/Cargo.lock | tr -d '"')

if [ "$have_all" = 1 ]; then
  say "all crates pinned by Cargo.lock are already in $vendor"
else
  say "cargo vendor --locked into $vendor"
  # The root's cargo: the same on every machine with this root.
  ./tools/root.sh cargo vendor --locked --versioned-dirs --manifest-path "$manifest" "$vendor" >/dev/null
fi

say "checking the generated Bazel targets against Cargo.lock and $vendor"
go run ./cmd/ferrule vendor --check
