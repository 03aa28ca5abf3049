package web_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	bpb "google.golang.org/genproto/googleapis/devtools/build/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/ferrule-build/ferrule/remote/bes/bestest"
	"github.com/ferrule-build/ferrule/remote/execution"
	"github.com/ferrule-build/ferrule/remote/server"
	"github.com/ferrule-build/ferrule/remote/store/memory"
)

// chromium runs headless Chromium with args and returns its standard output.
func chromium(t *testing.T, bin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--disable-extensions", "--user-data-dir=" + t.TempDir()}
	cmd := exec.CommandContext(ctx, bin, append(base, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, stderr.String())
	}
	return string(out)
}

func outputDir(t *testing.T) string {
	if root := os.Getenv("FERRULE_TEST_ROOT"); root != "" {
		dir := filepath.Join(root, "web-browser")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	return t.TempDir()
}

func metric(t *testing.T, url string, name string, labels map[string]string) float64 {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
next:
	for _, m := range mfs[name].GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range labels {
			if have[k] != v {
				continue next
			}
		}
		sum += m.GetCounter().GetValue()
	}
	return sum
}

func attr(t *testing.T, dom, id, name string) string {
	t.Helper()
	m := regexp.MustCompile(`id="` + regexp.QuoteMeta(id) + `"[^>]*\s` + regexp.QuoteMeta(name) + `="([^"]*)"`).FindStringSubmatch(dom)
	if m == nil {
		t.Fatalf("no element %s with %s in the page", id, name)
	}
	return m[1]
}

