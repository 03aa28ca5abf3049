#!/bin/bash
# Regenerates remote/bes/bep/build_event_stream.pb.go from its .proto.
# Needs protoc with the well-known types (Debian: protobuf-compiler,
# libprotobuf-dev) and protoc-gen-go at the version go.mod pins.
set -euo pipefail
cd "$(dirname "$0")/.."
ver=$(go list -m -f '{{.Version}}' google.golang.org/protobuf)
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
echo "building protoc-gen-go $ver"
GOBIN=$bin go install "google.golang.org/protobuf/cmd/protoc-gen-go@$ver"
echo "generating remote/bes/bep"
PATH=$bin:$PATH protoc -I remote/bes/bep -I /usr/include \
  --go_out=remote/bes/bep --go_opt=paths=source_relative \
  remote/bes/bep/build_event_stream.proto
