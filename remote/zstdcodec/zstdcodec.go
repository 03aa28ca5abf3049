// Package zstdcodec holds the pooled zstd encoders and decoders every
// service uses for compressed-blobs and batch compression.
package zstdcodec

import (
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// ErrCorrupt is returned (wrapped) when compressed data cannot be decoded.
var ErrCorrupt = errors.New("corrupt compressed data")

// MaxWindow bounds the window a zstd stream may ask the decoder to
// allocate. Real encoders use at most 8 MiB unless asked for long-distance
// matching; 64 MiB leaves room for that without letting a hostile header
// reserve gigabytes.
const MaxWindow = 64 << 20

var decoders = sync.Pool{New: func() any {
	d, err := zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxWindow(MaxWindow),
		zstd.WithDecoderMaxMemory(MaxWindow*2))
	if err != nil {
		panic(fmt.Sprintf("zstd decoder options: %v", err)) // fixed options: a programming error
	}
	return d
}}

var encoders = sync.Pool{New: func() any {
	// Fastest level, one goroutine per stream, a 1 MiB window: about
	// 2 MiB per pooled encoder (8 MiB with the default window) at the same
	// speed; WithLowerEncoderMem would save more but cost throughput.
	e, err := zstd.NewWriter(nil,
		zstd.WithEncoderLevel(zstd.SpeedFastest),
		zstd.WithEncoderConcurrency(1),
		zstd.WithWindowSize(1<<20))
	if err != nil {
		panic(fmt.Sprintf("zstd encoder options: %v", err))
	}
	return e
}}

// Decompressor reads the decompressed form of a zstd stream. Close returns
// its decoder for reuse; it does not close the source.
type Decompressor struct {
	d *zstd.Decoder
}

// NewDecompressor starts decoding the zstd stream r. Callers bound how much
// they read (Verify does), so a stream that inflates without end costs no
// more than the declared size.
func NewDecompressor(r io.Reader) (*Decompressor, error) {
	d := decoders.Get().(*zstd.Decoder)
	if err := d.Reset(r); err != nil {
		decoders.Put(d)
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return &Decompressor{d: d}, nil
}

func (z *Decompressor) Read(p []byte) (int, error) {
	if z.d == nil {
		return 0, errors.New("read after close")
	}
	n, err := z.d.Read(p)
	if err != nil && err != io.EOF {
		err = fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return n, err
}

// Close releases the decoder.
func (z *Decompressor) Close() error {
	if z.d != nil {
		z.d.Reset(nil)
		decoders.Put(z.d)
		z.d = nil
	}
	return nil
}

// Compressor writes a zstd stream of what is written to it into an
// underlying writer. Close flushes the stream's end and releases the encoder;
// it does not close the underlying writer.
type Compressor struct {
	e *zstd.Encoder
}

// NewCompressor starts a zstd stream into w.
func NewCompressor(w io.Writer) *Compressor {
	e := encoders.Get().(*zstd.Encoder)
	e.Reset(w)
	return &Compressor{e: e}
}

func (z *Compressor) Write(p []byte) (int, error) {
	if z.e == nil {
		return 0, errors.New("write after close")
	}
	return z.e.Write(p)
}

// ReadFrom compresses everything r yields, reading straight into the
// encoder's buffers.
func (z *Compressor) ReadFrom(r io.Reader) (int64, error) {
	if z.e == nil {
		return 0, errors.New("write after close")
	}
	return z.e.ReadFrom(r)
}

// Close ends the stream and releases the encoder.
func (z *Compressor) Close() error {
	if z.e == nil {
		return nil
	}
	err := z.e.Close()
	z.e.Reset(nil)
	encoders.Put(z.e)
	z.e = nil
	return err
}

// Compress returns data as one zstd frame.
func Compress(data []byte) []byte {
	e := encoders.Get().(*zstd.Encoder)
	out := e.EncodeAll(data, make([]byte, 0, len(data)/2+64))
	encoders.Put(e)
	return out
}
