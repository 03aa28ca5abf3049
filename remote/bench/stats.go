package bench

import (
	"math"
	"slices"
	"time"
)

// Percentile returns the p-th percentile (0 < p <= 100) of sorted by the
// nearest-rank method: the smallest value such that at least p percent of
// the values are less than or equal to it. It returns 0 for no values.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	if p <= 0 {
		return sorted[0]
	}
	rank := int(math.Ceil(p / 100 * float64(n)))
	rank = max(1, min(rank, n))
	return sorted[rank-1]
}

// latencies collects one worker's samples; merge them with summarize.
type latencies []time.Duration

// summary is what a workload reports about its latencies.
type summary struct {
	p50, p99, max time.Duration
}

func summarize(parts ...latencies) summary {
	var all []time.Duration
	for _, p := range parts {
		all = append(all, p...)
	}
	slices.Sort(all)
	var s summary
	if len(all) == 0 {
		return s
	}
	s.p50 = Percentile(all, 50)
	s.p99 = Percentile(all, 99)
	s.max = all[len(all)-1]
	return s
}
