#!/usr/bin/env bash
# Installs everything Ferrule needs on a fresh Debian bookworm machine and
# prepares the workspace. Idempotent: re-running it only does what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '==> %s\n' "$*"; }

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

# Debian packages of the host: debootstrap builds the toolchain root (Bazel
# and every toolchain live there, see tools/root.sh); dpkg-dev fetches
# CPython's sources; zstd and curl serve the scripts.
APT_PACKAGES=(debootstrap dpkg-dev zstd curl ca-certificates)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  say "Debian packages already installed"
fi

# Go (the server, the tests) comes with the machine image; check its version
# rather than guess.
need_go="$(sed -n 's/^go \([0-9]*\.[0-9]*\).*/\1/p' go.mod)"
if ! command -v go >/dev/null; then
  echo "setup: Go $need_go or newer is required and 'go' is not on PATH" >&2
  exit 1
fi
have_go="$(go env GOVERSION | sed 's/^go//')"
if [ "$(printf '%s\n%s\n' "$need_go" "$have_go" | sort -V | head -1)" != "$need_go" ]; then
  echo "setup: Go $need_go or newer is required, found $have_go" >&2
  exit 1
fi
say "Go $have_go"

# The toolchain root: Bazel 7.7.1, gcc, rustc, bindgen, Python... pinned by
# toolchains/root/manifest.txt, built once per manifest and machine.
$SUDO ./tools/root.sh --build
say "$(./tools/root.sh --digest): $(./tools/root.sh bazel --version 2>/dev/null | head -1), $(./tools/root.sh rustc --version)"

say "downloading Go modules"
go mod download

for step in tools/setup.d/*.sh; do
  [ -e "$step" ] || continue
  say "running $step"
  bash "$step"
done

say "set-up complete"
