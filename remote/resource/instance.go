// Package resource names what clients, servers, workers and the load
// generator exchange: instance names, store keys from REAPI digests, and
// ByteStream resource names, built and parsed in one place.
package resource

import (
	"fmt"
	"strings"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ferrule-build/ferrule/remote/digest"
	"github.com/ferrule-build/ferrule/remote/store"
)

// MaxInstanceNameLen bounds instance names; longer ones are rejected.
const MaxInstanceNameLen = 256

// reserved are the path segments REAPI forbids in instance names because
// they would make ByteStream resource names ambiguous.
var reserved = map[string]bool{
	"blobs": true, "uploads": true, "actions": true, "actionResults": true,
	"operations": true, "capabilities": true, "compressed-blobs": true,
}

// CheckInstance reports whether name is an acceptable instance name: empty,
// or '/'-separated segments that are non-empty, not "." or "..", not one of
// the keywords REAPI reserves, and free of control characters and
// backslashes. Instance names may become directory names in a store, so
// anything that could traverse out of one is refused.
func CheckInstance(name string) error {
	if name == "" {
		return nil
	}
	if len(name) > MaxInstanceNameLen {
		return fmt.Errorf("instance name longer than %d bytes", MaxInstanceNameLen)
	}
	for _, seg := range strings.Split(name, "/") {
		switch {
		case seg == "":
			return fmt.Errorf("instance name %q has an empty path segment", name)
		case seg == "." || seg == "..":
			return fmt.Errorf("instance name %q has a %q segment", name, seg)
		case reserved[seg]:
			return fmt.Errorf("instance name %q uses the reserved segment %q", name, seg)
		}
		for _, c := range seg {
			if c < 0x20 || c == 0x7f || c == '\\' {
				return fmt.Errorf("instance name %q contains the character %q", name, c)
			}
		}
	}
	return nil
}

// CheckInstanceStatus is CheckInstance with an INVALID_ARGUMENT status.
func CheckInstanceStatus(name string) error {
	if err := CheckInstance(name); err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	return nil
}

// Key validates instance and d (a digest under fn, or under the function
// inferred from the hash when fn is UNKNOWN) and returns the store key for
// it. Errors are gRPC INVALID_ARGUMENT statuses.
func Key(kind store.Kind, instance string, fn repb.DigestFunction_Value, d *repb.Digest) (store.Key, error) {
	if err := CheckInstanceStatus(instance); err != nil {
		return store.Key{}, err
	}
	return DigestKey(kind, instance, fn, d)
}

// DigestKey is Key for an instance name already checked.
func DigestKey(kind store.Kind, instance string, fn repb.DigestFunction_Value, d *repb.Digest) (store.Key, error) {
	if d == nil {
		return store.Key{}, status.Error(codes.InvalidArgument, "missing digest")
	}
	f, err := digest.Resolve(fn, d.Hash)
	if err != nil {
		return store.Key{}, status.Error(codes.InvalidArgument, err.Error())
	}
	if err := digest.Validate(f, d); err != nil {
		return store.Key{}, status.Error(codes.InvalidArgument, err.Error())
	}
	return store.Key{Kind: kind, Instance: instance, Function: f, Hash: d.Hash, Size: d.SizeBytes}, nil
}
