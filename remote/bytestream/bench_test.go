package bytestream_test

import (
	"context"
	"io"
	"math/rand/v2"
	"testing"

	bspb "google.golang.org/genproto/googleapis/bytestream"

	"fmt"
	"github.com/ferrule-build/ferrule/remote/bytestream"
	"github.com/ferrule-build/ferrule/remote/digest"
	"github.com/ferrule-build/ferrule/remote/grpcbuf"
	"github.com/ferrule-build/ferrule/remote/grpctest"
	"github.com/ferrule-build/ferrule/remote/store/disk"
	"github.com/ferrule-build/ferrule/remote/store/memory"
	"github.com/ferrule-build/ferrule/remote/zstdcodec"
	"google.golang.org/grpc"
	"google.golang.org/grpc/experimental"
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

func benchRead(b *testing.B, onDisk, compressed bool) {
	e := setupBench(b, benchStore(b, onDisk))
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

func BenchmarkRead(b *testing.B)               { benchRead(b, false, false) }
func BenchmarkReadCompressed(b *testing.B)     { benchRead(b, false, true) }
func BenchmarkReadDisk(b *testing.B)           { benchRead(b, true, false) }
func BenchmarkReadDiskCompressed(b *testing.B) { benchRead(b, true, true) }

// benchStore is the store the server runs by default: the disk store with
// zstd at rest, bounded, under the Verifying decorator bytestream.New adds;
// or the memory store.
func benchStore(b *testing.B, onDisk bool) testStore {
	if !onDisk {
		return memory.New(256 << 20)
	}
	d, err := disk.Open(disk.Options{Dir: b.TempDir(), MaxBytes: 256 << 20, Compress: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { d.Close() })
	return d
}

// benchWrite uploads a 4 MiB blob per iteration, in 64 KiB messages as
// `ferrule bench` sends them, each under a new instance name so that every
// upload is stored (the blob's digest is computed once, outside the loop).
func benchWrite(b *testing.B, onDisk, compressed bool) {
	e := setupBench(b, benchStore(b, onDisk))
	data := halfCompressible(4 << 20)
	d, err := digest.Of(sha, data)
	if err != nil {
		b.Fatal(err)
	}
	payload := data
	if compressed {
		payload = zstdcodec.Compress(data)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		name := resourceName(fmt.Sprintf("i%d", i), sha, d, "u", compressed)
		if _, err := write(context.Background(), e.c, name, 0, payload, 64<<10, true); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkWrite(b *testing.B)               { benchWrite(b, false, false) }
func BenchmarkWriteCompressed(b *testing.B)     { benchWrite(b, false, true) }
func BenchmarkWriteDisk(b *testing.B)           { benchWrite(b, true, false) }
func BenchmarkWriteDiskCompressed(b *testing.B) { benchWrite(b, true, true) }

// setupBench is setupWith with the gRPC buffer pool `ferrule serve` uses.
func setupBench(b *testing.B, st testStore) env {
	g := grpc.NewServer(experimental.BufferPool(grpcbuf.Default), grpc.ForceServerCodecV2(grpcbuf.Codec{}))
	srv := bytestream.New(st, bytestream.Options{})
	srv.Register(g)
	b.Cleanup(srv.Close)
	conn := grpctest.Dial(b, g)
	return env{bspb.NewByteStreamClient(conn), st}
}
