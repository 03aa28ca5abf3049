#!/usr/bin/env bash
# Gets CPython 3.13's sources for @cpython313 (third_party/cpython) from
# Debian sid's python3.13 source package, fetched and unpacked INSIDE the
# toolchain root (tools/root.sh), whose apt sources carry sid's deb-src line:
# the root's apt and dpkg-source, not the host's. Unpacked WITHOUT Debian's
# patches (dpkg-source --skip-patches), i.e. the upstream 3.13.15 release.
#
# Destination: $FERRULE_CPYTHON313_SRC, or .ferrule/cpython313-src in the
# workspace (gitignored). Idempotent: does nothing when the tree is there.
set -euo pipefail
cd "$(dirname "$0")/../.."

say() { printf '==> cpython313-source: %s\n' "$*"; }

pkgver="3.13.15-1"
dest="${FERRULE_CPYTHON313_SRC:-$PWD/.ferrule/cpython313-src}"
if [ -f "$dest/Include/Python.h" ] && [ -f "$dest/.ferrule-source" ]; then
  say "CPython source already at $dest ($(cat "$dest/.ferrule-source"))"
  exit 0
fi

work="$(dirname "$dest")/.cpython313-src.download"
rm -rf "$work"
mkdir -p "$work"
# The root binds the checkout at its own path; a destination outside it
# must be bound too.
export FERRULE_ROOT_BIND="${FERRULE_ROOT_BIND:-}${FERRULE_ROOT_BIND:+:}$(dirname "$dest")"
say "apt-get source --download-only python3.13=$pkgver (in the toolchain root, into $work)"
tools/root.sh bash -c '
  set -euo pipefail
  cd "$1"
  if ! ls /var/lib/apt/lists/*_source_Sources* >/dev/null 2>&1; then apt-get update -q; fi
  apt-get source --download-only -q "python3.13=$2" || { apt-get update -q && apt-get source --download-only -q "python3.13=$2"; }
  dpkg-source --no-check --skip-patches -x "python3.13_$2.dsc" tree >/dev/null
' _ "$work" "$pkgver"
echo "Debian python3.13 $pkgver, upstream sources, Debian patches not applied" > "$work/tree/.ferrule-source"
rm -rf "$dest"
mv "$work/tree" "$dest"
rm -rf "$work"
say "CPython source at $dest ($(cat "$dest/.ferrule-source"))"
