package execution

import (
	"fmt"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	spb "google.golang.org/genproto/googleapis/rpc/status"
)

func reportLatencies(b *testing.B, d []time.Duration) {
	if len(d) == 0 {
		return
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	b.ReportMetric(float64(d[len(d)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(d[len(d)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkRemoteTrivialAction is the per-action overhead of remote
// execution: Execute of `/bin/sh -c true` (cache lookup skipped) through the
// Execution service, the scheduler and an in-process worker with its
// sandbox, on bufconn. Compare with BenchmarkLocalTrivialAction.
func BenchmarkRemoteTrivialAction(b *testing.B) { benchRemote(b, false) }

// BenchmarkRemoteTrivialActionNoNamespaces is the same without the
// mount/pid/net namespaces, to show what the sandbox costs.
func BenchmarkRemoteTrivialActionNoNamespaces(b *testing.B) { benchRemote(b, true) }

func benchRemote(b *testing.B, noNS bool) {
	e := newEnv(b, Options{}, false)
	wait, err := e.svc.StartLocalWorkers(e.ctx, 1, LocalWorkerOptions{Dir: b.TempDir(), Platform: e.props, NoNamespaces: noNS})
	if err != nil {
		b.Fatal(err)
	}
	_ = wait
	ad := e.action(shCommand("true"), nil, nil)
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		stream, err := e.exec.Execute(e.ctx, &repb.ExecuteRequest{ActionDigest: ad, SkipCacheLookup: true})
		if err != nil {
			b.Fatal(err)
		}
		for {
			op, err := stream.Recv()
			if err != nil {
				b.Fatal(err)
			}
			if op.Done {
				break
			}
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	reportLatencies(b, lat)
}

// BenchmarkLocalTrivialAction runs `/bin/sh -c true` directly: the baseline.
func BenchmarkLocalTrivialAction(b *testing.B) {
	lat := make([]time.Duration, 0, b.N)
	for i := 0; i < b.N; i++ {
		start := time.Now()
		c := exec.Command("/bin/sh", "-c", "true")
		c.Env = []string{"PATH=/usr/bin:/bin"}
		if err := c.Run(); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	reportLatencies(b, lat)
}

// BenchmarkExecuteWithRetainedOperations is the cost of an Execute that
// fails at admission (the Action is missing) while many finished operations
// are retained: it should not grow with their number.
func BenchmarkExecuteWithRetainedOperations(b *testing.B) {
	for _, n := range []int{100, 100_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			e := newEnv(b, Options{MaxRetainedOperations: n}, false)
			missing := &repb.Digest{Hash: strings.Repeat("0", 64), SizeBytes: 1}
			for i := 0; i < n; i++ {
				e.svc.failedOp(missing, &spb.Status{})
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				e.run(&repb.ExecuteRequest{ActionDigest: missing})
			}
		})
	}
}
