package disk

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/ferrule-build/ferrule/remote/store"
)

// The index is persisted as a snapshot plus journals. A snapshot lists the
// namespaces and every entry, least recently used first, and ends with an
// end record; it is written to a temporary name and renamed, so it is
// either whole or absent. A journal records entries added and removed
// since the snapshot of the same generation. Both are sequences of records:
//
//	payload length u32 | CRC-32C of payload u32 | payload
//
// The store keeps two rules that make a crash (kill -9) safe:
//   - an add is journaled only after its file has been renamed into place;
//   - a removal is journaled (written to the kernel) before its file is
//     unlinked.
//
// So whatever the journal says is present has a complete file, and a crash
// can at worst leave a file the index does not know (an orphan, which the
// sweep that follows an unclean start verifies and adopts, or removes if
// it is invalid) or a torn last record (ignored). A power loss can also
// lose the journal's unsynced tail: the sweep adopts the files it named;
// with Options.Fsync no acknowledged record is in that tail (durable.go).
const (
	fileMagic = "FRIDX001"

	opNamespace byte = 1 // ns u32 | kind u8 | function u32 | instance
	opAdd       byte = 2 // ns u32 | hash [32] | key size i64 | disk size i64 (see Store.footprint)
	opRemove    byte = 3 // ns u32 | hash [32] | key size i64
	opEnd       byte = 4 // entries u64 (snapshots only)

	maxRecordLen = 1 + 4 + 1 + 4 + maxInstanceLen
)

var errTorn = errors.New("torn or corrupt record")

func appendRecord(b []byte, payload []byte) []byte {
	b = binary.LittleEndian.AppendUint32(b, uint32(len(payload)))
	b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(payload, crcTable))
	return append(b, payload...)
}

// appendFramed appends a record whose payload is built by f in place.
func appendFramed(b []byte, f func([]byte) []byte) []byte {
	start := len(b)
	b = append(b, 0, 0, 0, 0, 0, 0, 0, 0)
	b = f(b)
	payload := b[start+8:]
	binary.LittleEndian.PutUint32(b[start:], uint32(len(payload)))
	binary.LittleEndian.PutUint32(b[start+4:], crc32.Checksum(payload, crcTable))
	return b
}

func appendNamespace(b []byte, id uint32, n nsName) []byte {
	return appendFramed(b, func(b []byte) []byte {
		b = append(b, opNamespace)
		b = binary.LittleEndian.AppendUint32(b, id)
		b = append(b, byte(n.kind))
		b = binary.LittleEndian.AppendUint32(b, uint32(n.function))
		return append(b, n.instance...)
	})
}

func appendAdd(b []byte, k entryKey, size int64) []byte {
	return appendFramed(b, func(b []byte) []byte {
		b = append(b, opAdd)
		b = binary.LittleEndian.AppendUint32(b, k.ns)
		b = append(b, k.hash[:]...)
		b = binary.LittleEndian.AppendUint64(b, uint64(k.size))
		return binary.LittleEndian.AppendUint64(b, uint64(size))
	})
}

func appendRemove(b []byte, k entryKey) []byte {
	return appendFramed(b, func(b []byte) []byte {
		b = append(b, opRemove)
		b = binary.LittleEndian.AppendUint32(b, k.ns)
		b = append(b, k.hash[:]...)
		return binary.LittleEndian.AppendUint64(b, uint64(k.size))
	})
}

func appendEnd(b []byte, entries uint64) []byte {
	return appendFramed(b, func(b []byte) []byte {
		return binary.LittleEndian.AppendUint64(append(b, opEnd), entries)
	})
}

// recordReader reads records from an index file.
type recordReader struct {
	r   *bufio.Reader
	buf []byte
}

func newRecordReader(r io.Reader) (*recordReader, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	magic := make([]byte, len(fileMagic))
	if _, err := io.ReadFull(br, magic); err != nil || string(magic) != fileMagic {
		return nil, fmt.Errorf("%w: no index file magic", errTorn)
	}
	return &recordReader{r: br, buf: make([]byte, 256)}, nil
}

// next returns the next record's payload, valid until the next call. It
// returns io.EOF at a clean end and errTorn for a short or corrupt record.
func (rr *recordReader) next() ([]byte, error) {
	var hdr [8]byte
	if _, err := io.ReadFull(rr.r, hdr[:]); err != nil {
		if err == io.EOF {
			return nil, io.EOF
		}
		return nil, errTorn
	}
	n := binary.LittleEndian.Uint32(hdr[:])
	if n == 0 || n > maxRecordLen {
		return nil, errTorn
	}
	if int(n) > cap(rr.buf) {
		rr.buf = make([]byte, n)
	}
	p := rr.buf[:n]
	if _, err := io.ReadFull(rr.r, p); err != nil {
		return nil, errTorn
	}
	if crc32.Checksum(p, crcTable) != binary.LittleEndian.Uint32(hdr[4:]) {
		return nil, errTorn
	}
	return p, nil
}

