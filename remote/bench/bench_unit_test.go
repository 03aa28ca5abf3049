package bench

import (
	"bytes"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
)

func TestPercentile(t *testing.T) {
	ms := func(xs ...int) []time.Duration {
		var out []time.Duration
		for _, x := range xs {
			out = append(out, time.Duration(x)*time.Millisecond)
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	for _, tc := range []struct {
		vals []time.Duration
		p    float64
		want time.Duration
	}{
		{nil, 50, 0},
		{ms(7), 50, 7 * time.Millisecond},
		{ms(7), 99, 7 * time.Millisecond},
		{ms(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{ms(1, 2, 3, 4), 51, 3 * time.Millisecond},
		{ms(1, 2, 3, 4), 100, 4 * time.Millisecond},
		{ms(1, 2, 3, 4), 0, 1 * time.Millisecond},
		{ms(hundred...), 50, 50 * time.Millisecond},
		{ms(hundred...), 99, 99 * time.Millisecond},
		{ms(hundred...), 99.5, 100 * time.Millisecond},
		{ms(hundred...), 1, 1 * time.Millisecond},
	} {
		if got := Percentile(tc.vals, tc.p); got != tc.want {
			t.Errorf("Percentile(%v, %v) = %v, want %v", tc.vals, tc.p, got, tc.want)
		}
	}
}

func TestSummarizeMergesAndSorts(t *testing.T) {
	a := latencies{5 * time.Millisecond, 1 * time.Millisecond}
	b := latencies{3 * time.Millisecond}
	var c latencies
	for i := 0; i < 97; i++ {
		c = append(c, 2*time.Millisecond)
	}
	s := summarize(a, b, c) // 100 samples: 1, 2 x97, 3, 5
	if s.p50 != 2*time.Millisecond || s.p99 != 3*time.Millisecond || s.max != 5*time.Millisecond {
		t.Errorf("summarize = %+v, want p50 2ms, p99 3ms, max 5ms", s)
	}
	if z := summarize(); z != (summary{}) {
		t.Errorf("summarize() = %+v, want zeros", z)
	}
}

func TestPayloadDeterministicAndDistinct(t *testing.T) {
	a := Payload(1, 2, 3, 10000)
	if !bytes.Equal(a, Payload(1, 2, 3, 10000)) {
		t.Fatal("same (seed, stream, index) gave different bytes")
	}
	seen := map[string]bool{DigestOf(a).Hash: true}
	for _, other := range [][3]uint64{{2, 2, 3}, {1, 3, 3}, {1, 2, 4}, {0, 0, 0}} {
		h := DigestOf(Payload(other[0], other[1], other[2], 10000)).Hash
		if seen[h] {
			t.Errorf("Payload%v collides with another triple", other)
		}
		seen[h] = true
	}
	for _, n := range []int{0, 1, 23, 24, 31, 32, 33, 63, 64, 65, 4096} {
		if got := len(Payload(9, 9, 9, n)); got != n {
			t.Errorf("len(Payload(size %d)) = %d", n, got)
		}
	}
	// A prefix of a longer payload is not required to match, but FillPayload
	// must equal Payload for the same length.
	b := make([]byte, 777)
	FillPayload(b, 4, 5, 6)
	if !bytes.Equal(b, Payload(4, 5, 6, 777)) {
		t.Error("FillPayload and Payload differ")
	}
}

func TestPayloadCompressesLikeBuildOutputs(t *testing.T) {
	data := Payload(42, 1, 1, 1<<20)
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest))
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	ratio := float64(len(data)) / float64(len(enc.EncodeAll(data, nil)))
	if ratio < 1.5 || ratio > 3 {
		t.Errorf("payload compresses %.2f:1 with zstd, want between 1.5:1 and 3:1", ratio)
	}
}

func TestDigestOf(t *testing.T) {
	d := DigestOf(nil)
	if d.Hash != "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" || d.SizeBytes != 0 {
		t.Errorf("DigestOf(empty) = %v", d)
	}
	d = DigestOf([]byte("abc"))
	if d.Hash != "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" || d.SizeBytes != 3 {
		t.Errorf("DigestOf(abc) = %v", d)
	}
	r := randomDigest(rand.New(rand.NewPCG(1, 2)))
	if len(r.Hash) != 64 || r.SizeBytes < 1 {
		t.Errorf("randomDigest = %v", r)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int{
		"0": 0, "4096": 4096, "4KiB": 4096, "4k": 4096, "4K": 4096, "1.5MiB": 3 << 19,
		"2MB": 2000000, "1GiB": 1 << 30, "7B": 7, " 8 KiB ": 8192,
	} {
		got, err := ParseSize(in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "KiB", "-1", "abc", "1.5", "0.5B", "NaN", "Inf", "2TiB", "4 QB"} {
		if got, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) = %d, want an error", in, got)
		}
	}
}

func TestSelectWorkloads(t *testing.T) {
	got, err := selectWorkloads(nil)
	if err != nil || len(got) != len(AllWorkloads) {
		t.Errorf("selectWorkloads(nil) = %v, %v", got, err)
	}
	got, err = selectWorkloads([]string{" bs-read", "findmissing", "bs-read", ""})
	if err != nil || strings.Join(got, ",") != "bs-read,findmissing" {
		t.Errorf("selectWorkloads = %v, %v; want bs-read,findmissing", got, err)
	}
	got, err = selectWorkloads([]string{"ac-get", "all"})
	if err != nil || len(got) != len(AllWorkloads) || got[0] != "ac-get" {
		t.Errorf("selectWorkloads(ac-get,all) = %v, %v", got, err)
	}
	if _, err := selectWorkloads([]string{"findmissing", "bogus"}); err == nil || !strings.Contains(err.Error(), "bogus") {
		t.Errorf("unknown workload: err = %v", err)
	}
	if _, err := selectWorkloads([]string{"", " "}); err == nil {
		t.Error("empty selection: no error")
	}
}

func TestValidate(t *testing.T) {
	if c := DefaultConfig(); c.validate() != nil {
		t.Fatalf("DefaultConfig invalid: %v", c.validate())
	}
	for name, mut := range map[string]func(*Config){
		"no addr":          func(c *Config) { c.Addr = "" },
		"zero concurrency": func(c *Config) { c.Concurrency = 0 },
		"zero duration":    func(c *Config) { c.Duration = 0 },
		"negative count":   func(c *Config) { c.Count = -1 },
		"zero small size":  func(c *Config) { c.SmallSize = 0 },
		"huge large size":  func(c *Config) { c.LargeSize = 2 << 30 },
		"zero chunk":       func(c *Config) { c.ChunkSize = 0 },
		"present > 1":      func(c *Config) { c.PresentFraction = 1.5 },
		"reserved inst":    func(c *Config) { c.Instance = "a/blobs" },
		"dotdot inst":      func(c *Config) { c.Instance = "../x" },
		"bad workload":     func(c *Config) { c.Workloads = []string{"nope"} },
	} {
		c := DefaultConfig()
		mut(&c)
		if c.validate() == nil {
			t.Errorf("%s: validate accepted it", name)
		}
	}
}

func TestReportTableAndFailed(t *testing.T) {
	r := &Report{Addr: "x:1", SmallSize: 4096, LargeSize: 4 << 20, ChunkSize: 64 << 10, BatchBlobs: 100, FindDigests: 1000,
		Workloads: []Result{
			{Name: FindMissing, Status: "ok", Ops: 10, OpsPerSec: 5, Unit: "digests", ItemsPerSec: 5000},
			{Name: ZstdRead, Status: "skipped", Note: "the server does not advertise zstd for ByteStream"},
		}}
	if r.Failed() {
		t.Error("ok + skipped counted as failed")
	}
	var buf bytes.Buffer
	if err := r.WriteTable(&buf); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"findmissing", "5000 digests", "bs-read-zstd", "skipped", "does not advertise zstd"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, buf.String())
		}
	}
	r.Workloads = append(r.Workloads, Result{Name: BatchRead, Status: "errors", Errors: 1,
		ErrorSamples: []ErrorSample{{Error: "NotFound: gone", Count: 1}}})
	if !r.Failed() {
		t.Error("a workload with errors not counted as failed")
	}
	buf.Reset()
	if err := r.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), `"error": "NotFound: gone"`) {
		t.Errorf("JSON lacks the error sample:\n%s", buf.String())
	}
}

