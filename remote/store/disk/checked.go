package disk

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"sync"

	"github.com/ferrule-build/ferrule/remote/store"
)

// A value stored plain (not compressed) is followed by the CRC-32C of each
// block of chunkSize bytes of it (the last block shorter), so that any read
// is checked, at an offset too, for the cost of at most one block read
// from its start:
//
//	header (flags has flagChecked) | value | crc32c u32 per block
//
// Files written before these CRCs (flags 0) stay readable unchecked.
const flagChecked = 2

// blocks is the number of checksummed blocks of a value of n bytes.
func blocks(n int64) int64 { return (n + chunkSize - 1) / chunkSize }

// checkedSize is the size of the file holding a plain checked value of n
// bytes after a header of hlen bytes.
func checkedSize(hlen, n int64) int64 { return hlen + n + 4*blocks(n) }

// crcWriter passes a value through to w and, at Close, appends the CRCs of
// its blocks.
type crcWriter struct {
	w     io.Writer
	crc   uint32 // of the current block so far
	fill  int    // bytes in the current block
	table []byte
}

func (c *crcWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		m := min(len(p), chunkSize-c.fill)
		k, err := c.w.Write(p[:m])
		c.crc = crc32.Update(c.crc, crcTable, p[:k])
		c.fill += k
		n += k
		if err != nil {
			return n, err
		}
		p = p[m:]
		if c.fill == chunkSize {
			c.table = binary.LittleEndian.AppendUint32(c.table, c.crc)
			c.crc, c.fill = 0, 0
		}
	}
	return n, nil
}

// plainWriter is a crcWriter over a lazyWriter that lends ReadExactly the
// lazyWriter's file buffer (store.Lender): a plain value is read straight
// into it, with no copy buffer.
type plainWriter struct {
	crcWriter
	lw *lazyWriter
}

var _ store.Lender = (*plainWriter)(nil)

func newPlainWriter(lw *lazyWriter) *plainWriter {
	return &plainWriter{crcWriter: crcWriter{w: lw}, lw: lw}
}

// ReadBuffer implements store.Lender: the file buffer's free space, up to
// the end of the current block.
func (c *plainWriter) ReadBuffer() []byte {
	b := c.lw.ReadBuffer()
	return b[:min(len(b), chunkSize-c.fill)]
}

// Filled implements store.Lender.
func (c *plainWriter) Filled(n int) error {
	b := c.lw.ReadBuffer()[:n]
	c.crc = crc32.Update(c.crc, crcTable, b)
	c.fill += n
	if c.fill == chunkSize {
		c.table = binary.LittleEndian.AppendUint32(c.table, c.crc)
		c.crc, c.fill = 0, 0
	}
	return c.lw.Filled(n)
}

// Close writes the CRC table. It does not close w.
func (c *crcWriter) Close() error {
	if c.fill > 0 {
		c.table = binary.LittleEndian.AppendUint32(c.table, c.crc)
	}
	_, err := c.w.Write(c.table)
	return err
}

// crcTableOf reads the block CRCs of a plain checked value from f (or from
// head, the file's first bytes, if they hold the whole file).
func crcTableOf(f io.ReaderAt, head []byte, hlen, valueSize int64) ([]uint32, error) {
	nb := blocks(valueSize)
	at := hlen + valueSize
	var t []byte
	if end := at + 4*nb; int64(len(head)) >= end {
		t = head[at:end]
	} else {
		t = make([]byte, 4*nb)
		if _, err := f.ReadAt(t, at); err != nil {
			return nil, fmt.Errorf("%w: reading the block CRCs: %w", errBadHeader, err)
		}
	}
	crcs := make([]uint32, nb)
	for i := range crcs {
		crcs[i] = binary.LittleEndian.Uint32(t[4*i:])
	}
	return crcs, nil
}

