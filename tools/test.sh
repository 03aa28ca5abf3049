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
# tools/root.sh) on the host.
echo "==> go test ./... (rules/builder inside the toolchain root)"
host_pkgs=$(go list ./... | grep -v '/rules/builder$')
{
  go test -count=1 -timeout 40m $host_pkgs; r1=$?
  "$repo/tools/root.sh" go test -count=1 ./rules/builder; r2=$?
  [ "$r1" = 0 ] && [ "$r2" = 0 ]
} 2>&1 | tee "$log/go-test.log"
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
