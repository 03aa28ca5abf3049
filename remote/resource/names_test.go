package resource

import (
	"regexp"
	"strings"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
)

func readName(instance string, d *repb.Digest, compressed bool) string {
	return ReadName(instance, repb.DigestFunction_SHA256, d, compressed)
}

func writeName(instance, uuid string, d *repb.Digest, compressed bool) string {
	return WriteName(instance, uuid, repb.DigestFunction_SHA256, d, compressed)
}

func TestResourceNames(t *testing.T) {
	d := &repb.Digest{Hash: strings.Repeat("ab", 32), SizeBytes: 1234}
	h := d.Hash
	for _, tc := range []struct{ got, want string }{
		{readName("", d, false), "blobs/" + h + "/1234"},
		{readName("", d, true), "compressed-blobs/zstd/" + h + "/1234"},
		{readName("ci/linux", d, false), "ci/linux/blobs/" + h + "/1234"},
		{readName("ci/linux", d, true), "ci/linux/compressed-blobs/zstd/" + h + "/1234"},
		{writeName("", "u-1", d, false), "uploads/u-1/blobs/" + h + "/1234"},
		{writeName("", "u-1", d, true), "uploads/u-1/compressed-blobs/zstd/" + h + "/1234"},
		{writeName("main", "u-1", d, false), "main/uploads/u-1/blobs/" + h + "/1234"},
		{writeName("a/b", "u-1", d, true), "a/b/uploads/u-1/compressed-blobs/zstd/" + h + "/1234"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

func TestNewUUID(t *testing.T) {
	re := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	seen := map[string]bool{}
	for i := 0; i < 100; i++ {
		u := NewUUID()
		if !re.MatchString(u) {
			t.Fatalf("NewUUID() = %q, not a version 4 UUID", u)
		}
		if seen[u] {
			t.Fatalf("NewUUID() repeated %q", u)
		}
		seen[u] = true
	}
}

// Names built here parse back to the same key, with the digest function.
func TestNamesRoundTrip(t *testing.T) {
	d := &repb.Digest{Hash: strings.Repeat("cd", 32), SizeBytes: 99}
	for _, fn := range []repb.DigestFunction_Value{repb.DigestFunction_SHA256, repb.DigestFunction_BLAKE3} {
		for _, compressed := range []bool{false, true} {
			r, err := ParseRead(ReadName("a/b", fn, d, compressed))
			if err != nil || r.Key.Instance != "a/b" || r.Key.Function != fn || r.Key.Hash != d.Hash || r.Key.Size != 99 || r.Compressed != compressed {
				t.Errorf("read name %s compressed=%v: %+v, %v", fn, compressed, r, err)
			}
			w, err := ParseWrite(WriteName("a/b", "u", fn, d, compressed))
			if err != nil || w.Key != r.Key || w.UUID != "u" || w.Compressed != compressed {
				t.Errorf("write name %s compressed=%v: %+v, %v", fn, compressed, w, err)
			}
		}
	}
}
