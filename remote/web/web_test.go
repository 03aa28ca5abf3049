package web_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferrule-build/ferrule/remote/bes"
	"github.com/ferrule-build/ferrule/remote/bes/bestest"
	"github.com/ferrule-build/ferrule/remote/web"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// fill publishes n invocations into a store through the real service.
func fill(t testing.TB, st *bes.Store, n int) {
	t.Helper()
	c, stop := bestest.Serve(t, bes.New(st, bes.Options{Logger: quiet()}))
	defer stop()
	for i := 0; i < n; i++ {
		b := sampleBuild(fmt.Sprintf("inv-%04d", i))
		if _, err := bestest.Publish(context.Background(), c, bestest.Requests(b.InvocationID, b.BuildID, bestest.Events(b))); err != nil {
			t.Fatal(err)
		}
	}
}

func sampleBuild(id string) bestest.Build {
	return bestest.Build{
		InvocationID: id, BuildID: "b-" + id, Command: "test", Pattern: []string{"//..."},
		Targets: []string{"//app:bin", "//app:lib", "//app:test"}, Tests: []string{"//app:test"},
		User: "alice", Host: "ci-1", Start: time.Unix(1_790_000_000, 0), Took: 30 * time.Second,
		RemoteHits: 9, Executed: 3, Internal: 2,
	}
}

