package disk

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"runtime"
	"sync"

	"github.com/klauspost/compress/zstd"

	"github.com/ferrule-build/ferrule/remote/store"
)

// With Options.Compress, a value is stored as independent zstd frames of
// chunkSize uncompressed bytes each (the last one shorter), followed by a
// table of the frames' compressed lengths and the CRC-32C of each frame's
// compressed bytes:
//
//	frame... | (length u32, crc32c u32) per frame | frame count u32 | "FRZ2"
//
// A read at any offset decompresses from the frame holding it, so random
// access costs at most one chunk of extra work. GetCompressed hands out
// the frames as they are, checked against their CRCs (much cheaper than
// decompressing them). Files of the first format, "FRZ1", have lengths
// only; their frames are checked by decompressing them.
const (
	chunkSize      = 256 << 10
	trailerMagic   = "FRZ2"
	trailerMagicV1 = "FRZ1"
	flagZstd       = 1
)

// zenc compresses chunks for all writers: EncodeAll uses one of its
// GOMAXPROCS encoders, so concurrent Puts compress in parallel (with one,
// every upload waited for the others' chunks); a window of one chunk is all
// an independently compressed chunk can use.
var (
	zenc, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)), zstd.WithWindowSize(chunkSize))
	zdec, _ = zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(chunkSize))
)

// chunkWriter compresses what is written to it chunk by chunk into w. It
// is a store.Lender: ReadExactly reads a value straight into its chunk
// buffer. That buffer grows with the bytes that arrived (from
// minChunkBuf up to chunkSize, where it stays), so that a Put waiting for
// data holds about what it was sent; the compressed frame's buffer is
// pooled and held only while a frame is written.
type chunkWriter struct {
	w       io.Writer
	buf     []byte // pending uncompressed bytes, < chunkSize
	table   []byte // (length, crc32c) per frame written
	written int64  // compressed bytes written to w
}

var _ store.Lender = (*chunkWriter)(nil)

// minChunkBuf is the chunk buffer's first size.
const minChunkBuf = 16 << 10

// frameBufs hold compressed frames while they are written.
var frameBufs = sync.Pool{New: func() any { b := make([]byte, 0, chunkSize+chunkSize/64); return &b }}

func newChunkWriter(w io.Writer) *chunkWriter { return &chunkWriter{w: w} }

// ReadBuffer implements store.Lender: the free part of the chunk buffer,
// grown if it is full.
func (c *chunkWriter) ReadBuffer() []byte {
	if len(c.buf) == cap(c.buf) {
		grown := make([]byte, len(c.buf), min(max(2*cap(c.buf), minChunkBuf), chunkSize))
		copy(grown, c.buf)
		c.buf = grown
	}
	return c.buf[len(c.buf):cap(c.buf)]
}

// Filled implements store.Lender.
func (c *chunkWriter) Filled(n int) error {
	c.buf = c.buf[:len(c.buf)+n]
	if len(c.buf) == chunkSize {
		return c.flush()
	}
	return nil
}

func (c *chunkWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		b := c.ReadBuffer()
		m := copy(b, p)
		p, n = p[m:], n+m
		if err := c.Filled(m); err != nil {
			return n, err
		}
	}
	return n, nil
}

func (c *chunkWriter) flush() error {
	if len(c.buf) == 0 {
		return nil
	}
	op := frameBufs.Get().(*[]byte)
	defer frameBufs.Put(op)
	out := zenc.EncodeAll(c.buf, (*op)[:0])
	*op = out
	c.buf = c.buf[:0]
	if _, err := c.w.Write(out); err != nil {
		return err
	}
	c.table = binary.LittleEndian.AppendUint32(c.table, uint32(len(out)))
	c.table = binary.LittleEndian.AppendUint32(c.table, crc32.Checksum(out, crcTable))
	c.written += int64(len(out))
	return nil
}