// TestBrowser starts the server in-process, sends it cache traffic and a
// Bazel event stream, and checks what headless Chromium renders.
func TestBrowser(t *testing.T) {
	if os.Getenv("FERRULE_E2E") == "" {
		t.Skip("FERRULE_E2E is unset")
	}
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium is not installed (tools/setup.d/40-chromium.sh installs it):", err)
	}
	srv, err := server.New(server.Config{
		GRPCAddress: "127.0.0.1:0", HTTPAddress: "127.0.0.1:0", Store: memory.New(1 << 30), StoreDescription: "memory",
		SampleInterval: time.Hour, Logger: quiet(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	exe := execution.New(srv.Store(), execution.Options{Logger: quiet()})
	srv.RegisterExecution(exe, exe.ExecutionCapabilities())
	waitWorkers, err := exe.StartLocalWorkers(ctx, 2, execution.LocalWorkerOptions{Dir: t.TempDir(), NoNamespaces: true})
	if err != nil {
		t.Fatal(err)
	}
	defer waitWorkers()
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	defer func() { cancel(); <-done }()
	for len(srv.Sampler.Samples()) == 0 { // the sample taken as serving starts
		time.Sleep(10 * time.Millisecond)
	}
	base := "http://" + srv.HTTPAddr().String()

	conn, err := grpc.NewClient(srv.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Cache traffic in three rounds, a sample after each: round r looks up
	// r+1 new actions (misses), writes their results and looks them up
	// again (hits).
	acc := repb.NewActionCacheClient(conn)
	var lastHits, lastMisses float64
	for r := 0; r < 3; r++ {
		h0 := metric(t, base, "ferrule_grpc_calls_total", map[string]string{"method": "GetActionResult", "code": "OK"})
		m0 := metric(t, base, "ferrule_grpc_calls_total", map[string]string{"method": "GetActionResult", "code": "NotFound"})
		for i := 0; i <= r; i++ {
			h := sha256.Sum256([]byte(fmt.Sprint("action ", r, i)))
			d := &repb.Digest{Hash: hex.EncodeToString(h[:]), SizeBytes: 100 + int64(i)}
			if _, err := acc.GetActionResult(ctx, &repb.GetActionResultRequest{ActionDigest: d}); status.Code(err) != codes.NotFound {
				t.Fatalf("GetActionResult of a new action: %v", err)
			}
			if _, err := acc.UpdateActionResult(ctx, &repb.UpdateActionResultRequest{ActionDigest: d, ActionResult: &repb.ActionResult{ExitCode: int32(i)}}); err != nil {
				t.Fatal(err)
			}
			for k := 0; k < 2; k++ {
				if _, err := acc.GetActionResult(ctx, &repb.GetActionResultRequest{ActionDigest: d}); err != nil {
					t.Fatal(err)
				}
			}
		}
		time.Sleep(300 * time.Millisecond)
		srv.Sampler.SampleNow()
		lastHits = metric(t, base, "ferrule_grpc_calls_total", map[string]string{"method": "GetActionResult", "code": "OK"}) - h0
		lastMisses = metric(t, base, "ferrule_grpc_calls_total", map[string]string{"method": "GetActionResult", "code": "NotFound"}) - m0
	}
	// A Bazel event stream over the real gRPC port.
	b := sampleBuild("3f1c9a52-7d5e-4b1a-9c61-0a2f4e8b7d10")
	b.Targets = append(b.Targets, "//app:tool", "//lib:core")
	reqs := bestest.Requests(b.InvocationID, b.BuildID, bestest.Events(b))
	acked, err := bestest.Publish(ctx, bpb.NewPublishBuildEventClient(conn), reqs)
	if err != nil || len(acked) != len(reqs) {
		t.Fatalf("%d acks of %d: %v", len(acked), len(reqs), err)
	}
	srv.Sampler.SampleNow()

	hits := metric(t, base, "ferrule_grpc_calls_total", map[string]string{"method": "GetActionResult", "code": "OK"})
	misses := metric(t, base, "ferrule_grpc_calls_total", map[string]string{"method": "GetActionResult", "code": "NotFound"})
	if hits != 12 || misses != 6 {
		t.Fatalf("/metrics: %v hits, %v misses", hits, misses)
	}

	out := outputDir(t)
	dom := chromium(t, bin, "--dump-dom", base+"/")
	if got := attr(t, dom, "cache-totals", "data-ac-hits"); got != strconv.FormatFloat(hits, 'f', 0, 64) {
		t.Errorf("page shows %s hits, /metrics %v", got, hits)
	}
	if got := attr(t, dom, "cache-totals", "data-ac-misses"); got != strconv.FormatFloat(misses, 'f', 0, 64) {
		t.Errorf("page shows %s misses, /metrics %v", got, misses)
	}
	// One point per sample after the first, the newest the last round's
	// hit rate as /metrics counted it.
	if n, _ := strconv.Atoi(attr(t, dom, "plot-hit-rate", "data-points")); n != 3 {
		t.Errorf("the hit rate plot has %d points, want 3", n)
	}
	wantRate := fmt.Sprintf("hit rate: %.1f%%", 100*lastHits/(lastHits+lastMisses))
	if !strings.Contains(dom, wantRate) || math.Abs(100*lastHits/(lastHits+lastMisses)-66.67) > 0.01 {
		t.Errorf("the hit rate plot does not end at %q", wantRate)
	}
	if !regexp.MustCompile(`id="plot-hit-rate"[^>]*>.*?<(circle|polyline)[^>]*(cx|points)="[0-9]`).MatchString(dom) {
		t.Error("the hit rate plot draws no point")
	}
	if attr(t, dom, "execution", "data-workers") != "2" || !strings.Contains(dom, "OSFamily=") {
		t.Error("the execution section does not show the 2 workers and their platform")
	}
	if !strings.Contains(dom, `data-id="`+b.InvocationID+`"`) {
		t.Error("the invocation is not listed")
	}
	chromium(t, bin, "--screenshot="+filepath.Join(out, "index.png"), "--window-size=1400,1500", "--hide-scrollbars", base+"/")

	dom = chromium(t, bin, "--dump-dom", base+"/invocation/"+b.InvocationID)
	if !strings.Contains(dom, `<code id="invocation-id">`+b.InvocationID+`</code>`) {
		t.Error("the invocation page does not name the invocation")
	}
	if got := regexp.MustCompile(`<span id="target-count">(\d+)</span>`).FindStringSubmatch(dom); got == nil || got[1] != "5" {
		t.Errorf("target count %v, want 5", got)
	}
	if attr(t, dom, "cache-stats", "data-remote-hits") != "9" || attr(t, dom, "cache-stats", "data-misses") != "3" {
		t.Error("the invocation's hit numbers are not shown")
	}
	shot := filepath.Join(out, "invocation.png")
	chromium(t, bin, "--screenshot="+shot, "--window-size=1400,1300", "--hide-scrollbars", base+"/invocation/"+b.InvocationID)
	for _, f := range []string{filepath.Join(out, "index.png"), shot} {
		if st, err := os.Stat(f); err != nil || st.Size() < 10_000 {
			t.Errorf("screenshot %s: %v", f, err)
		}
	}
	t.Logf("screenshots in %s", out)
}
