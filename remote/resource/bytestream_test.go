package resource

import (
	"strings"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
)

func TestParse(t *testing.T) {
	h := strings.Repeat("ab", 32)
	good := []struct {
		name       string
		upload     bool
		instance   string
		fn         repb.DigestFunction_Value
		size       int64
		compressed bool
		base       string
	}{
		{"blobs/" + h + "/5", false, "", repb.DigestFunction_SHA256, 5, false, "blobs/" + h + "/5"},
		{"a/b/c/blobs/" + h + "/0", false, "a/b/c", repb.DigestFunction_SHA256, 0, false, ""},
		{"x/blobs/blake3/" + h + "/7", false, "x", repb.DigestFunction_BLAKE3, 7, false, ""},
		{"x/blobs/sha256/" + h + "/7", false, "x", repb.DigestFunction_SHA256, 7, false, ""},
		{"compressed-blobs/zstd/" + h + "/9", false, "", repb.DigestFunction_SHA256, 9, true, ""},
		{"i/compressed-blobs/zstd/blake3/" + h + "/9", false, "i", repb.DigestFunction_BLAKE3, 9, true, ""},
		{"uploads/u-1/blobs/" + h + "/5", true, "", repb.DigestFunction_SHA256, 5, false, ""},
		{"a/b/uploads/u/blobs/" + h + "/5/some/metadata", true, "a/b", repb.DigestFunction_SHA256, 5, false, "a/b/uploads/u/blobs/" + h + "/5"},
		{"uploads/u/compressed-blobs/zstd/blake3/" + h + "/5", true, "", repb.DigestFunction_BLAKE3, 5, true, ""},
	}
	for _, g := range good {
		r, err := parse(g.name, g.upload)
		if err != nil {
			t.Errorf("parse(%q): %v", g.name, err)
			continue
		}
		if r.Key.Instance != g.instance || r.Key.Function != g.fn || r.Key.Size != g.size || r.Key.Hash != h || r.Compressed != g.compressed {
			t.Errorf("parse(%q) = %+v", g.name, r)
		}
		if g.base != "" && r.Base != g.base {
			t.Errorf("parse(%q).Base = %q, want %q", g.name, r.Base, g.base)
		}
	}
	bad := []struct {
		name   string
		upload bool
	}{
		{"", false},
		{"blobs", false},
		{"blobs/" + h, false},
		{"blobs/" + h + "/-1", false},
		{"blobs/" + h + "/+1", false},
		{"blobs/" + h + "/1x", false},
		{"blobs/" + h + "/99999999999999999999999", false},
		{"blobs/" + h[:10] + "/1", false},
		{"blobs/" + strings.ToUpper(h) + "/1", false},
		{"blobs/md5/" + h + "/1", false},
		{"blobs/" + h + "/1/extra", false},
		{"../blobs/" + h + "/1", false},
		{"a/../../blobs/" + h + "/1", false},
		{"/blobs/" + h + "/1", false},
		{"a//blobs/" + h + "/1", false},
		{"compressed-blobs/gzip/" + h + "/1", false},
		{"compressed-blobs/identity/" + h + "/1", false},
		{"compressed-blobs/zstd", false},
		{"blobs/../../../etc/passwd/1", false},
		{"uploads/blobs/" + h + "/1", true},
		{"uploads//blobs/" + h + "/1", true},
		{"uploads/u/" + h + "/1", true},
		{"blobs/" + h + "/1", true},
		{"actions/uploads/u/blobs/" + h + "/1", true},
	}
	for _, b := range bad {
		if r, err := parse(b.name, b.upload); err == nil {
			t.Errorf("parse(%q, upload=%v) = %+v, want an error", b.name, b.upload, r)
		}
	}
}