func TestCompare(t *testing.T) {
	in := func(s string) []*Report {
		t.Helper()
		reps, err := ReadReports(strings.NewReader(s))
		if err != nil {
			t.Fatal(err)
		}
		return reps
	}
	// Two runs appended to one file on each side, as the compare script does.
	a := in(`{"workloads":[{"name":"findmissing","status":"ok","ops":10,"ops_per_s":300,"p99_ms":2}]}
{"workloads":[{"name":"bs-read","status":"ok","ops":5,"ops_per_s":50,"mb_per_s":200,"p99_ms":9}]}`)
	b := in(`{"workloads":[{"name":"findmissing","status":"ok","ops":10,"ops_per_s":100,"p99_ms":3}]}
{"workloads":[{"name":"bs-read","status":"ok","ops":5,"ops_per_s":100,"mb_per_s":400,"p99_ms":4},
 {"name":"bs-read-zstd","status":"skipped","note":"no zstd"}]}`)
	cs := Compare(a, b)
	if len(cs) != 2 || cs[0].Name != "findmissing" || cs[1].Name != "bs-read" {
		t.Fatalf("Compare = %+v", cs)
	}
	if cs[0].Ratio != 3 || cs[1].Ratio != 0.5 {
		t.Errorf("ratios %v, %v; want 3 and 0.5", cs[0].Ratio, cs[1].Ratio)
	}
	var buf bytes.Buffer
	if err := WriteComparison(&buf, "ferrule", "other", cs); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"3.00x", "0.50x", "ferrule ops/s"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("comparison lacks %q:\n%s", want, buf.String())
		}
	}
	if _, err := ReadReports(strings.NewReader("")); err == nil {
		t.Error("ReadReports of nothing: no error")
	}
	if _, err := ReadReports(strings.NewReader("{not json")); err == nil {
		t.Error("ReadReports of garbage: no error")
	}
}