// Close writes the last chunk and the table. It does not close w.
func (c *chunkWriter) Close() error {
	if err := c.flush(); err != nil {
		return err
	}
	t := c.table
	t = binary.LittleEndian.AppendUint32(t, uint32(len(t)/8))
	t = append(t, trailerMagic...)
	_, err := c.w.Write(t)
	c.written += int64(len(t))
	return err
}

// chunkTable reads and checks the table of a compressed value stored in f
// after a header of hlen bytes, in a file of fileSize bytes, and returns the
// frames' start offsets in the file (one more than frames: the last is the
// table's start) and their CRC-32Cs (nil for a file of the first format).
func chunkTable(f io.ReaderAt, hlen, fileSize, valueSize int64) (starts []int64, crcs []uint32, err error) {
	frames := (valueSize + chunkSize - 1) / chunkSize
	// Read as much as the table of the current format takes (or what the
	// file has), then look at the magic to see which format it is.
	n := min(8*frames+8, fileSize-hlen)
	if n < 4*frames+8 {
		return nil, nil, fmt.Errorf("%w: compressed file too short", errBadHeader)
	}
	t := make([]byte, n)
	if _, err := f.ReadAt(t, fileSize-n); err != nil {
		return nil, nil, fmt.Errorf("%w: reading chunk table: %w", errBadHeader, err)
	}
	per := int64(8)
	switch string(t[n-4:]) {
	case trailerMagic:
		if n < 8*frames+8 {
			return nil, nil, fmt.Errorf("%w: compressed file too short", errBadHeader)
		}
	case trailerMagicV1:
		per = 4
	default:
		return nil, nil, fmt.Errorf("%w: bad chunk table", errBadHeader)
	}
	if int64(binary.LittleEndian.Uint32(t[n-8:])) != frames {
		return nil, nil, fmt.Errorf("%w: bad chunk table", errBadHeader)
	}
	tlen := per*frames + 8
	t = t[n-tlen:]
	starts = make([]int64, frames+1)
	starts[0] = hlen
	if per == 8 {
		crcs = make([]uint32, frames)
	}
	for i := range frames {
		starts[i+1] = starts[i] + int64(binary.LittleEndian.Uint32(t[per*i:]))
		if crcs != nil {
			crcs[i] = binary.LittleEndian.Uint32(t[per*i+4:])
		}
	}
	if starts[frames] != fileSize-tlen {
		return nil, nil, fmt.Errorf("%w: chunk table does not match the file size", errBadHeader)
	}
	return starts, crcs, nil
}

// chunkReader decompresses a value from offset on. A frame that does not
// decompress to what it must hold (zstd checks each frame's content
// checksum) is passed to corrupt, whose error Read returns.
type chunkReader struct {
	f         *os.File
	starts    []int64
	valueSize int64
	next      int    // next frame to decompress
	skip      int64  // bytes to drop from the next frame
	cur       []byte // decompressed bytes not yet returned
	in, out   []byte
	corrupt   func(error) error
}

func newChunkReader(f *os.File, starts []int64, valueSize, offset int64, corrupt func(error) error) *chunkReader {
	return &chunkReader{f: f, starts: starts, valueSize: valueSize, next: int(offset / chunkSize), skip: offset % chunkSize, corrupt: corrupt}
}

// fill decompresses the next frame; io.EOF after the last.
func (c *chunkReader) fill() error {
	if c.next >= len(c.starts)-1 {
		return io.EOF
	}
	i := c.next
	c.next++
	var err error
	if c.in, err = readFrame(c.f, c.starts, i, c.in); err != nil {
		return err
	}
	want := min(chunkSize, c.valueSize-int64(i)*chunkSize)
	out, err := zdec.DecodeAll(c.in, c.out[:0])
	if err != nil || int64(len(out)) != want {
		return c.corrupt(fmt.Errorf("frame %d does not decompress to %d bytes (%d, %v)", i, want, len(out), err))
	}
	c.out = out
	c.cur = out[c.skip:]
	c.skip = 0
	return nil
}

