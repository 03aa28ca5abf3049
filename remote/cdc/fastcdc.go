package cdc

import (
	"crypto/md5"
	"encoding/binary"
	"fmt"
	"io"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
)

// gear is FastCDC's Gear table: entry i is the first eight bytes (big
// endian) of the MD5 of 64 bytes of value i, as the C reference (destor)
// derives it. gearLS is gear shifted left once, for the two-bytes-per-step
// loop of the 2020 paper.
var gear, gearLS = gearTables()

func gearTables() (g, ls [256]uint64) {
	var in [64]byte
	for i := range g {
		for j := range in {
			in[j] = byte(i)
		}
		sum := md5.Sum(in[:])
		g[i] = binary.BigEndian.Uint64(sum[:8])
		ls[i] = g[i] << 1
	}
	return g, ls
}

// fastMasks[b] is the boundary mask with b bits set, spread as in the C
// reference (6 to 17 bits) and restic's FastCDC (the larger ones); entries
// below 5 are unused.
var fastMasks = [26]uint64{
	5:  0x0000000001804110,
	6:  0x0000000001803110,
	7:  0x0000000018035100,
	8:  0x0000001800035300,
	9:  0x0000019000353000,
	10: 0x0000590003530000,
	11: 0x0000d90003530000,
	12: 0x0000d90103530000,
	13: 0x0000d90303530000,
	14: 0x0000d90313530000,
	15: 0x0000d90f03530000,
	16: 0x0000d90303537000,
	17: 0x0000d90703537000,
	18: 0x0000d90707537000,
	19: 0x0000d91707537000,
	20: 0x0000d91747537000,
	21: 0x0000d91767537000,
	22: 0x0000d93767537000,
	23: 0x0000d93777537000,
	24: 0x0000d93777577000,
	25: 0x0000db3777577000,
}

// fastCDC is FastCDC 2020 with normalized chunking: below the average size
// the stricter mask (more bits) makes cuts rare, above it the looser one
// makes them likely; the seed is XORed into every Gear entry.
type fastCDC struct {
	min, avg, max int
	maskS, maskL  uint64
	seed, seedLS  uint64
}

func newFastCDC(min, avg, max, norm int, seed uint32) (*fastCDC, error) {
	if min <= 0 || avg < min || max < avg || avg&(avg-1) != 0 {
		return nil, fmt.Errorf("%w: FastCDC sizes min %d, avg %d, max %d", ErrParams, min, avg, max)
	}
	bits := 0
	for 1<<(bits+1) <= avg {
		bits++
	}
	small, large := bits+norm, bits-norm
	if small > 25 || large < 5 {
		return nil, fmt.Errorf("%w: FastCDC normalization %d too extreme for avg %d", ErrParams, norm, avg)
	}
	s := uint64(seed)
	return &fastCDC{min: min, avg: avg, max: max, maskS: fastMasks[small], maskL: fastMasks[large], seed: s, seedLS: s << 1}, nil
}

func (*fastCDC) Function() repb.ChunkingFunction_Value { return repb.ChunkingFunction_FAST_CDC_2020 }

// cut returns the length of the chunk at the start of b, which holds at
// least max bytes unless the stream ends within them.
func (c *fastCDC) cut(b []byte) int {
	if len(b) <= c.min {
		return len(b)
	}
	n := min(len(b), c.max)
	center := min(n, c.avg)
	// Two bytes per step: the first byte's entry is pre-shifted, so the hash
	// after it is tested with the mask shifted left once.
	maskSLS, maskLLS := c.maskS<<1, c.maskL<<1
	var h uint64
	a := c.min &^ 1
	for lim := center &^ 1; a < lim; a += 2 {
		h = (h << 2) + (gearLS[b[a]] ^ c.seedLS)
		if h&maskSLS == 0 {
			return a
		}
		h += gear[b[a+1]] ^ c.seed
		if h&c.maskS == 0 {
			return a + 1
		}
	}
	for lim := n &^ 1; a < lim; a += 2 {
		h = (h << 2) + (gearLS[b[a]] ^ c.seedLS)
		if h&maskLLS == 0 {
			return a
		}
		h += gear[b[a+1]] ^ c.seed
		if h&c.maskL == 0 {
			return a + 1
		}
	}
	return n
}

func (c *fastCDC) Split(r io.Reader, emit func([]byte) error) error {
	buf := make([]byte, 2*c.max)
	start, end, eof := 0, 0, false
	for {
		if end-start < c.max && !eof {
			end = copy(buf, buf[start:end])
			start = 0
			for end < len(buf) && !eof {
				n, err := r.Read(buf[end:])
				end += n
				if err == io.EOF {
					eof = true
				} else if err != nil {
					return err
				}
			}
		}
		if start == end {
			return nil
		}
		n := c.cut(buf[start:end])
		if err := emit(buf[start : start+n]); err != nil {
			return err
		}
		start += n
	}
}