func TestCompareMediansOfRepeatedRuns(t *testing.T) {
	run := func(opsA float64, p99 float64) *Report {
		return &Report{Workloads: []Result{{Name: BatchRead, Status: "ok", Ops: 10, OpsPerSec: opsA, P99Ms: p99, Errors: 1}}}
	}
	a := []*Report{run(100, 5), run(300, 1), run(200, 9)}
	b := []*Report{run(100, 4), run(50, 8)}
	cs := Compare(a, b)
	if len(cs) != 1 {
		t.Fatalf("Compare = %+v", cs)
	}
	c := cs[0]
	if c.RunsA != 3 || c.RunsB != 2 {
		t.Errorf("runs %d/%d, want 3/2", c.RunsA, c.RunsB)
	}
	if c.A.OpsPerSec != 200 || c.A.P99Ms != 5 || c.B.OpsPerSec != 75 || c.B.P99Ms != 6 {
		t.Errorf("medians A %v ops/s p99 %v, B %v ops/s p99 %v; want 200, 5, 75, 6", c.A.OpsPerSec, c.A.P99Ms, c.B.OpsPerSec, c.B.P99Ms)
	}
	if c.A.Ops != 30 || c.A.Errors != 3 {
		t.Errorf("sums: %d ops, %d errors; want 30 and 3", c.A.Ops, c.A.Errors)
	}
	if want := 200.0 / 75; c.Ratio != want {
		t.Errorf("ratio %v, want %v", c.Ratio, want)
	}
}
