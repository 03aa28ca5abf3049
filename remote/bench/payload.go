package bench

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
)

// Payload returns size bytes that are a deterministic function of (seed,
// stream, index): the same triple always gives the same bytes, and
// different triples give different bytes (the triple is written into the
// first 24 bytes when size allows, and seeds the generator for the rest).
//
// The content is half random, half runs, so it compresses roughly 2:1 with
// zstd, like typical build outputs, and unlike pure random data (which
// zstd cannot shrink) or zeros (which it shrinks to nothing).
func Payload(seed, stream, index uint64, size int) []byte {
	b := make([]byte, size)
	FillPayload(b, seed, stream, index)
	return b
}

// FillPayload fills b the way Payload does for len(b).
func FillPayload(b []byte, seed, stream, index uint64) {
	rng := rand.New(rand.NewPCG(seed^0x9e3779b97f4a7c15*(stream+1), index))
	var word [8]byte
	// 64-byte blocks: 32 random bytes, then a run of 32 copies of one byte.
	for off := 0; off < len(b); off += 64 {
		end := min(off+32, len(b))
		for i := off; i < end; i += 8 {
			binary.LittleEndian.PutUint64(word[:], rng.Uint64())
			copy(b[i:end], word[:])
		}
		if end < len(b) {
			run := b[end:min(off+64, len(b))]
			v := byte(rng.Uint32())
			for i := range run {
				run[i] = v
			}
		}
	}
	var tag [24]byte
	binary.LittleEndian.PutUint64(tag[0:], seed)
	binary.LittleEndian.PutUint64(tag[8:], stream)
	binary.LittleEndian.PutUint64(tag[16:], index)
	copy(b, tag[:])
}

// DigestOf returns the SHA-256 digest of b.
func DigestOf(b []byte) *repb.Digest {
	sum := sha256.Sum256(b)
	return &repb.Digest{Hash: hex.EncodeToString(sum[:]), SizeBytes: int64(len(b))}
}

// randomDigest returns a digest that no server will hold: a random
// 64-character hash with a plausible size.
func randomDigest(rng *rand.Rand) *repb.Digest {
	var h [32]byte
	for i := 0; i < len(h); i += 8 {
		binary.LittleEndian.PutUint64(h[i:], rng.Uint64())
	}
	return &repb.Digest{Hash: hex.EncodeToString(h[:]), SizeBytes: 1 + rng.Int64N(1<<20)}
}
