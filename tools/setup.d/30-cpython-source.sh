#!/usr/bin/env bash
# Gets CPython 3.11's sources for @cpython (third_party/cpython) through the
# package manager: Debian bookworm's python3.11 source package, unpacked
# WITHOUT Debian's patches (dpkg-source --skip-patches), i.e. the upstream
# release as Debian ships it in its .orig tarball.
#
# Destination: $FERRULE_CPYTHON_SRC, or .ferrule/cpython-src in the workspace
# (gitignored). Idempotent: does nothing when the tree is already there.
set -euo pipefail
cd "$(dirname "$0")/../.."

. tools/lib/apt-mirror.sh
say() { printf '==> cpython-source: %s\n' "$*"; }

dest="${FERRULE_CPYTHON_SRC:-$PWD/.ferrule/cpython-src}"
if [ -f "$dest/Include/Python.h" ] && [ -f "$dest/.ferrule-source" ]; then
  say "CPython source already at $dest ($(cat "$dest/.ferrule-source"))"
  exit 0
fi

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

# A deb-src entry for bookworm main (the release, not -security: a fixed,
# reproducible source), in deb822 form, on the same archive the machine's
# own apt sources already use for bookworm's binary packages.
list=/etc/apt/sources.list.d/ferrule-src.sources
if [ ! -f "$list" ]; then
  uri="$(apt_mirror)"
  if [ -z "$uri" ]; then
    echo "cpython-source: no apt source for Debian bookworm found to add a deb-src entry for; add one, or set FERRULE_CPYTHON_SRC to a CPython 3.11 source tree" >&2
    exit 1
  fi
  say "adding a bookworm deb-src entry ($list, $uri)"
  $SUDO tee "$list" >/dev/null <<SRC
Types: deb-src
URIs: $uri
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  $SUDO apt-get update -q
fi

work="$(dirname "$dest")/.cpython-src.download"
rm -rf "$work"
mkdir -p "$work"
say "apt-get source --download-only python3.11 (in $work)"
(cd "$work" && apt-get source --download-only -q python3.11)
dsc="$(ls "$work"/python3.11_*.dsc | head -1)"
say "unpacking $(basename "$dsc") without Debian's patches"
(cd "$work" && dpkg-source --no-check --skip-patches -x "$(basename "$dsc")" tree >/dev/null)
ver="$(basename "$dsc" .dsc | sed 's/^python3.11_//')"
echo "Debian python3.11 $ver, upstream sources, Debian patches not applied" > "$work/tree/.ferrule-source"
rm -rf "$dest"
mv "$work/tree" "$dest"
rm -rf "$work"
say "CPython source at $dest ($(cat "$dest/.ferrule-source"))"
