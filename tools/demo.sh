#!/usr/bin/env bash
# Ferrule's main job on its embedded default: `ferrule serve` with its local
# disk store, and a real build of the example CPython extension modules
# (//examples/...) through it, twice: the second time after
# `bazel clean --expunge`, so every action should come from the cache.
#
# Runs the set-up step first (idempotent). Everything it creates is under
# .ferrule/demo/ (the server's store, Bazel's output root, logs).
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"
say() { printf '==> %s\n' "$*"; }

./tools/setup.sh

demo="$repo/.ferrule/demo"
mkdir -p "$demo/bin" "$demo/logs"
say "building ferrule"
go build -o "$demo/bin/ferrule" ./cmd/ferrule

grpc_addr="${FERRULE_DEMO_GRPC:-127.0.0.1:9092}"
http_addr="${FERRULE_DEMO_HTTP:-127.0.0.1:9090}"
targets=("${@:-//examples/...}")
bazel_startup=(--output_user_root="$demo/bazel-root")
# Bazel 7.7.1 and the toolchains are in the toolchain root (tools/root.sh).
bazel() { "$repo/tools/root.sh" bazel "$@"; }

say "starting ferrule serve (disk store in $demo/cache, gRPC $grpc_addr, HTTP $http_addr)"
"$demo/bin/ferrule" serve --dir "$demo/cache" --grpc_address "$grpc_addr" --http_address "$http_addr" \
  > "$demo/logs/serve.log" 2>&1 &
server=$!
cleanup() {
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  bazel "${bazel_startup[@]}" shutdown >/dev/null 2>&1 || true
}
trap cleanup EXIT
for _ in $(seq 100); do
  if curl -fsS "http://$http_addr/status" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$server" 2>/dev/null; then
    echo "demo: ferrule serve exited; its log:" >&2
    cat "$demo/logs/serve.log" >&2
    exit 1
  fi
  sleep 0.2
done

build() { # build NAME: one build of the targets through the cache
  local name="$1" status
  # PIPESTATUS must be read right after the pipeline: any later command
  # (`|| true` included) replaces it. Inside `{ ...; } || true`, set -e
  # does not stop at the failing pipeline; grep matching no line is fine.
  {
    bazel "${bazel_startup[@]}" build --symlink_prefix=/ --color=no --curses=no \
      --remote_cache="grpc://$grpc_addr" \
      --execution_log_json_file="$demo/logs/$name.exec.json" \
      "${targets[@]}" 2>&1 | tee "$demo/logs/$name.log" | grep -E '^(INFO: [0-9]+ processes|INFO: Elapsed|ERROR)'
    status=${PIPESTATUS[0]}
  } || true
  if [ "$status" != 0 ]; then
    echo "demo: the $name build failed; see $demo/logs/$name.log" >&2
    exit 1
  fi
}

say "build 1: cold local cache, results uploaded to ferrule serve"
bazel "${bazel_startup[@]}" clean --expunge >/dev/null 2>&1 || true
build first
say "bazel clean --expunge"
bazel "${bazel_startup[@]}" clean --expunge >/dev/null 2>&1
say "build 2: everything from ferrule serve"
build second

# Bazel writes one pretty-printed JSON object per spawn, with one
# commandArgs field each; Bazel 7 names a cache hit in its runner.
count() { grep -c "$1" "$2" || true; }
a1=$(count '"commandArgs"' "$demo/logs/first.exec.json")
h1=$(count '"runner": "remote cache hit"' "$demo/logs/first.exec.json")
a2=$(count '"commandArgs"' "$demo/logs/second.exec.json")
h2=$(count '"runner": "remote cache hit"' "$demo/logs/second.exec.json")
rate=0
if [ "$a2" -gt 0 ]; then rate=$((100 * h2 / a2)); fi
echo
say "build 1: $a1 actions run ($h1 remote cache hits)"
say "build 2: $a2 actions, $h2 remote cache hits: hit rate ${rate}%"
say "do the two builds share their action keys? (ferrule explain)"
"$demo/bin/ferrule" explain --max 10 "$demo/logs/first.exec.json" "$demo/logs/second.exec.json"
say "ferrule serve store: $(curl -fsS "http://$http_addr/status" | tr -d ' \n' | grep -oE '"store_stats":\{[^}]*\}')"
