package cdc

import (
	"bytes"
	"crypto/sha256"
	"math/rand"
	"os"
	"strconv"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
)

// chunkers returns both functions with the parameters Bazel uses by
// default (and the server advertises), or with CDC_FASTCDC_AVG and
// CDC_REPMAX_MIN (horizon 8x) when set.
func chunkers(b *testing.B) map[string]Chunker {
	avg, min := uint64(DefaultFastCDCAvg), uint64(DefaultRepMaxMin)
	if v, err := strconv.ParseUint(os.Getenv("CDC_FASTCDC_AVG"), 10, 64); err == nil {
		avg = v
	}
	if v, err := strconv.ParseUint(os.Getenv("CDC_REPMAX_MIN"), 10, 64); err == nil {
		min = v
	}
	fc, err := NewFastCDC(&repb.FastCdc2020Params{AvgChunkSizeBytes: avg})
	if err != nil {
		b.Fatal(err)
	}
	rm, err := NewRepMax(&repb.RepMaxCdcParams{MinChunkSizeBytes: min, HorizonSizeBytes: 8 * min})
	if err != nil {
		b.Fatal(err)
	}
	return map[string]Chunker{"fastcdc2020": fc, "repmaxcdc": rm}
}

// BenchmarkChunk measures chunking alone (no hashing of the chunks), on one
// core, over 64 MiB of random bytes.
func BenchmarkChunk(b *testing.B) {
	data := make([]byte, 64<<20)
	rand.New(rand.NewSource(1)).Read(data)
	for name, c := range chunkers(b) {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if err := c.Split(bytes.NewReader(data), func([]byte) error { return nil }); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkTransfer compares two versions of an artifact named by
// CDC_OLD and CDC_NEW: with the old one's chunks on the other side, how
// many bytes the new one costs to move whole and by chunks. It reports
// bytes (not time): new-bytes (whole), sent-bytes (new chunks only) and
// chunks.
func BenchmarkTransfer(b *testing.B) {
	oldPath, newPath := os.Getenv("CDC_OLD"), os.Getenv("CDC_NEW")
	if oldPath == "" || newPath == "" {
		b.Skip("set CDC_OLD and CDC_NEW to two versions of a file")
	}
	oldData, err := os.ReadFile(oldPath)
	if err != nil {
		b.Fatal(err)
	}
	newData, err := os.ReadFile(newPath)
	if err != nil {
		b.Fatal(err)
	}
	for name, c := range chunkers(b) {
		b.Run(name, func(b *testing.B) {
			var sent, chunks int
			for b.Loop() {
				have := map[[32]byte]bool{}
				c.Split(bytes.NewReader(oldData), func(p []byte) error { have[sha256.Sum256(p)] = true; return nil })
				sent, chunks = 0, 0
				c.Split(bytes.NewReader(newData), func(p []byte) error {
					chunks++
					if h := sha256.Sum256(p); !have[h] {
						have[h] = true
						sent += len(p)
					}
					return nil
				})
			}
			b.ReportMetric(float64(len(newData)), "new-bytes")
			b.ReportMetric(float64(sent), "sent-bytes")
			b.ReportMetric(float64(chunks), "chunks")
		})
	}
}
