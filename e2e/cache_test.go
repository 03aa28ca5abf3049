package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// cacheTargets are built through the remote cache: C compiles and links, a
// genrule that runs the result, and the Go builder (a large action with the
// Go SDK as inputs).
var cacheTargets = []string{"//e2e/testdata/cc:greeting", "//rules/builder:builder"}

// checkAllRemoteHits asserts that every remotely cacheable spawn of the log
// was served by the remote cache, and that there were some.
func checkAllRemoteHits(t *testing.T, spawns []Spawn) {
	t.Helper()
	cacheable := 0
	for _, s := range spawns {
		if !s.Remotable || !s.Cacheable {
			continue
		}
		cacheable++
		if !s.RemoteCacheHit() {
			out := ""
			if len(s.ListedOutputs) > 0 {
				out = s.ListedOutputs[0]
			}
			t.Errorf("%s action producing %s was not a remote cache hit (runner %q)", s.Mnemonic, out, s.Runner)
		}
	}
	if cacheable < 4 {
		t.Fatalf("only %d cacheable spawns in the rebuild; expected the compiles, link, genrule and builder", cacheable)
	}
	t.Logf("%d of %d cacheable actions were remote cache hits", cacheable, cacheable)
}

var remoteHitLine = regexp.MustCompile(`(\d+) remote cache hit`)

// roundTrip builds the targets with flags (cold: executing locally and
// uploading), expunges the output base, builds again with flags+rebuild and
// returns the rebuild's execution log.
func roundTrip(t *testing.T, flags, rebuild []string) []Spawn {
	return roundTripWith(t, NewBazel(t, repoRoot(t)), flags, rebuild)
}

// roundTripWith is roundTrip on a given Bazel.
func roundTripWith(t *testing.T, b *Bazel, flags, rebuild []string) []Spawn {
	dir := t.TempDir()
	b.Run(t, "clean")
	b.Run(t, append(append([]string{"build", "--execution_log_json_file=" + filepath.Join(dir, "cold.json")}, flags...), cacheTargets...)...)
	cold := ReadExecLog(t, filepath.Join(dir, "cold.json"))
	for _, s := range cold {
		if s.RemoteCacheHit() {
			t.Fatalf("cold build got a remote cache hit from an empty server (%s)", s.Mnemonic)
		}
	}
	b.Run(t, "clean", "--expunge")
	args := append([]string{"build", "--execution_log_json_file=" + filepath.Join(dir, "warm.json")}, flags...)
	args = append(args, rebuild...)
	out := b.Run(t, append(args, cacheTargets...)...)
	if m := remoteHitLine.FindStringSubmatch(out); m == nil {
		t.Errorf("the rebuild's process summary names no remote cache hits:\n%s", tail(out, 20))
	}
	return ReadExecLog(t, filepath.Join(dir, "warm.json"))
}

// TestRemoteCacheGRPC round-trips through the gRPC cache with the builds
// streamed to the server's Build Event Service: the rebuild's invocation
// page shows its targets and the hits Bazel counted.
func TestRemoteCacheGRPC(t *testing.T) {
	requireE2E(t)
	s := StartServer(t)
	flags := []string{"--remote_cache=grpc://" + s.GRPC, "--bes_backend=grpc://" + s.GRPC,
		"--bes_results_url=http://" + s.HTTP + "/invocation/", "--build_metadata=USER=e2e"}
	spawns := roundTrip(t, flags, nil)
	checkAllRemoteHits(t, spawns)
	hits := 0
	for _, sp := range spawns {
		if sp.RemoteCacheHit() {
			hits++
		}
	}
	id, page := lastInvocationPage(t, s)
	// The same page as a browser renders it (Debian's headless Chromium),
	// with a screenshot kept under the test root.
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium is not installed (tools/setup.d/40-chromium.sh installs it):", err)
	}
	url := "http://" + s.HTTP + "/invocation/" + id
	shot := filepath.Join(testRoot(t), "bes", "invocation.png")
	os.MkdirAll(filepath.Dir(shot), 0o755)
	headless := []string{"--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--user-data-dir=" + t.TempDir()}
	dom, err := exec.Command(bin, append(headless, "--dump-dom", url)...).Output()
	if err != nil {
		t.Fatalf("chromium --dump-dom %s: %v", url, err)
	}
	if out, err := exec.Command(bin, append(headless, "--screenshot="+shot, "--window-size=1400,1200", url)...).CombinedOutput(); err != nil {
		t.Errorf("chromium --screenshot: %v\n%s", err, out)
	}
	for _, want := range []string{
		fmt.Sprintf(`<span id="target-count">%d</span>`, len(cacheTargets)),
		fmt.Sprintf(`data-remote-hits="%d"`, hits),
		`<span class="ok">success</span>`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("the rebuild's invocation page lacks %s", want)
		}
		if !strings.Contains(string(dom), want) {
			t.Errorf("the invocation page as Chromium renders it lacks %s", want)
		}
	}
	t.Logf("invocation %s: %d remote hits on its page; screenshot %s", id, hits, shot)
}

// lastInvocationPage fetches the page of the newest invocation the server's
// Build Event Service stored, and returns its id and HTML.
func lastInvocationPage(t *testing.T, s *Server) (string, string) {
	t.Helper()
	index := httpGet(t, "http://"+s.HTTP+"/")
	m := regexp.MustCompile(`<tr class="inv" data-id="([^"]+)"`).FindStringSubmatch(index)
	if m == nil {
		t.Fatalf("the server's page lists no invocation:\n%s", tail(index, 20))
	}
	return m[1], httpGet(t, "http://"+s.HTTP+"/invocation/"+m[1])
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s: %v %s", url, err, resp.Status)
	}
	return string(b)
}

func TestRemoteCacheDownloadMinimal(t *testing.T) {
	requireE2E(t)
	s := StartServer(t)
	flags := []string{"--remote_cache=grpc://" + s.GRPC}
	spawns := roundTrip(t, flags, []string{"--remote_download_minimal"})
	checkAllRemoteHits(t, spawns)
	// With builds without the bytes, the intermediate outputs stay remote.
	b := NewBazel(t, repoRoot(t))
	out := b.Run(t, "info", "output_path")
	objs, _ := filepath.Glob(filepath.Join(strings.TrimSpace(lastLine(out)), "*/bin/e2e/testdata/cc/_objs/*/*.o"))
	if len(objs) > 0 {
		t.Errorf("--remote_download_minimal downloaded intermediate objects: %v", objs)
	}
}

func TestRemoteCacheHTTP(t *testing.T) {
	requireE2E(t)
	s := StartServer(t)
	flags := []string{"--remote_cache=http://" + s.HTTP}
	checkAllRemoteHits(t, roundTrip(t, flags, nil))
}