func (c *chunkReader) Read(p []byte) (int, error) {
	for len(c.cur) == 0 {
		if err := c.fill(); err != nil {
			return 0, err
		}
	}
	n := copy(p, c.cur)
	c.cur = c.cur[n:]
	return n, nil
}

// readFrame reads stored frame i of a compressed value (bounds from the
// chunk table) into buf, reusing its capacity, and returns the frame.
func readFrame(f io.ReaderAt, starts []int64, i int, buf []byte) ([]byte, error) {
	n := starts[i+1] - starts[i]
	if n < 0 || n > 2*chunkSize {
		return buf, fmt.Errorf("%w: frame %d has %d bytes", errBadHeader, i, n)
	}
	if int64(cap(buf)) < n {
		buf = make([]byte, n, max(n, chunkSize+chunkSize/16))
	}
	buf = buf[:n]
	if _, err := f.ReadAt(buf, starts[i]); err != nil {
		return buf, fmt.Errorf("reading frame %d: %w", i, err)
	}
	return buf, nil
}

func (c *chunkReader) Close() error { return c.f.Close() }

// checkLayout checks that a file's size fits its header: exactly header
// plus value for plain values, a consistent chunk table for compressed ones.
func checkLayout(f io.ReaderAt, hdr header, hlen, fileSize int64) error {
	want := hlen + hdr.valueSize
	switch hdr.flags {
	case flagZstd:
		_, _, err := chunkTable(f, hlen, fileSize, hdr.valueSize)
		return err
	case flagChecked:
		want = checkedSize(hlen, hdr.valueSize)
	}
	if fileSize != want {
		return fmt.Errorf("%w: file is truncated or too long (%d bytes, header says %d+%d)", errBadHeader, fileSize, hlen, hdr.valueSize)
	}
	return nil
}

// frameReader returns the stored zstd frames of a compressed value as they
// are, one frame at a time, each checked first against the CRC-32C in the
// table (or, for files without CRCs, decompressed, which checks its
// checksum, and its length compared with what the frame must hold), so
// that a damaged frame is an error instead of bytes passed on.
type frameReader struct {
	f         *os.File
	starts    []int64
	crcs      []uint32 // nil: check by decompressing
	valueSize int64
	next      int    // next frame to read
	cur       []byte // checked frame bytes not yet returned
	in        []byte
	out       *[]byte // scratch for the check, from framePool
	corrupt   func(error) error
}

var framePool = sync.Pool{New: func() any { b := make([]byte, 0, chunkSize); return &b }}

func (c *frameReader) Read(p []byte) (int, error) {
	for len(c.cur) == 0 {
		if c.next >= len(c.starts)-1 {
			return 0, io.EOF
		}
		i := c.next
		c.next++
		var err error
		if c.in, err = readFrame(c.f, c.starts, i, c.in); err != nil {
			return 0, err
		}
		if c.crcs != nil {
			if crc32.Checksum(c.in, crcTable) != c.crcs[i] {
				return 0, c.corrupt(fmt.Errorf("frame %d does not match its CRC", i))
			}
			c.cur = c.in
			continue
		}
		if c.out == nil {
			c.out = framePool.Get().(*[]byte)
		}
		want := min(chunkSize, c.valueSize-int64(i)*chunkSize)
		out, err := zdec.DecodeAll(c.in, (*c.out)[:0])
		if cap(out) <= 2*chunkSize {
			*c.out = out[:0]
		}
		if err != nil || int64(len(out)) != want {
			return 0, c.corrupt(fmt.Errorf("frame %d does not decompress to %d bytes (%d, %v)", i, want, len(out), err))
		}
		c.cur = c.in
	}
	n := copy(p, c.cur)
	c.cur = c.cur[n:]
	return n, nil
}

func (c *frameReader) Close() error {
	if c.out != nil {
		framePool.Put(c.out)
		c.out = nil
	}
	return c.f.Close()
}
