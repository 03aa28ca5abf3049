// Package grpcbuf is the buffer pool Ferrule's gRPC server hands to grpc-go
// (experimental.BufferPool) and the protobuf codec that takes its buffers
// from it (grpc.ForceServerCodecV2).
//
// grpc-go's public pools clear a buffer's whole capacity every time they
// hand it out; under ByteStream traffic that clearing was a fifth of the
// server's CPU. gRPC fills every buffer it takes before reading it (a
// frame is read whole into it, a message is marshalled over it), as its
// own transport's unexported dirty pool relies on, so this pool hands
// buffers out as they were returned. Tiers are powers of two from 256 B to
// 4 MiB, so a message takes at most twice its size; larger requests are
// allocated and not kept.
package grpcbuf

import (
	"math/bits"
	"sync"

	"google.golang.org/grpc/mem"
)

const (
	minShift = 8  // 256 B
	maxShift = 22 // 4 MiB
)

// Pool is a mem.BufferPool of power-of-two tiers that does not clear
// buffers. The zero value is ready to use; share one.
type Pool struct {
	tiers [maxShift - minShift + 1]sync.Pool
}

var _ mem.BufferPool = (*Pool)(nil)

// Default is the pool the server and the load generator share.
var Default = &Pool{}

// tier returns the index of the smallest tier holding size bytes, or -1 if
// size is over the largest.
func tier(size int) int {
	if size <= 1<<minShift {
		return 0
	}
	shift := bits.Len(uint(size - 1)) // 2^shift >= size
	if shift > maxShift {
		return -1
	}
	return shift - minShift
}

// Get returns a buffer of length size; its contents are whatever it held.
func (p *Pool) Get(size int) *[]byte {
	i := tier(size)
	if i < 0 {
		b := make([]byte, size)
		return &b
	}
	if v, ok := p.tiers[i].Get().(*[]byte); ok {
		*v = (*v)[:size]
		return v
	}
	b := make([]byte, size, 1<<(i+minShift))
	return &b
}

// Put returns a buffer taken with Get. Buffers whose capacity is not one
// of the tiers' are dropped.
func (p *Pool) Put(b *[]byte) {
	c := cap(*b)
	i := tier(c)
	if i < 0 || c != 1<<(i+minShift) {
		return
	}
	p.tiers[i].Put(b)
}
