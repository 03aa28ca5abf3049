package resource

import (
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/ferrule-build/ferrule/remote/store"
)

// FuzzParseResourceName: any ByteStream resource name parses or is an
// error, never a panic; a parsed name has a valid key, and the name built
// from that key parses back to it.
// Run: go test -run '^$' -fuzz FuzzParseResourceName -fuzztime 10s ./remote/resource/
func FuzzParseResourceName(f *testing.F) {
	h := "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	for _, s := range []string{
		"blobs/" + h + "/0",
		"inst/a/blobs/" + h + "/12",
		"compressed-blobs/zstd/" + h + "/5",
		"uploads/0f1e/blobs/" + h + "/3",
		"x/uploads/u/compressed-blobs/zstd/blake3/" + h + "/3/meta/data",
		"blobs/sha256/" + h + "/9223372036854775807",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		for _, upload := range []bool{false, true} {
			r, err := parse(name, upload)
			if err != nil {
				continue
			}
			k, err := store.CheckKey(r.Key)
			if err != nil {
				t.Fatalf("%q parsed to an invalid key %v: %v", name, r.Key, err)
			}
			d := &repb.Digest{Hash: k.Hash, SizeBytes: k.Size}
			again, err := ParseRead(ReadName(k.Instance, k.Function, d, r.Compressed))
			if err != nil || again.Key != r.Key {
				t.Fatalf("%q: key %v, rebuilt name parses to %v, %v", name, r.Key, again.Key, err)
			}
		}
	})
}

// FuzzDigestKey: any instance name and digest a client sends become a
// valid store key (Key) or an INVALID_ARGUMENT error.
// Run: go test -run '^$' -fuzz FuzzDigestKey -fuzztime 10s ./remote/resource/
func FuzzDigestKey(f *testing.F) {
	f.Add("", int32(0), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", int64(0))
	f.Add("a/b", int32(repb.DigestFunction_BLAKE3), "00", int64(-1))
	f.Add("blobs", int32(99), "zz", int64(1<<62))
	f.Fuzz(func(t *testing.T, instance string, fn int32, hash string, size int64) {
		k, err := Key(store.CAS, instance, repb.DigestFunction_Value(fn), &repb.Digest{Hash: hash, SizeBytes: size})
		if err != nil {
			return
		}
		if _, err := store.CheckKey(k); err != nil {
			t.Fatalf("Key accepted %q/%d/%q/%d as %v, which CheckKey refuses: %v", instance, fn, hash, size, k, err)
		}
		if err := CheckInstance(k.Instance); err != nil {
			t.Fatalf("Key accepted instance %q: %v", instance, err)
		}
	})
}
