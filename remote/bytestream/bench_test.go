package bytestream_test

import (
	"context"
	"io"
	"math/rand/v2"
	"testing"

	bspb "google.golang.org/genproto/googleapis/bytestream"

	"github.com/ferrule-build/ferrule/remote/bytestream"
)

// halfCompressible returns n bytes that zstd compresses about 2:1.
func halfCompressible(n int) []byte {
	rng := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, n)
	for i := 0; i < n; i += 64 {
		for j := i; j < min(i+32, n); j++ {
			b[j] = byte(rng.Uint32())
		}
		for j := i + 32; j < min(i+64, n); j++ {
			b[j] = b[i]
		}
	}
	return b
}

func benchRead(b *testing.B, compressed bool) {
	e := setupB(b)
	data := halfCompressible(4 << 20)
	up, _ := nameB(b, data, "u", false)
	if _, err := write(context.Background(), e.c, up, 0, data, 64<<10, true); err != nil {
		b.Fatal(err)
	}
	rd, _ := nameB(b, data, "", compressed)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		stream, err := e.c.Read(context.Background(), &bspb.ReadRequest{ResourceName: rd})
		if err != nil {
			b.Fatal(err)
		}
		for {
			_, err := stream.Recv()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
		}
	}
}

func BenchmarkRead(b *testing.B)           { benchRead(b, false) }
func BenchmarkReadCompressed(b *testing.B) { benchRead(b, true) }

var _ = bytestream.ChunkSize
