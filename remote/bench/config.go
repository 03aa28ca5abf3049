package bench

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Workload names, in the order Run runs them by default.
const (
	FindMissing     = "findmissing"   // FindMissingBlobs, FindDigests digests a call
	BatchWrite      = "batch-write"   // BatchUpdateBlobs of new small blobs
	BatchRead       = "batch-read"    // BatchReadBlobs of small blobs uploaded beforehand
	ByteStreamWrite = "bs-write"      // ByteStream Write of new large blobs
	ByteStreamRead  = "bs-read"       // ByteStream Read of large blobs uploaded beforehand
	ZstdWrite       = "bs-write-zstd" // the same through compressed-blobs/zstd
	ZstdRead        = "bs-read-zstd"
	ActionCacheGet  = "ac-get"    // GetActionResult hits
	ChunkedWrite    = "cdc-write" // upload of an edited large blob by the chunks the server lacks
	ChunkedRead     = "cdc-read"  // download of an edited large blob by the chunks the client lacks
)

// AllWorkloads lists every workload in the default order.
var AllWorkloads = []string{FindMissing, BatchWrite, BatchRead, ByteStreamWrite, ByteStreamRead, ZstdWrite, ZstdRead, ActionCacheGet, ChunkedWrite, ChunkedRead}

// Config describes one benchmark run. Start from DefaultConfig.
type Config struct {
	Addr        string   // host:port of the REAPI server
	Instance    string   // REAPI instance name
	Workloads   []string // names from AllWorkloads; empty means all
	Concurrency int      // requests in flight at once
	Connections int      // gRPC connections the requests are spread over

	// Each workload stops after Duration, or after Count operations if
	// Count > 0, whichever comes first. Operations in flight at the end
	// complete (each is bounded by OpTimeout).
	Duration  time.Duration
	Count     int64
	OpTimeout time.Duration

	SmallSize       int     // bytes per small blob (batch workloads, action outputs)
	BatchBlobs      int     // blobs per BatchUpdateBlobs/BatchReadBlobs call
	LargeSize       int     // bytes per large blob (ByteStream workloads)
	LargePool       int     // large blobs uploaded for the read workloads
	ChunkSize       int     // bytes per ByteStream WriteRequest
	FindDigests     int     // digests per FindMissingBlobs call
	PresentFraction float64 // share of those digests that exist on the server
	SmallPool       int     // small blobs uploaded for findmissing and batch-read
	ActionResults   int     // action results uploaded for ac-get

	// Seed makes the generated blobs reproducible; 0 picks a random one so
	// that repeated runs against one server write new blobs.
	Seed uint64
}

// DefaultConfig returns the defaults of `ferrule bench`.
func DefaultConfig() Config {
	return Config{
		Addr:            "localhost:9092",
		Concurrency:     8,
		Connections:     1,
		Duration:        10 * time.Second,
		OpTimeout:       time.Minute,
		SmallSize:       4 << 10,
		BatchBlobs:      100,
		LargeSize:       4 << 20,
		LargePool:       8,
		ChunkSize:       64 << 10,
		FindDigests:     1000,
		PresentFraction: 0.5,
		SmallPool:       2000,
		ActionResults:   200,
	}
}

// ConfigError is what Run returns for a configuration it cannot run.
type ConfigError struct{ Err error }

func (e ConfigError) Error() string { return e.Err.Error() }
func (e ConfigError) Unwrap() error { return e.Err }

