#!/usr/bin/env bash
# The test command: every Go test (unit, service and the end-to-end tests that
# drive real Bazel) and every Bazel test target, sharing one Bazel output root
# and one `ferrule serve` cache under .ferrule/test, with `bazel shutdown` at the end.
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
# Bazel 7.7.1 and the toolchains are in the toolchain root (tools/root.sh).
bazel() { "$repo/tools/root.sh" bazel "$@"; }

# One `ferrule serve` (disk store) for the whole run: `bazel test //...`
# goes through it as its remote cache, and the end-to-end tests that check
# cross-clone reuse of big builds (CPython) rebuild from it instead of
# building cold again. Tests that need an empty server start their own.
mkdir -p "$root/bin"
echo "==> go build ./cmd/ferrule"
go build -o "$root/bin/ferrule" ./cmd/ferrule || { echo "0 passed, 1 failed"; exit 1; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
grpc_addr="127.0.0.1:$(free_port)"
http_addr="127.0.0.1:$(free_port)"
"$root/bin/ferrule" serve --dir "$root/cache" --grpc_address "$grpc_addr" --http_address "$http_addr" \
  > "$root/serve.log" 2>&1 &
server=$!
export FERRULE_SHARED_CACHE="grpc://$grpc_addr"

cleanup() {
  bazel "${bazel_startup[@]}" shutdown >/dev/null 2>&1 || true
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 100); do
  curl -fsS "http://$http_addr/status" >/dev/null 2>&1 && break
  if ! kill -0 "$server" 2>/dev/null; then
    cat "$root/serve.log"; echo "ferrule serve did not start"; echo "0 passed, 1 failed"; exit 1
  fi
  sleep 0.2
done
echo "==> ferrule serve on $grpc_addr (HTTP $http_addr), store in $root/cache"

passed=0
failed=0
log="$root/logs"
mkdir -p "$log"

echo "==> bazel test //..."
bazel "${bazel_startup[@]}" test //... --symlink_prefix=/ --remote_cache="$FERRULE_SHARED_CACHE" --test_summary=short 2>&1 | tee "$log/bazel-test.log"
bazel_rc="${PIPESTATUS[0]}"
bp=$(grep -cE '^//[^ ]+ +(\(cached\) )?PASSED' "$log/bazel-test.log")
bf=$(grep -cE '^//[^ ]+ +(FAILED|TIMEOUT|NO STATUS|FAILED TO BUILD|INCOMPLETE)' "$log/bazel-test.log")
if [ "$bazel_rc" != 0 ] && [ "$bf" = 0 ]; then bf=1; fi
passed=$((passed + bp)); failed=$((failed + bf))

# The builder's tests run real rustc and bindgen: inside the toolchain root,
# with its Go. Everything else (server, e2e tests driving Bazel through
# tools/root.sh) on the host. tools/testsummary counts test functions and
# lists every skipped test with its reason.
echo "==> go test ./... (rules/builder inside the toolchain root)"
go build -o "$root/bin/testsummary" ./tools/testsummary || { echo "0 passed, 1 failed"; exit 1; }
host_pkgs=$(go list ./... | grep -v '/rules/builder$')
{
  go test -json -count=1 -timeout 40m $host_pkgs
  "$repo/tools/root.sh" go test -json -count=1 ./rules/builder
} 2>&1 | "$root/bin/testsummary" | tee "$log/go-test.log"
go_rc="${PIPESTATUS[1]}"
summary=$(grep -E '^go: [0-9]+ passed, [0-9]+ failed, [0-9]+ skipped$' "$log/go-test.log" | tail -1)
gp=$(echo "$summary" | sed -E 's/^go: ([0-9]+) passed.*/\1/')
gf=$(echo "$summary" | sed -E 's/.* ([0-9]+) failed.*/\1/')
gs=$(echo "$summary" | sed -E 's/.* ([0-9]+) skipped$/\1/')
if [ -z "$summary" ]; then gp=0; gf=1; gs=0; fi
if [ "$go_rc" != 0 ] && [ "$gf" = 0 ]; then gf=1; fi
passed=$((passed + gp)); failed=$((failed + gf))

# Every Go fuzz target for a bounded time (FUZZTIME each): a target that
# runs clean counts as passed, a crash as failed.
echo "==> fuzz targets (tools/fuzz.sh, ${FUZZTIME:=6s} each)"
FUZZTIME="$FUZZTIME" "$repo/tools/fuzz.sh" 2>&1 | tee "$log/fuzz.log"
fuzz_rc="${PIPESTATUS[0]}"
fp=$(sed -nE 's/^fuzz: ([0-9]+) targets, .*/\1/p' "$log/fuzz.log" | tail -1)
ff=0
if [ "$fuzz_rc" != 0 ] || [ -z "$fp" ]; then fp=0; ff=1; fi
passed=$((passed + fp)); failed=$((failed + ff))

echo
echo "wall time: $(( $(date +%s) - ${FERRULE_RUN_START:-$start} ))s"
echo "bazel test targets: $bp passed, $bf failed; go test functions: $gp passed, $gf failed, $gs skipped; fuzz targets: $fp passed, $ff failed"
echo "$passed passed, $failed failed, $gs skipped"
[ "$failed" = 0 ]
