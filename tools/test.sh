#!/usr/bin/env bash
# The test command: every Go test (unit, service and the end-to-end tests that
# drive real Bazel) and every Bazel test target, sharing one Bazel output root
# and disk cache under .ferrule/test, with `bazel shutdown` at the end.
# Ends with one line: "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"

start=$(date +%s)
root="${FERRULE_TEST_ROOT:-$repo/.ferrule/test}"
mkdir -p "$root"
export FERRULE_TEST_ROOT="$root"
export FERRULE_BAZEL_OUTPUT_USER_ROOT="$root/bazel-root"
export FERRULE_E2E=1
bazel_startup=(--output_user_root="$FERRULE_BAZEL_OUTPUT_USER_ROOT")

cleanup() {
  bazel "${bazel_startup[@]}" shutdown >/dev/null 2>&1 || true
}
trap cleanup EXIT

passed=0
failed=0
log="$root/logs"
mkdir -p "$log"

echo "==> bazel test //..."
bazel "${bazel_startup[@]}" test //... --symlink_prefix=/ --disk_cache="$root/disk-cache" --test_summary=short 2>&1 | tee "$log/bazel-test.log"
bazel_rc="${PIPESTATUS[0]}"
bp=$(grep -cE '^//[^ ]+ +(\(cached\) )?PASSED' "$log/bazel-test.log")
bf=$(grep -cE '^//[^ ]+ +(FAILED|TIMEOUT|NO STATUS|FAILED TO BUILD|INCOMPLETE)' "$log/bazel-test.log")
if [ "$bazel_rc" != 0 ] && [ "$bf" = 0 ]; then bf=1; fi
passed=$((passed + bp)); failed=$((failed + bf))

echo "==> go test ./..."
go test -count=1 -timeout 40m ./... 2>&1 | tee "$log/go-test.log"
go_rc="${PIPESTATUS[0]}"
gp=$(grep -cE '^ok ' "$log/go-test.log")
gf=$(grep -cE '^FAIL\s' "$log/go-test.log")
if [ "$go_rc" != 0 ] && [ "$gf" = 0 ]; then gf=1; fi
passed=$((passed + gp)); failed=$((failed + gf))

echo
echo "wall time: $(( $(date +%s) - ${FERRULE_RUN_START:-$start} ))s"
echo "bazel test targets: $bp passed, $bf failed; go test packages: $gp passed, $gf failed"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
