// Package cdc holds the content-defined chunking functions of the REAPI's
// split and splice calls: FastCDC 2020 (the cut points Bazel 8.7+ computes)
// and RepMaxCDC (Buildbarn's go-cdc, used as a library).
package cdc

import (
	"bufio"
	"errors"
	"fmt"
	"io"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	gocdc "github.com/buildbarn/go-cdc"
)

// Chunker cuts a byte stream into content-defined chunks.
type Chunker interface {
	// Function is the REAPI name of the chunking function.
	Function() repb.ChunkingFunction_Value
	// Split reads r to its end and calls emit with each chunk, in order. The
	// slice is valid only during the call. An empty stream has no chunks.
	Split(r io.Reader, emit func(chunk []byte) error) error
}

// Defaults are the parameters Bazel uses and the server advertises.
const (
	DefaultFastCDCAvg    = 512 << 10
	DefaultRepMaxMin     = 256 << 10
	DefaultRepMaxHorizon = 8 * DefaultRepMaxMin
	minFastCDCAvg        = 1 << 10
	maxFastCDCAvg        = 8 << 20
	gearWindow           = 64 // bytes covered by the Gear hash
	maxRepMaxMin         = 64 << 20
	maxRepMaxHorizon     = 256 << 20
	fastCDCNormalization = 2
)

// ErrParams is returned (wrapped) for parameters outside the allowed ranges.
var ErrParams = errors.New("chunking parameters out of range")

// CheckFastCDC validates FastCDC 2020 parameters as the REAPI bounds them:
// an average chunk size that is a power of two between 1 KiB and 8 MiB.
func CheckFastCDC(p *repb.FastCdc2020Params) error {
	avg := p.GetAvgChunkSizeBytes()
	if avg < minFastCDCAvg || avg > maxFastCDCAvg || avg&(avg-1) != 0 {
		return fmt.Errorf("%w: FastCDC 2020 avg_chunk_size_bytes %d is not a power of two in [1 KiB, 8 MiB]", ErrParams, avg)
	}
	return nil
}

// CheckRepMax validates RepMaxCDC parameters: a minimum chunk size of at
// least the Gear window (64 bytes) and at most 64 MiB, a horizon of at most
// 256 MiB.
func CheckRepMax(p *repb.RepMaxCdcParams) error {
	m, h := p.GetMinChunkSizeBytes(), p.GetHorizonSizeBytes()
	if m < gearWindow || m > maxRepMaxMin {
		return fmt.Errorf("%w: RepMaxCDC min_chunk_size_bytes %d is not in [64, 64 MiB]", ErrParams, m)
	}
	if h > maxRepMaxHorizon {
		return fmt.Errorf("%w: RepMaxCDC horizon_size_bytes %d is over 256 MiB", ErrParams, h)
	}
	return nil
}

// NewFastCDC returns the FastCDC 2020 chunker for p: minimum avg/4, maximum
// avg*4, normalization level 2, as the REAPI and Bazel define it.
func NewFastCDC(p *repb.FastCdc2020Params) (Chunker, error) {
	if err := CheckFastCDC(p); err != nil {
		return nil, err
	}
	avg := int(p.GetAvgChunkSizeBytes())
	return newFastCDC(avg/4, avg, avg*4, fastCDCNormalization, p.GetSeed())
}

// NewRepMax returns the RepMaxCDC chunker for p, go-cdc's with its Gear
// table (the same table as FastCDC's).
func NewRepMax(p *repb.RepMaxCdcParams) (Chunker, error) {
	if err := CheckRepMax(p); err != nil {
		return nil, err
	}
	m, h := int(p.GetMinChunkSizeBytes()), int(p.GetHorizonSizeBytes())
	c := gocdc.NewRepMaxContentDefinedChunker(&gocdc.FastContentDefinedChunkerGearTable, m, h)
	return &repMax{c: c, peek: c.GetMaximumPeekSizeBytes()}, nil
}

type repMax struct {
	c    gocdc.ContentDefinedChunker
	peek int
}

func (*repMax) Function() repb.ChunkingFunction_Value { return repb.ChunkingFunction_REP_MAX_CDC }

func (r *repMax) Split(in io.Reader, emit func([]byte) error) error {
	cr := r.c.NewChunkReader(bufio.NewReaderSize(in, r.peek))
	for {
		chunk, err := cr.ReadNextChunk()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := emit(chunk); err != nil {
			return err
		}
	}
}
