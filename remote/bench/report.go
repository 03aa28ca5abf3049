package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// Report is the outcome of one Run. Its JSON form is what `ferrule bench
// --json` prints.
type Report struct {
	Addr             string     `json:"addr"`
	Instance         string     `json:"instance"`
	Seed             uint64     `json:"seed"`
	Concurrency      int        `json:"concurrency"`
	Connections      int        `json:"connections"`
	DurationLimitSec float64    `json:"duration_limit_s"`
	CountLimit       int64      `json:"count_limit,omitempty"`
	SmallSize        int        `json:"small_blob_bytes"`
	BatchBlobs       int        `json:"blobs_per_batch"`
	LargeSize        int        `json:"large_blob_bytes"`
	ChunkSize        int        `json:"chunk_bytes"`
	FindDigests      int        `json:"digests_per_find"`
	Server           ServerInfo `json:"server"`
	Workloads        []Result   `json:"workloads"`
}

// ServerInfo is what the server's capabilities said.
type ServerInfo struct {
	LowAPIVersion          string   `json:"low_api_version"`
	HighAPIVersion         string   `json:"high_api_version"`
	DigestFunctions        []string `json:"digest_functions"`
	ByteStreamZstd         bool     `json:"bytestream_zstd"`
	BatchZstd              bool     `json:"batch_zstd"`
	MaxBatchTotalSizeBytes int64    `json:"max_batch_total_size_bytes"`
	ACUpdateEnabled        bool     `json:"action_cache_update_enabled"`
	SplitSplice            bool     `json:"split_splice"`
}

// Result is one workload's outcome.
type Result struct {
	Name string `json:"name"`
	// Status is ok, errors (some requests failed), aborted (too many
	// failures in a row), failed (set-up failed), skipped (the server lacks
	// a feature) or interrupted.
	Status       string        `json:"status"`
	Note         string        `json:"note,omitempty"`
	Ops          int64         `json:"ops"`
	Items        int64         `json:"items"`
	Unit         string        `json:"item_unit,omitempty"`
	Bytes        int64         `json:"bytes"`
	WireBytes    int64         `json:"wire_bytes"`
	Errors       int64         `json:"errors"`
	ErrorSamples []ErrorSample `json:"error_samples,omitempty"`
	Seconds      float64       `json:"seconds"`
	OpsPerSec    float64       `json:"ops_per_s"`
	ItemsPerSec  float64       `json:"items_per_s"`
	MBPerSec     float64       `json:"mb_per_s"` // 10^6 payload bytes (uncompressed) per second
	P50Ms        float64       `json:"p50_ms"`
	P99Ms        float64       `json:"p99_ms"`
	MaxMs        float64       `json:"max_ms"`
}

// ErrorSample is one kind of failure and how often it happened.
type ErrorSample struct {
	Error string `json:"error"`
	Count int64  `json:"count"`
}

// Failed reports whether any workload had errors or could not run for a
// reason other than a missing server feature.
func (r *Report) Failed() bool {
	for _, w := range r.Workloads {
		if w.Status != "ok" && w.Status != "skipped" {
			return true
		}
	}
	return false
}

// WriteJSON writes r as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteTable writes r as a table, one row per workload, followed by the
// notes and error samples.
func (r *Report) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "server %s  instance %q  concurrency %d  connections %d\n", r.Addr, r.Instance, r.Concurrency, r.Connections)
	fmt.Fprintf(w, "small blobs %s x %d per batch, large blobs %s in %s chunks, %d digests per FindMissingBlobs\n\n",
		humanBytes(r.SmallSize), r.BatchBlobs, humanBytes(r.LargeSize), humanBytes(r.ChunkSize), r.FindDigests)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "workload\tops\tops/s\titems/s\tMB/s\tp50 ms\tp99 ms\terrors\tstatus\t")
	var notes []string
	for _, x := range r.Workloads {
		if x.Status == "skipped" || x.Status == "failed" {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t-\t-\t-\t%s\t\n", x.Name, x.Status)
		} else {
			mb := fmt.Sprintf("%.1f", x.MBPerSec)
			if x.Bytes == 0 {
				mb = "-"
			}
			fmt.Fprintf(tw, "%s\t%d\t%.1f\t%.0f %s\t%s\t%.2f\t%.2f\t%d\t%s\t\n",
				x.Name, x.Ops, x.OpsPerSec, x.ItemsPerSec, x.Unit, mb, x.P50Ms, x.P99Ms, x.Errors, x.Status)
		}
		if x.Note != "" {
			notes = append(notes, fmt.Sprintf("%s: %s", x.Name, x.Note))
		}
		for _, e := range x.ErrorSamples {
			notes = append(notes, fmt.Sprintf("%s: %d x %s", x.Name, e.Count, e.Error))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nMB/s counts uncompressed payload bytes (10^6 bytes); latencies are per request.\n")
	if len(notes) > 0 {
		fmt.Fprintf(w, "\n%s\n", strings.Join(notes, "\n"))
	}
	return nil
}

func humanBytes(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%dB", n)
}