func (c *Config) validate() error {
	switch {
	case c.Addr == "":
		return fmt.Errorf("no server address")
	case c.Concurrency < 1 || c.Concurrency > 1024:
		return fmt.Errorf("concurrency %d: want 1..1024", c.Concurrency)
	case c.Connections < 1 || c.Connections > 64:
		return fmt.Errorf("connections %d: want 1..64", c.Connections)
	case c.Duration <= 0 && c.Count <= 0:
		return fmt.Errorf("need a positive duration or count")
	case c.Duration <= 0:
		return fmt.Errorf("duration %v: must be positive (it bounds count-limited runs too)", c.Duration)
	case c.Count < 0:
		return fmt.Errorf("count %d: must not be negative", c.Count)
	case c.OpTimeout <= 0:
		return fmt.Errorf("operation timeout %v: must be positive", c.OpTimeout)
	case c.SmallSize < 1 || c.SmallSize > 64<<20:
		return fmt.Errorf("small blob size %d: want 1 B..64 MiB", c.SmallSize)
	case c.BatchBlobs < 1 || c.BatchBlobs > 100000:
		return fmt.Errorf("blobs per batch %d: want 1..100000", c.BatchBlobs)
	case c.LargeSize < 1 || c.LargeSize > 1<<30:
		return fmt.Errorf("large blob size %d: want 1 B..1 GiB", c.LargeSize)
	case c.LargePool < 1 || c.LargePool > 1024:
		return fmt.Errorf("large blob pool %d: want 1..1024", c.LargePool)
	case c.ChunkSize < 1 || c.ChunkSize > 16<<20:
		return fmt.Errorf("chunk size %d: want 1 B..16 MiB", c.ChunkSize)
	case c.FindDigests < 1 || c.FindDigests > 100000:
		return fmt.Errorf("digests per FindMissingBlobs %d: want 1..100000", c.FindDigests)
	case c.PresentFraction < 0 || c.PresentFraction > 1 || math.IsNaN(c.PresentFraction):
		return fmt.Errorf("present fraction %v: want 0..1", c.PresentFraction)
	case c.SmallPool < 1 || c.SmallPool > 1000000:
		return fmt.Errorf("small blob pool %d: want 1..1000000", c.SmallPool)
	case c.ActionResults < 1 || c.ActionResults > 1000000:
		return fmt.Errorf("action results %d: want 1..1000000", c.ActionResults)
	}
	if err := validateInstance(c.Instance); err != nil {
		return err
	}
	if _, err := selectWorkloads(c.Workloads); err != nil {
		return err
	}
	return nil
}

// validateInstance refuses instance names that would make resource names
// ambiguous; the server would refuse them anyway, less clearly.
func validateInstance(name string) error {
	if name == "" {
		return nil
	}
	for _, seg := range strings.Split(name, "/") {
		switch seg {
		case "", ".", "..", "blobs", "uploads", "compressed-blobs", "actions", "actionResults", "operations", "capabilities":
			return fmt.Errorf("instance name %q: segment %q is empty or reserved", name, seg)
		}
	}
	return nil
}

func selectWorkloads(names []string) ([]string, error) {
	if len(names) == 0 {
		return AllWorkloads, nil
	}
	seen := map[string]bool{}
	var out []string
	for _, n := range names {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		if n == "all" {
			for _, a := range AllWorkloads {
				if !seen[a] {
					seen[a] = true
					out = append(out, a)
				}
			}
			continue
		}
		known := false
		for _, a := range AllWorkloads {
			known = known || a == n
		}
		if !known {
			return nil, fmt.Errorf("unknown workload %q (known: %s)", n, strings.Join(AllWorkloads, ", "))
		}
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no workload selected")
	}
	return out, nil
}

// ParseSize parses a byte count such as "4096", "4KiB", "4k", "1.5MiB" or
// "2MB". K/M/G and KiB/MiB/GiB are powers of 1024; KB/MB/GB powers of 1000.
func ParseSize(s string) (int, error) {
	t := strings.TrimSpace(s)
	units := []struct {
		suffix string
		mult   float64
	}{
		{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
		{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9},
		{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30},
		{"k", 1 << 10}, {"m", 1 << 20}, {"g", 1 << 30},
		{"B", 1},
	}
	mult := 1.0
	for _, u := range units {
		if strings.HasSuffix(t, u.suffix) {
			t = strings.TrimSpace(strings.TrimSuffix(t, u.suffix))
			mult = u.mult
			break
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || t == "" || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("invalid size %q (examples: 4096, 4KiB, 4MiB)", s)
	}
	n := v * mult
	if n < 0 || n > 1<<40 || n != math.Trunc(n) {
		return 0, fmt.Errorf("invalid size %q: want a whole, non-negative number of bytes", s)
	}
	return int(n), nil
}
