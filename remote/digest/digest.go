// Package digest holds what Ferrule knows about REAPI digests: the supported
// digest functions, hashing, validation, and inferring the function from a
// hash's length where a request leaves it unset.
package digest

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"strings"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/zeebo/blake3"
)

// Supported lists the digest functions Ferrule implements, in the order they
// are advertised.
var Supported = []repb.DigestFunction_Value{repb.DigestFunction_SHA256, repb.DigestFunction_BLAKE3}

// HashLen is the length in hex characters of the hashes of both supported
// functions. SHA256 and BLAKE3 hashes have the same length, so a 64-character
// hash with no explicit function is taken to be SHA256 (what REAPI 2.0
// clients mean).
const HashLen = 64

// New returns a hasher for fn, or an error if fn is not supported.
func New(fn repb.DigestFunction_Value) (hash.Hash, error) {
	switch fn {
	case repb.DigestFunction_SHA256:
		return sha256.New(), nil
	case repb.DigestFunction_BLAKE3:
		return blake3.New(), nil
	}
	return nil, fmt.Errorf("unsupported digest function %s", fn)
}

// Resolve returns the function a request means: fn if set, else the one
// inferred from the hash length. It fails for unsupported functions.
func Resolve(fn repb.DigestFunction_Value, hashHex string) (repb.DigestFunction_Value, error) {
	if fn == repb.DigestFunction_UNKNOWN {
		if len(hashHex) == HashLen {
			return repb.DigestFunction_SHA256, nil
		}
		return fn, fmt.Errorf("cannot infer digest function from a %d-character hash", len(hashHex))
	}
	for _, s := range Supported {
		if s == fn {
			return fn, nil
		}
	}
	return fn, fmt.Errorf("unsupported digest function %s", fn)
}

// ParseFunction maps a lowercase name as used in ByteStream resource names
// ("sha256", "blake3") to a function. ok is false for other names.
func ParseFunction(name string) (repb.DigestFunction_Value, bool) {
	v, found := repb.DigestFunction_Value_value[strings.ToUpper(name)]
	if !found {
		return repb.DigestFunction_UNKNOWN, false
	}
	fn := repb.DigestFunction_Value(v)
	for _, s := range Supported {
		if s == fn {
			return fn, true
		}
	}
	return repb.DigestFunction_UNKNOWN, false
}

// Validate checks that d is a well-formed digest for fn: a lowercase hex
// hash of the right length and a non-negative size.
func Validate(fn repb.DigestFunction_Value, d *repb.Digest) error {
	if d == nil {
		return fmt.Errorf("missing digest")
	}
	if d.SizeBytes < 0 {
		return fmt.Errorf("digest %s/%d: negative size", d.Hash, d.SizeBytes)
	}
	if len(d.Hash) != HashLen {
		return fmt.Errorf("digest %q: hash must be %d hex characters for %s, got %d", d.Hash, HashLen, fn, len(d.Hash))
	}
	h := d.Hash
	bad := byte(0)
	for i := 0; i < len(h); i++ {
		bad |= hexVal[h[i]]
	}
	if bad&0x80 != 0 {
		return fmt.Errorf("digest %q: hash is not lowercase hex", d.Hash)
	}
	return nil
}

// hexVal maps the lowercase hex digits to their values and every other
// byte to 0xff.
var hexVal = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = byte(c - '0')
	}
	for c := 'a'; c <= 'f'; c++ {
		t[c] = byte(c - 'a' + 10)
	}
	return t
}()

// DecodeHash decodes a hash of HashLen lowercase hex characters into dst.
// It reports false, leaving dst undefined, for anything else.
func DecodeHash(dst *[HashLen / 2]byte, hashHex string) bool {
	if len(hashHex) != HashLen {
		return false
	}
	bad := byte(0)
	for i := range dst {
		hi, lo := hexVal[hashHex[2*i]], hexVal[hashHex[2*i+1]]
		bad |= hi | lo
		dst[i] = hi<<4 | lo&0x0f
	}
	return bad&0x80 == 0
}

// Of computes the digest of data under fn.
func Of(fn repb.DigestFunction_Value, data []byte) (*repb.Digest, error) {
	h, err := New(fn)
	if err != nil {
		return nil, err
	}
	h.Write(data)
	return &repb.Digest{Hash: hex.EncodeToString(h.Sum(nil)), SizeBytes: int64(len(data))}, nil
}

// Empty returns the digest of the empty blob under fn.
func Empty(fn repb.DigestFunction_Value) *repb.Digest {
	d, err := Of(fn, nil)
	if err != nil {
		panic(err) // only reached for unsupported functions: a programming error
	}
	return d
}

// IsEmpty reports whether d is the empty blob's digest under fn.
func IsEmpty(fn repb.DigestFunction_Value, d *repb.Digest) bool {
	return d.GetSizeBytes() == 0 && d.GetHash() == Empty(fn).Hash
}
