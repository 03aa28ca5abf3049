package main

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/dustin/go-humanize"
	"gopkg.in/yaml.v3"
)

// maxSize is the value of --max_size and of max_size in the config file, in
// bytes. A plain number counts GiB (1.5 is 1.5 GiB); with a unit it is
// what the unit says: 500MiB, 2GB (10^9 bytes), 1.5 GiB.
type maxSize int64

func parseMaxSize(s string) (maxSize, error) {
	s = strings.TrimSpace(s)
	bad := fmt.Errorf("%q is not a size (a number of GiB such as 10 or 1.5, or a number with a unit: 500MiB, 2GB, 1.5GiB)", s)
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return 0, bad
		}
		b := math.Round(f * (1 << 30))
		if b >= math.MaxInt64 {
			return 0, fmt.Errorf("%q GiB is too large", s)
		}
		return maxSize(b), nil
	}
	n, err := humanize.ParseBytes(s)
	if err != nil {
		return 0, bad
	}
	if n > math.MaxInt64 {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return maxSize(n), nil
}

// String gives the size exactly, in the largest binary unit that divides it.
func (m maxSize) String() string {
	for _, u := range []struct {
		name string
		n    int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if m != 0 && int64(m)%u.n == 0 {
			return strconv.FormatInt(int64(m)/u.n, 10) + u.name
		}
	}
	return strconv.FormatInt(int64(m), 10) + "B"
}

// Set implements flag.Value.
func (m *maxSize) Set(s string) error {
	v, err := parseMaxSize(s)
	if err != nil {
		return err
	}
	*m = v
	return nil
}

// UnmarshalYAML reads max_size from the config file as --max_size reads
// it, so that 1.9 is 1.9 GiB (not truncated to an integer).
func (m *maxSize) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: max_size must be a size, such as 10 (GiB) or 500MiB", n.Line)
	}
	v, err := parseMaxSize(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: max_size: %w", n.Line, err)
	}
	*m = v
	return nil
}