// loadState is the index being rebuilt from a snapshot and journals.
type loadState struct {
	idx    index
	nsList []nsName
	// footprint rounds recorded sizes up to what a file takes on disk
	// (records written before sizes were counted so hold value bytes).
	footprint func(int64) int64
}

// apply applies one record. It reports whether the record was an end record.
func (ls *loadState) apply(p []byte) (end bool, err error) {
	switch op := p[0]; {
	case op == opNamespace && len(p) >= 10:
		id := binary.LittleEndian.Uint32(p[1:])
		n := nsName{
			kind:     store.Kind(p[5]),
			function: repb.DigestFunction_Value(binary.LittleEndian.Uint32(p[6:])),
			instance: string(p[10:]),
		}
		switch {
		case int(id) == len(ls.nsList):
			ls.nsList = append(ls.nsList, n)
		case int(id) < len(ls.nsList) && ls.nsList[id] == n:
		default:
			return false, fmt.Errorf("namespace record %d does not follow the %d known", id, len(ls.nsList))
		}
	case op == opAdd && len(p) == 1+4+32+8+8:
		k, err := ls.decodeKey(p)
		if err != nil {
			return false, err
		}
		size := int64(binary.LittleEndian.Uint64(p[45:]))
		if size < 0 {
			return false, fmt.Errorf("negative value size in record")
		}
		ls.idx.add(k, ls.footprint(size))
	case op == opRemove && len(p) == 1+4+32+8:
		k, err := ls.decodeKey(p)
		if err != nil {
			return false, err
		}
		ls.idx.remove(k)
	case op == opEnd && len(p) == 9:
		if n := binary.LittleEndian.Uint64(p[1:]); n != uint64(ls.idx.len()) {
			return false, fmt.Errorf("end record counts %d entries, read %d", n, ls.idx.len())
		}
		return true, nil
	default:
		return false, fmt.Errorf("unknown record (op %d, %d bytes)", p[0], len(p))
	}
	return false, nil
}

func (ls *loadState) decodeKey(p []byte) (entryKey, error) {
	var k entryKey
	k.ns = binary.LittleEndian.Uint32(p[1:])
	if int(k.ns) >= len(ls.nsList) {
		return k, fmt.Errorf("record names unknown namespace %d", k.ns)
	}
	copy(k.hash[:], p[5:37])
	k.size = int64(binary.LittleEndian.Uint64(p[37:]))
	return k, nil
}

// loadSnapshot reads a whole snapshot into ls; anything but a complete,
// valid snapshot is an error.
func (ls *loadState) loadSnapshot(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && ls.idx.len() == 0 {
		// Size the index for the entries the snapshot holds (each add
		// record is 61 bytes) rather than growing it a million times.
		ls.idx = newIndex(int(fi.Size() / 61))
	}
	rr, err := newRecordReader(f)
	if err != nil {
		return err
	}
	for {
		p, err := rr.next()
		if err != nil {
			if err == io.EOF {
				return fmt.Errorf("snapshot %s has no end record", path)
			}
			return fmt.Errorf("snapshot %s: %w", path, err)
		}
		end, err := ls.apply(p)
		if err != nil {
			return fmt.Errorf("snapshot %s: %w", path, err)
		}
		if end {
			return nil
		}
	}
}

// replayJournal applies a journal's records to ls. A torn record ends the
// journal (it can only be the last one written before a crash); it is
// reported as clean=false.
func (ls *loadState) replayJournal(path string) (records int64, clean bool, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, false, err
	}
	defer f.Close()
	rr, err := newRecordReader(f)
	if err != nil {
		// A journal created but never written to by a crashed process.
		return 0, false, nil
	}
	for {
		p, err := rr.next()
		if err == io.EOF {
			return records, true, nil
		}
		if err != nil {
			return records, false, nil
		}
		if _, err := ls.apply(p); err != nil {
			return records, false, fmt.Errorf("journal %s: %w", path, err)
		}
		records++
	}
}

// indexFiles lists the generations of the snapshots and journals in dir,
// in ascending order, and removes leftover temporary snapshots.
func indexFiles(dir string) (snapshots, journals []uint64, err error) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, err
	}
	for _, de := range des {
		name := de.Name()
		prefix, gen, ok := strings.Cut(name, "-")
		if !ok {
			continue
		}
		g, perr := strconv.ParseUint(gen, 16, 64)
		switch {
		case prefix == "snapshot" && perr == nil:
			snapshots = append(snapshots, g)
		case prefix == "journal" && perr == nil:
			journals = append(journals, g)
		case strings.HasPrefix(name, ".tmp-"):
			os.Remove(filepath.Join(dir, name))
		}
	}
	sort.Slice(snapshots, func(i, j int) bool { return snapshots[i] < snapshots[j] })
	sort.Slice(journals, func(i, j int) bool { return journals[i] < journals[j] })
	return snapshots, journals, nil
}

func snapshotName(gen uint64) string { return fmt.Sprintf("snapshot-%016x", gen) }
func journalName(gen uint64) string  { return fmt.Sprintf("journal-%016x", gen) }
