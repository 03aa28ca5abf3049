package bytestream

import (
	"fmt"
	"strconv"
	"strings"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/ferrule-build/ferrule/remote/cas"
	"github.com/ferrule-build/ferrule/remote/digest"
	"github.com/ferrule-build/ferrule/remote/store"
)

// resource is a parsed ByteStream resource name.
type resource struct {
	key        store.Key
	compressed bool   // compressed-blobs/zstd/...
	uuid       string // uploads only
	// name identifies an upload across streams: everything up to the size,
	// without optional metadata.
	name string
}

// parseRead parses `{instance}/blobs/{function/}{hash}/{size}` and
// `{instance}/compressed-blobs/zstd/{function/}{hash}/{size}`.
func parseRead(name string) (resource, error) {
	return parse(name, false)
}

// parseWrite parses `{instance}/uploads/{uuid}/blobs/{function/}{hash}/{size}{/metadata}`
// and the compressed-blobs/zstd form.
func parseWrite(name string) (resource, error) {
	return parse(name, true)
}

func parse(name string, upload bool) (resource, error) {
	var r resource
	if name == "" {
		return r, fmt.Errorf("empty resource name")
	}
	if len(name) > 4096 {
		return r, fmt.Errorf("resource name longer than 4096 bytes")
	}
	segs := strings.Split(name, "/")
	// The instance name ends at the first keyword: instance names may not
	// contain them (cas.CheckInstance enforces that).
	i := 0
	want := "blobs"
	if upload {
		want = "uploads"
	}
	for i < len(segs) && segs[i] != want && !(!upload && segs[i] == "compressed-blobs") {
		i++
	}
	if i == len(segs) {
		return r, fmt.Errorf("resource name %q: no %q segment", name, want)
	}
	instance := strings.Join(segs[:i], "/")
	if i > 0 && instance == "" {
		return r, fmt.Errorf("resource name %q: empty instance segment", name)
	}
	if err := cas.CheckInstance(instance); err != nil {
		return r, fmt.Errorf("resource name %q: %v", name, err)
	}
	rest := segs[i:]
	if upload {
		if len(rest) < 2 || rest[1] == "" {
			return r, fmt.Errorf("resource name %q: missing upload id after uploads/", name)
		}
		r.uuid = rest[1]
		rest = rest[2:]
	}
	if len(rest) == 0 {
		return r, fmt.Errorf("resource name %q: missing blobs/ or compressed-blobs/", name)
	}
	switch rest[0] {
	case "blobs":
		rest = rest[1:]
	case "compressed-blobs":
		if len(rest) < 2 {
			return r, fmt.Errorf("resource name %q: missing compressor", name)
		}
		if rest[1] != "zstd" {
			return r, fmt.Errorf("resource name %q: unsupported compressor %q (only zstd)", name, rest[1])
		}
		r.compressed = true
		rest = rest[2:]
	default:
		return r, fmt.Errorf("resource name %q: expected blobs/ or compressed-blobs/, got %q", name, rest[0])
	}
	fn := repb.DigestFunction_UNKNOWN
	if len(rest) > 0 && len(rest[0]) != digest.HashLen {
		f, ok := digest.ParseFunction(rest[0])
		if !ok {
			if _, known := repb.DigestFunction_Value_value[strings.ToUpper(rest[0])]; known {
				return r, fmt.Errorf("resource name %q: unsupported digest function %q", name, rest[0])
			}
			return r, fmt.Errorf("resource name %q: %q is neither a digest function nor a %d-character hash", name, rest[0], digest.HashLen)
		}
		fn = f
		rest = rest[1:]
	}
	if len(rest) < 2 {
		return r, fmt.Errorf("resource name %q: missing hash/size", name)
	}
	if !upload && len(rest) > 2 {
		return r, fmt.Errorf("resource name %q: unexpected segments after the size", name)
	}
	size, err := parseSize(rest[1])
	if err != nil {
		return r, fmt.Errorf("resource name %q: %v", name, err)
	}
	d := &repb.Digest{Hash: rest[0], SizeBytes: size}
	f, err := digest.Resolve(fn, d.Hash)
	if err != nil {
		return r, fmt.Errorf("resource name %q: %v", name, err)
	}
	if err := digest.Validate(f, d); err != nil {
		return r, fmt.Errorf("resource name %q: %v", name, err)
	}
	r.key = store.Key{Kind: store.CAS, Instance: instance, Function: f, Hash: d.Hash, Size: size}
	n := len(segs) - len(rest) + 2
	r.name = strings.Join(segs[:n], "/")
	return r, nil
}

func parseSize(s string) (int64, error) {
	if s == "" {
		return 0, fmt.Errorf("empty size")
	}
	if s[0] == '-' {
		return 0, fmt.Errorf("negative size %s", s)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("size %q is not a decimal number", s)
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("size %q: %v", s, err)
	}
	return n, nil
}
