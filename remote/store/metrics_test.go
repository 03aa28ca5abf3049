package store_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/ferrule-build/ferrule/remote/store"
	"github.com/ferrule-build/ferrule/remote/store/memory"
	"github.com/ferrule-build/ferrule/remote/store/storetest"
)

func TestMetricsConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := store.Metrics(memory.New(0), prometheus.NewRegistry())
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// value returns the value of the metric name with the given labels, or -1
// if there is no such series.
func value(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if want, ok := labels[lp.GetName()]; ok && want != lp.GetValue() {
					continue series
				}
			}
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				return m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				return m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return -1
}

func TestMetricsCount(t *testing.T) {
	reg := prometheus.NewRegistry()
	mem := memory.New(2500)
	s, err := store.Metrics(mem, reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var keys []store.Key
	for i := range 3 {
		b := storetest.Blob(uint64(i), 1000)
		k := storetest.CASKey("", repb.DigestFunction_SHA256, b)
		storetest.MustPut(t, s, k, b) // the third evicts the first
		keys = append(keys, k)
	}
	ac := storetest.ACKey("", "a")
	storetest.MustPut(t, s, ac, []byte("result"))
	if err := s.Put(ctx, keys[0], 10, bytes.NewReader(nil)); err == nil {
		t.Fatal("short Put succeeded")
	}
	// Read 600 of one blob's bytes, and all of another's.
	rc, _, err := s.Get(ctx, keys[1], 400)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, rc)
	rc.Close()
	storetest.MustGet(t, s, ac)
	if _, _, err := s.Get(ctx, keys[0], 0); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("evicted blob: %v", err)
	}
	if _, err := s.FindMissing(ctx, append(keys, ac)); err != nil {
		t.Fatal(err)
	}

	cas, acl := map[string]string{"kind": "cas"}, map[string]string{"kind": "ac"}
	checks := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"ferrule_store_puts_total", cas, 3},
		{"ferrule_store_puts_total", acl, 1},
		{"ferrule_store_bytes_written_total", cas, 3000},
		{"ferrule_store_bytes_written_total", acl, 6},
		{"ferrule_store_errors_total", map[string]string{"op": "put", "kind": "cas"}, 1},
		{"ferrule_store_bytes_read_total", cas, 600},
		{"ferrule_store_bytes_read_total", acl, 6},
		{"ferrule_store_hits_total", cas, 1 + 2}, // Get of keys[1]; FindMissing of keys[1], keys[2]
		{"ferrule_store_hits_total", acl, 2},
		{"ferrule_store_misses_total", cas, 2}, // Get and FindMissing of keys[0]
		{"ferrule_store_duration_seconds", map[string]string{"op": "put"}, 5},
		{"ferrule_store_duration_seconds", map[string]string{"op": "find_missing"}, 1},
		{"ferrule_store_put_size_bytes", cas, 3},
		{"ferrule_store_entries", nil, 3},
		{"ferrule_store_size_bytes", nil, 2006},
		{"ferrule_store_max_size_bytes", nil, 2500},
		{"ferrule_store_evictions_total", nil, 1},
		{"ferrule_store_evicted_bytes_total", nil, 1000},
	}
	for _, c := range checks {
		if got := value(t, reg, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
}

func TestMetricsRegistrationConflict(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := store.Metrics(memory.New(0), reg); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Metrics(memory.New(0), reg); err == nil {
		t.Error("registering the same metrics twice succeeded")
	}
	// With a prefix, two stores share a registry.
	if _, err := store.Metrics(memory.New(0), prometheus.WrapRegistererWithPrefix("second_", reg)); err != nil {
		t.Errorf("labelled registration: %v", err)
	}
}

func TestMetricsWithoutStats(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := store.Metrics(noStats{memory.New(0)}, reg); err != nil {
		t.Fatal(err)
	}
	if got := value(t, reg, "ferrule_store_entries", nil); got != -1 {
		t.Errorf("entries gauge registered for a store without stats: %v", got)
	}
}

// TestMetricsSizeHelp: the size gauges say that they count what the bound
// counts (file system blocks for the disk store), not value bytes.
func TestMetricsSizeHelp(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := store.Metrics(memory.New(100), reg); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	help := map[string]string{}
	for _, mf := range mfs {
		help[mf.GetName()] = mf.GetHelp()
	}
	for name, want := range map[string]string{
		"ferrule_store_size_bytes":          "file system blocks",
		"ferrule_store_max_size_bytes":      "ferrule_store_size_bytes",
		"ferrule_store_evicted_bytes_total": "as ferrule_store_size_bytes counts it",
	} {
		if !strings.Contains(help[name], want) {
			t.Errorf("help of %s is %q, want it to say %q", name, help[name], want)
		}
	}
}