// blockReader reads a plain checked value from offset on, one block at a
// time, each checked against its CRC before any of its bytes is returned.
// A mismatch is passed to corrupt, whose error Read returns.
type blockReader struct {
	f         *os.File
	head      []byte // the file's first bytes; blocks inside it are not read again
	base      int64  // offset of the value in the file
	valueSize int64
	crcs      []uint32 // nil: one block, read together with the CRC after it
	next      int      // next block to read
	skip      int64    // bytes to drop from the next block
	cur       []byte
	buf       *[]byte // from smallBufs or blockBufs
	corrupt   func(error) error
}

// Buffers for blocks read from files: small ones for the bulk of blobs,
// and whole blocks (with room for a CRC).
var (
	smallBufs = sync.Pool{New: func() any { b := make([]byte, 16<<10); return &b }}
	blockBufs = sync.Pool{New: func() any { b := make([]byte, chunkSize+4); return &b }}
)

func newBlockReader(f *os.File, head []byte, base, valueSize int64, crcs []uint32, offset int64, corrupt func(error) error) *blockReader {
	return &blockReader{f: f, head: head, base: base, valueSize: valueSize, crcs: crcs,
		next: int(offset / chunkSize), skip: offset % chunkSize, corrupt: corrupt}
}

// fill reads and checks the next block into b.cur; io.EOF after the last.
func (b *blockReader) fill() error {
	_, err := b.fillInto(nil)
	return err
}

// fillInto is fill that reads the block into p instead, and returns its
// length, if p has room for it (and its CRC) and none of it is skipped:
// a large read then costs no copy.
func (b *blockReader) fillInto(p []byte) (int, error) {
	nb, crcLen := len(b.crcs), int64(0)
	if b.crcs == nil {
		nb, crcLen = int(blocks(b.valueSize)), 4
	}
	if b.next >= nb {
		return 0, io.EOF
	}
	i := b.next
	b.next++
	at := b.base + int64(i)*chunkSize
	n := min(chunkSize, b.valueSize-int64(i)*chunkSize)
	var raw []byte
	direct, inHead := false, at+n+crcLen <= int64(len(b.head))
	switch {
	case inHead:
		raw = b.head[at : at+n+crcLen]
	case b.skip == 0 && int64(len(p)) >= n+crcLen:
		raw, direct = p[:n+crcLen], true
	default:
		if b.buf == nil {
			if n+crcLen <= 16<<10 {
				b.buf = smallBufs.Get().(*[]byte)
			} else {
				b.buf = blockBufs.Get().(*[]byte)
			}
		}
		raw = (*b.buf)[:n+crcLen]
	}
	if !inHead {
		if _, err := b.f.ReadAt(raw, at); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return 0, fmt.Errorf("reading block %d: %w", i, err)
		}
	}
	blk := raw[:n]
	var want uint32
	if b.crcs == nil {
		want = binary.LittleEndian.Uint32(raw[n:])
	} else {
		want = b.crcs[i]
	}
	if crc32.Checksum(blk, crcTable) != want {
		return 0, b.corrupt(fmt.Errorf("block %d (bytes %d-%d) does not match its CRC", i, int64(i)*chunkSize, int64(i)*chunkSize+n))
	}
	if direct {
		return int(n), nil
	}
	b.cur = blk[b.skip:]
	b.skip = 0
	return 0, nil
}

func (b *blockReader) Read(p []byte) (int, error) {
	for len(b.cur) == 0 {
		n, err := b.fillInto(p)
		if n > 0 || err != nil {
			return n, err
		}
	}
	n := copy(p, b.cur)
	b.cur = b.cur[n:]
	return n, nil
}

func (b *blockReader) Close() error {
	if b.buf != nil {
		if cap(*b.buf) == 16<<10 {
			smallBufs.Put(b.buf)
		} else {
			blockBufs.Put(b.buf)
		}
		b.buf, b.cur = nil, nil
	}
	return b.f.Close()
}
