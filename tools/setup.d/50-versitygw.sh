#!/usr/bin/env bash
# Installs versitygw, an S3 server (Apache-2.0) with a posix backend, for the
# tests of the shared S3 tier (remote/store/s3, remote/store/tiered,
# cmd/ferrule and e2e/s3_test.go start it on loopback). It is built from the
# Go module proxy with `go install` into /var/cache/ferrule/bin (where the
# tests look, after $FERRULE_VERSITYGW); about a minute on two cores.
# Idempotent: nothing is done when that version is already installed.
set -euo pipefail

say() { printf '==> versitygw: %s\n' "$*"; }

version=v1.8.0
bin=/var/cache/ferrule/bin
module=github.com/versity/versitygw

if [ -x "$bin/versitygw" ] && go version -m "$bin/versitygw" 2>/dev/null | grep -q "^[[:space:]]*mod[[:space:]]*$module[[:space:]]*$version\b"; then
	say "$version already installed in $bin"
	exit 0
fi
say "go install $module/cmd/versitygw@$version into $bin"
mkdir -p "$bin"
start=$(date +%s)
# Outside this module, so that its dependencies do not touch go.mod.
(cd / && GOBIN="$bin" GOFLAGS=-buildvcs=false go install "$module/cmd/versitygw@$version")
say "installed $bin/versitygw in $(( $(date +%s) - start ))s"
