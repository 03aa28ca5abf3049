package disk

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"path/filepath"
	"strconv"
	"strings"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/ferrule-build/ferrule/remote/store"
)

// On-disk layout under the store's directory:
//
//	LOCK                          flock'ed while a process uses the directory
//	DIRTY                         present while open; left behind by a crash
//	index/snapshot-<gen>          all entries, least recently used first
//	index/journal-<gen>           entries added and removed since snapshot <gen>
//	blobs/<ns>/<hh>/<hash>-<size> one value, with a header naming its key
//	blobs/<ns>/<hh>/.tmp-*        a value being written (renamed when complete)
//
// <ns> is the hex SHA-256 of the namespace (kind, digest function, instance
// name), so an instance name never takes part in a path; <hash> is the
// validated lowercase hex hash and <hh> its first two characters.

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// nsName is a namespace: entries of one kind, digest function and instance.
type nsName struct {
	kind     store.Kind
	function repb.DigestFunction_Value
	instance string
}

// dirName is the namespace's directory name under blobs/.
func (n nsName) dirName() string {
	var b [5]byte
	b[0] = byte(n.kind)
	binary.BigEndian.PutUint32(b[1:], uint32(n.function))
	h := sha256.New()
	h.Write(b[:])
	h.Write([]byte(n.instance))
	return hex.EncodeToString(h.Sum(nil))
}

// blobName is the file name of an entry within its namespace directory.
func blobName(hashHex string, size int64) string {
	return filepath.Join(hashHex[:2], hashHex+"-"+strconv.FormatInt(size, 10))
}

// parseBlobName is the inverse of the last element of blobName.
func parseBlobName(name string) (hash [32]byte, size int64, ok bool) {
	h, sz, found := strings.Cut(name, "-")
	if !found || len(h) != 64 || strings.ToLower(h) != h {
		return hash, 0, false
	}
	if _, err := hex.Decode(hash[:], []byte(h)); err != nil {
		return hash, 0, false
	}
	size, err := strconv.ParseInt(sz, 10, 64)
	if err != nil || size < 0 || strconv.FormatInt(size, 10) != sz {
		return hash, 0, false
	}
	return hash, size, true
}

// Blob files start with a header that names their key, so that a file is
// never served for a key other than its own and the index can be rebuilt
// from the files alone:
//
//	magic "FRB1" | flags u8 | kind u8 | function u32 | key size i64 |
//	value size i64 | hash [32] | instance length u32 | instance |
//	CRC-32C of everything before it (u32)
//
// and then hold the value: plain followed by a CRC-32C per block
// (flagChecked, checked.go) or as zstd frames with their table (flagZstd,
// compress.go). All integers are little-endian.
const (
	headerMagic     = "FRB1"
	headerFixedLen  = 4 + 1 + 1 + 4 + 8 + 8 + 32 + 4
	maxInstanceLen  = 64 << 10
	headerReadAhead = 512
)

type header struct {
	flags     byte // flagZstd: stored compressed (compress.go); flagChecked: plain with block CRCs (checked.go); neither: plain, unchecked (older files)
	ns        nsName
	hash      [32]byte
	keySize   int64
	valueSize int64
}

func (h *header) marshal() []byte {
	b := make([]byte, 0, headerFixedLen+len(h.ns.instance)+4)
	b = append(b, headerMagic...)
	b = append(b, h.flags, byte(h.ns.kind))
	b = binary.LittleEndian.AppendUint32(b, uint32(h.ns.function))
	b = binary.LittleEndian.AppendUint64(b, uint64(h.keySize))
	b = binary.LittleEndian.AppendUint64(b, uint64(h.valueSize))
	b = append(b, h.hash[:]...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(h.ns.instance)))
	b = append(b, h.ns.instance...)
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, crcTable))
}

var errBadHeader = errors.New("bad blob header")

// readHeader reads and checks the header of a blob file. It returns the
// header and its length in bytes.
func readHeader(r io.ReaderAt) (header, int64, error) {
	h, hlen, _, err := readHeaderAhead(r)
	return h, hlen, err
}

// readHeaderAhead is readHeader that also returns the first bytes of the
// file it read (up to headerReadAhead; the whole file if it is that short).
func readHeaderAhead(r io.ReaderAt) (header, int64, []byte, error) {
	var h header
	buf := make([]byte, headerReadAhead)
	n, err := r.ReadAt(buf, 0)
	if err != nil && err != io.EOF {
		return h, 0, nil, err
	}
	buf = buf[:n]
	h, total, err := parseHeader(r, buf)
	return h, total, buf, err
}

func parseHeader(r io.ReaderAt, buf []byte) (header, int64, error) {
	var h header
	if len(buf) < headerFixedLen || string(buf[:4]) != headerMagic {
		return h, 0, fmt.Errorf("%w: short or no magic", errBadHeader)
	}
	if h.flags = buf[4]; h.flags != 0 && h.flags != flagZstd && h.flags != flagChecked {
		return h, 0, fmt.Errorf("%w: unknown flags %#x", errBadHeader, buf[4])
	}
	h.ns.kind = store.Kind(buf[5])
	h.ns.function = repb.DigestFunction_Value(binary.LittleEndian.Uint32(buf[6:]))
	h.keySize = int64(binary.LittleEndian.Uint64(buf[10:]))
	h.valueSize = int64(binary.LittleEndian.Uint64(buf[18:]))
	copy(h.hash[:], buf[26:58])
	instLen := int64(binary.LittleEndian.Uint32(buf[58:]))
	if instLen > maxInstanceLen {
		return h, 0, fmt.Errorf("%w: instance name of %d bytes", errBadHeader, instLen)
	}
	total := headerFixedLen + instLen + 4
	if int64(len(buf)) < total {
		more := make([]byte, total)
		if _, err := r.ReadAt(more, 0); err != nil {
			return h, 0, fmt.Errorf("%w: %w", errBadHeader, err)
		}
		buf = more
	}
	h.ns.instance = string(buf[headerFixedLen : headerFixedLen+instLen])
	if crc32.Checksum(buf[:total-4], crcTable) != binary.LittleEndian.Uint32(buf[total-4:]) {
		return h, 0, fmt.Errorf("%w: checksum mismatch", errBadHeader)
	}
	if h.valueSize < 0 || h.keySize < 0 {
		return h, 0, fmt.Errorf("%w: negative size", errBadHeader)
	}
	return h, total, nil
}
