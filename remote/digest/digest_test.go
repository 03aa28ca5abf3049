package digest

import (
	"bytes"
	"encoding/hex"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
)

func TestEmptyDigests(t *testing.T) {
	// Well-known values of the empty input.
	want := map[repb.DigestFunction_Value]string{
		repb.DigestFunction_SHA256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
		repb.DigestFunction_BLAKE3: "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262",
	}
	for fn, h := range want {
		if got := Empty(fn).Hash; got != h {
			t.Errorf("Empty(%s) = %s, want %s", fn, got, h)
		}
	}
}

func TestResolve(t *testing.T) {
	h := Empty(repb.DigestFunction_SHA256).Hash
	if fn, err := Resolve(repb.DigestFunction_UNKNOWN, h); err != nil || fn != repb.DigestFunction_SHA256 {
		t.Errorf("Resolve(unset, 64 chars) = %s, %v", fn, err)
	}
	if _, err := Resolve(repb.DigestFunction_UNKNOWN, "abc"); err == nil {
		t.Error("Resolve(unset, 3 chars) succeeded")
	}
	if _, err := Resolve(repb.DigestFunction_MD5, h); err == nil {
		t.Error("Resolve(MD5) succeeded")
	}
	if fn, err := Resolve(repb.DigestFunction_BLAKE3, h); err != nil || fn != repb.DigestFunction_BLAKE3 {
		t.Errorf("Resolve(BLAKE3) = %s, %v", fn, err)
	}
}

func TestValidate(t *testing.T) {
	good := Empty(repb.DigestFunction_SHA256)
	if err := Validate(repb.DigestFunction_SHA256, good); err != nil {
		t.Errorf("valid digest rejected: %v", err)
	}
	bad := []*repb.Digest{
		nil,
		{Hash: good.Hash, SizeBytes: -1},
		{Hash: good.Hash[:10], SizeBytes: 0},
		{Hash: "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"},
		{Hash: "../../etc/passwd" + good.Hash[16:]},
	}
	for _, d := range bad {
		if err := Validate(repb.DigestFunction_SHA256, d); err == nil {
			t.Errorf("Validate(%v) accepted a bad digest", d)
		}
	}
}

func TestParseFunction(t *testing.T) {
	if fn, ok := ParseFunction("blake3"); !ok || fn != repb.DigestFunction_BLAKE3 {
		t.Errorf("ParseFunction(blake3) = %s, %v", fn, ok)
	}
	if _, ok := ParseFunction("md5"); ok {
		t.Error("ParseFunction(md5) accepted an unsupported function")
	}
	if _, ok := ParseFunction("blobs"); ok {
		t.Error("ParseFunction(blobs) accepted a non-function")
	}
}

// TestEveryByte checks Validate and DecodeHash against the definition for
// every byte value at every position of a hash.
func TestEveryByte(t *testing.T) {
	good := Empty(repb.DigestFunction_SHA256).Hash
	want, _ := hex.DecodeString(good)
	var got [HashLen / 2]byte
	if !DecodeHash(&got, good) || !bytes.Equal(got[:], want) {
		t.Fatalf("DecodeHash(%s) = %x", good, got)
	}
	for pos := range HashLen {
		for c := range 256 {
			h := good[:pos] + string([]byte{byte(c)}) + good[pos+1:]
			lowerHex := c >= '0' && c <= '9' || c >= 'a' && c <= 'f'
			verr := Validate(repb.DigestFunction_SHA256, &repb.Digest{Hash: h})
			ok := DecodeHash(&got, h)
			if (verr == nil) != lowerHex || ok != lowerHex {
				t.Fatalf("byte %#x at %d: Validate %v, DecodeHash %v", c, pos, verr, ok)
			}
			if ok {
				w, _ := hex.DecodeString(h)
				if !bytes.Equal(got[:], w) {
					t.Fatalf("DecodeHash(%s) = %x, want %x", h, got, w)
				}
			}
		}
	}
	for _, h := range []string{"", good[:62], good + "00"} {
		if DecodeHash(&got, h) {
			t.Errorf("DecodeHash accepted %d characters", len(h))
		}
	}
}