func newHandler(t testing.TB, readOnly bool) (*bes.Store, *httptest.Server) {
	st := bes.NewStore(bes.Limits{})
	reg := prometheus.NewRegistry()
	h := web.New(web.Options{Store: st, Sampler: web.NewSampler(reg, time.Second, time.Minute), ReadOnly: readOnly, Logger: quiet()})
	mux := http.NewServeMux()
	h.Mount(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return st, srv
}

func get(t testing.TB, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func post(t testing.TB, url, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestPages(t *testing.T) {
	st, srv := newHandler(t, false)
	fill(t, st, 2)
	code, body := get(t, srv.URL+"/")
	if code != 200 || !strings.Contains(body, `href="/invocation/inv-0001"`) || !strings.Contains(body, "No data yet") && !strings.Contains(body, "no data yet") {
		t.Errorf("index: %d\n%s", code, body)
	}
	code, body = get(t, srv.URL+"/invocation/inv-0000")
	for _, want := range []string{`<span id="target-count">3</span>`, `data-remote-hits="9"`, `data-misses="3"`, "//app:test", "PASSED", "Critical Path: 15.00s", "alice", "ci-1"} {
		if !strings.Contains(body, want) {
			t.Errorf("invocation page lacks %q", want)
		}
	}
	if code != 200 {
		t.Errorf("invocation page: %d", code)
	}
	if code, _ := get(t, srv.URL+"/invocation/nope"); code != 404 {
		t.Errorf("unknown invocation: %d", code)
	}
	code, body = get(t, srv.URL+"/invocation/inv-0000/events")
	if code != 200 || strings.Count(body, "\n") != 15 || !strings.Contains(body, `"remote cache hit"`) {
		t.Errorf("events: %d %d lines", code, strings.Count(body, "\n"))
	}
}

func TestExecLogCompare(t *testing.T) {
	st, srv := newHandler(t, false)
	fill(t, st, 2)
	logA, err := os.ReadFile("../explain/testdata/machine_a.json")
	if err != nil {
		t.Skip("no explain test data:", err)
	}
	logB, err := os.ReadFile("../explain/testdata/machine_b.json")
	if err != nil {
		t.Skip("no explain test data:", err)
	}
	if code, body := post(t, srv.URL+"/invocation/inv-0000/execlog", "not json"); code != 400 {
		t.Errorf("garbage log: %d %s", code, body)
	}
	if code, body := post(t, srv.URL+"/invocation/nope/execlog", string(logA)); code != 404 {
		t.Errorf("log for an unknown invocation: %d %s", code, body)
	}
	if code, body := post(t, srv.URL+"/invocation/inv-0000/execlog", string(logA)); code != 200 {
		t.Fatalf("upload: %d %s", code, body)
	}
	code, body := get(t, srv.URL+"/compare?a=inv-0000&b=inv-0001")
	if code != 200 || !strings.Contains(body, "both invocations need") {
		t.Errorf("compare without a second log: %d", code)
	}
	if code, body := post(t, srv.URL+"/invocation/inv-0001/execlog", string(logB)); code != 200 {
		t.Fatalf("upload: %d %s", code, body)
	}
	_, page := get(t, srv.URL+"/invocation/inv-0001")
	if !strings.Contains(page, `<option value="inv-0000">`) {
		t.Error("the invocation page offers no comparison")
	}
	code, body = get(t, srv.URL+"/compare?a=inv-0000&b=inv-0001")
	if code != 200 || !strings.Contains(body, `id="compare-summary"`) || strings.Contains(body, `data-differing="0"`) {
		t.Errorf("compare: %d\n%s", code, body)
	}
}

func TestReadOnlyRefusesUploads(t *testing.T) {
	st, srv := newHandler(t, true)
	fill(t, st, 1)
	if code, body := post(t, srv.URL+"/invocation/inv-0000/execlog", "[]"); code != 403 || !strings.Contains(body, "read-only") {
		t.Errorf("read-only upload: %d %s", code, body)
	}
	if code, _ := get(t, srv.URL+"/invocation/inv-0000"); code != 200 {
		t.Errorf("read-only page: %d", code)
	}
}

// BenchmarkIndex1000 renders the list page with 1,000 stored invocations.
func BenchmarkIndex1000(b *testing.B) {
	st, srv := newHandler(b, false)
	fill(b, st, 1000)
	for _, path := range []string{"/", "/invocations", "/invocation/inv-0500"} {
		name := strings.TrimPrefix(path, "/")
		if name == "" {
			name = "index"
		}
		b.Run(name, func(b *testing.B) {
			var n int
			for i := 0; i < b.N; i++ {
				_, body := get(b, srv.URL+path)
				n = len(body)
			}
			b.ReportMetric(float64(n), "page-bytes")
		})
	}
}

func TestPartialInvocationShownAsPartial(t *testing.T) {
	st, srv := newHandler(t, false)
	c, stop := bestest.Serve(t, bes.New(st, bes.Options{Logger: quiet()}))
	defer stop()
	b := sampleBuild("inv-half")
	reqs := bestest.Requests(b.InvocationID, b.BuildID, bestest.Events(b))
	if _, err := bestest.Publish(context.Background(), c, reqs[:6]); err != nil {
		t.Fatal(err)
	}
	_, body := get(t, srv.URL+"/invocation/inv-half")
	if !strings.Contains(body, `<p class="partial" id="partial">Partial: the stream ended before its last event.</p>`) {
		t.Errorf("invocation page:\n%s", body)
	}
	_, body = get(t, srv.URL+"/")
	if !strings.Contains(body, `<span class="partial">partial</span>`) {
		t.Error("the list does not show the invocation as partial")
	}
}

// The plots follow the registry's counters: rates between samples.
func TestSamplerPlots(t *testing.T) {
	reg := prometheus.NewRegistry()
	calls := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferrule_grpc_calls_total"}, []string{"method", "code"})
	evicted := prometheus.NewCounter(prometheus.CounterOpts{Name: "ferrule_store_evictions_total"})
	reg.MustRegister(calls, evicted)
	smp := web.NewSampler(reg, time.Second, 3*time.Second) // a ring of 3
	st := bes.NewStore(bes.Limits{})
	mux := http.NewServeMux()
	web.New(web.Options{Store: st, Sampler: smp, Logger: quiet()}).Mount(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	smp.SampleNow()
	for i, hits := range []int{3, 1, 9} {
		calls.WithLabelValues("GetActionResult", "OK").Add(float64(hits))
		calls.WithLabelValues("GetActionResult", "NotFound").Add(1)
		evicted.Add(float64(i))
		time.Sleep(5 * time.Millisecond)
		smp.SampleNow()
	}
	if n := len(smp.Samples()); n != 3 {
		t.Fatalf("%d samples kept in a ring of 3", n)
	}
	_, body := get(t, srv.URL+"/")
	for _, want := range []string{`id="plot-hit-rate" data-points="2"`, "hit rate: 90.0%", `data-ac-hits="13"`, `data-ac-misses="3"`, "evicted: 2", `data-evictions="3"`} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
}
