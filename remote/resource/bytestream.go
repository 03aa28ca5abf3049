package resource

import (
	"crypto/rand"
	"fmt"
	"strconv"
	"strings"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/ferrule-build/ferrule/remote/digest"
	"github.com/ferrule-build/ferrule/remote/store"
)

// Name is a parsed ByteStream resource name.
type Name struct {
	Key        store.Key
	Compressed bool   // compressed-blobs/zstd/...
	UUID       string // uploads only
	// Base identifies an upload across streams: everything up to the
	// size, without optional metadata.
	Base string
}

// ParseRead parses `{instance}/blobs/{function/}{hash}/{size}` and
// `{instance}/compressed-blobs/zstd/{function/}{hash}/{size}`.
func ParseRead(name string) (Name, error) {
	return parse(name, false)
}

// ParseWrite parses `{instance}/uploads/{uuid}/blobs/{function/}{hash}/{size}{/metadata}`
// and the compressed-blobs/zstd form.
func ParseWrite(name string) (Name, error) {
	return parse(name, true)
}

func parse(name string, upload bool) (Name, error) {
	var r Name
	if name == "" {
		return r, fmt.Errorf("empty resource name")
	}
	if len(name) > 4096 {
		return r, fmt.Errorf("resource name longer than 4096 bytes")
	}
	segs := strings.Split(name, "/")
	// The instance name ends at the first keyword: instance names may not
	// contain them (CheckInstance enforces that).
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
	if err := CheckInstance(instance); err != nil {
		return r, fmt.Errorf("resource name %q: %v", name, err)
	}
	rest := segs[i:]
	if upload {
		if len(rest) < 2 || rest[1] == "" {
			return r, fmt.Errorf("resource name %q: missing upload id after uploads/", name)
		}
		r.UUID = rest[1]
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
		r.Compressed = true
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
	r.Key = store.Key{Kind: store.CAS, Instance: instance, Function: f, Hash: d.Hash, Size: size}
	n := len(segs) - len(rest) + 2
	r.Base = strings.Join(segs[:n], "/")
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

// ReadName returns the ByteStream resource name for reading d from
// instance: `{instance}/blobs/{function/}{hash}/{size}`, or the
// `compressed-blobs/zstd/` form. The function segment is left out for
// SHA256 (and UNKNOWN), which REAPI 2.0 servers expect.
func ReadName(instance string, fn repb.DigestFunction_Value, d *repb.Digest, compressed bool) string {
	return prefix(instance) + blobPath(fn, d, compressed)
}

// WriteName returns the ByteStream resource name for uploading d to
// instance under the upload id uuid:
// `{instance}/uploads/{uuid}/blobs/{function/}{hash}/{size}` or its
// compressed-blobs/zstd form.
func WriteName(instance, uuid string, fn repb.DigestFunction_Value, d *repb.Digest, compressed bool) string {
	return prefix(instance) + "uploads/" + uuid + "/" + blobPath(fn, d, compressed)
}

func prefix(instance string) string {
	if instance == "" {
		return ""
	}
	return instance + "/"
}

func blobPath(fn repb.DigestFunction_Value, d *repb.Digest, compressed bool) string {
	p := "blobs/"
	if compressed {
		p = "compressed-blobs/zstd/"
	}
	if fn != repb.DigestFunction_SHA256 && fn != repb.DigestFunction_UNKNOWN {
		p += strings.ToLower(fn.String()) + "/"
	}
	return p + d.GetHash() + "/" + strconv.FormatInt(d.GetSizeBytes(), 10)
}

// NewUUID returns a random (version 4) UUID in its canonical text form, as
// REAPI asks for the upload id of a ByteStream write.
func NewUUID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		// crypto/rand does not fail on supported platforms; fall back to a
		// fixed pattern rather than panicking. Upload ids need only be
		// unique per client, and this keeps the name well-formed.
		b = [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	}
	b[6] = b[6]&0x0f | 0x40 // version 4
	b[8] = b[8]&0x3f | 0x80 // RFC 4122 variant
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
