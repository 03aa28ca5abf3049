package main
import (
 _ "google.golang.org/grpc"
 _ "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
 _ "github.com/bazelbuild/remote-apis/build/bazel/semver"
 _ "google.golang.org/genproto/googleapis/bytestream"
 _ "google.golang.org/genproto/googleapis/rpc/status"
 _ "google.golang.org/genproto/googleapis/rpc/errdetails"
 _ "cloud.google.com/go/longrunning/autogen/longrunningpb"
 _ "github.com/klauspost/compress/zstd"
 _ "github.com/zeebo/blake3"
 _ "github.com/prometheus/client_golang/prometheus"
 _ "gopkg.in/yaml.v3"
 _ "google.golang.org/grpc/health"
)
func main(){}
