#!/usr/bin/env bash
# Installs Debian's Chromium for the web page's browser test
# (remote/web/browser_test.go, run with FERRULE_E2E=1), which opens the page
# of an in-process `ferrule serve` headless and takes a screenshot.
# Idempotent: nothing is done when chromium is already installed.
set -euo pipefail

say() { printf '==> chromium: %s\n' "$*"; }

if command -v chromium >/dev/null 2>&1; then
	say "already installed: $(chromium --version 2>/dev/null | head -1)"
	exit 0
fi
say "installing Debian's chromium"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y --no-install-recommends chromium fonts-dejavu-core
say "installed: $(chromium --version 2>/dev/null | head -1)"
