package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/ferrule-build/ferrule/remote/store"
	"github.com/ferrule-build/ferrule/remote/store/s3/s3test"
)

// sharedUploads reads how many uploads to the bucket a frontend counted.
func sharedUploads(s *Server) (int, bool) {
	resp, err := http.Get("http://" + s.HTTP + "/metrics")
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^ferrule_shared_uploads_total\{result="ok"\} (\d+)`).FindSubmatch(body)
	if m == nil {
		return 0, false
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n, true
}

// TestS3TwoFrontends: two `ferrule serve` frontends, each with its own
// disk, share one bucket of a real S3 server (versitygw). A build through
// A, `clean --expunge`, the build through B is all remote cache hits;
// then A is killed (SIGKILL) during a build, and the build repeated
// through B succeeds; then S3 is stopped during a build through B, which
// succeeds, and B recovers when S3 is back.
func TestS3TwoFrontends(t *testing.T) {
	requireE2E(t)
	s3srv := s3test.Start(t)
	s3srv.MakeBucket(t, "e2e-shared")
	t.Setenv("AWS_ACCESS_KEY_ID", s3test.Access)
	t.Setenv("AWS_SECRET_ACCESS_KEY", s3test.Secret)
	flags := []string{"--s3.endpoint", s3srv.Addr, "--s3.bucket", "e2e-shared", "--s3.prefix", "e2e", "--s3.disable_ssl"}
	a := StartServer(t, flags...)
	b := StartServer(t, flags...)
	bz := NewBazel(t, repoRoot(t))

	// The rebuild's --remote_cache comes last and wins.
	spawns := roundTripWith(t, bz, []string{"--remote_cache=grpc://" + a.GRPC}, []string{"--remote_cache=grpc://" + b.GRPC})
	checkAllRemoteHits(t, spawns)

	// New action keys (another action environment), so that the build
	// through A executes and uploads; A dies under it.
	before, ok := sharedUploads(a)
	if !ok {
		t.Fatal("frontend A's /metrics has no ferrule_shared_uploads_total")
	}
	env := "--action_env=FERRULE_E2E_S3=killed"
	bz.Run(t, "clean", "--expunge")
	done := make(chan error, 1)
	go func() {
		_, err := bz.RunErr(t, append([]string{"build", "--remote_cache=grpc://" + a.GRPC, env}, cacheTargets...)...)
		done <- err
	}()
	running := true
	for deadline := time.Now().Add(10 * time.Minute); ; {
		if n, _ := sharedUploads(a); n > before {
			break
		}
		select {
		case err := <-done:
			running = false
			t.Logf("the build through A ended (%v) before A was seen uploading", err)
		default:
		}
		if !running || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	a.cmd.Process.Kill()
	a.cmd.Wait()
	if running {
		err := <-done
		t.Logf("A killed (SIGKILL) during the build, after its first uploads; that build ended with %v", err)
	}

	bz.Run(t, "clean", "--expunge")
	log := filepath.Join(t.TempDir(), "after-kill.json")
	out := bz.Run(t, append([]string{"build", "--remote_cache=grpc://" + b.GRPC, env, "--execution_log_json_file=" + log}, cacheTargets...)...)
	hits := 0
	for _, s := range ReadExecLog(t, log) {
		if s.RemoteCacheHit() {
			hits++
		}
	}
	t.Logf("the build repeated through B succeeded with %d remote cache hits from what A uploaded before it died:\n%s", hits, tail(out, 5))

	// S3 stopped during a build through B: the build still succeeds (B
	// refuses the uploads it cannot pass on as UNAVAILABLE, Bazel goes on),
	// /status says why, and once S3 is back B is healthy and builds again.
	before, _ = sharedUploads(b)
	env = "--action_env=FERRULE_E2E_S3=s3-stopped"
	bz.Run(t, "clean", "--expunge")
	go func() {
		out, err := bz.RunErr(t, append([]string{"build", "--remote_cache=grpc://" + b.GRPC, env}, cacheTargets...)...)
		if err != nil {
			err = fmt.Errorf("%v\n%s", err, tail(out, 30))
		}
		done <- err
	}()
	for deadline := time.Now().Add(10 * time.Minute); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if n, _ := sharedUploads(b); n > before {
			break
		}
	}
	s3srv.Stop()
	if err := <-done; err != nil {
		t.Errorf("the build through B with S3 stopped under it failed: %v", err)
	}
	// A lookup of what B's disk lacks reaches for S3 even if the build
	// made its last upload before S3 stopped; B answers from its disk.
	conn, err := grpc.NewClient(b.GRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	absent := &repb.Digest{Hash: strings.Repeat("0", 64), SizeBytes: 1}
	ctx, cancel := contextWithTimeout(30 * time.Second)
	fm, err := repb.NewContentAddressableStorageClient(conn).FindMissingBlobs(ctx,
		&repb.FindMissingBlobsRequest{BlobDigests: []*repb.Digest{absent}})
	cancel()
	conn.Close()
	if err != nil || len(fm.GetMissingBlobDigests()) != 1 {
		t.Errorf("FindMissingBlobs through B with S3 stopped: %v, %v; want the digest missing", fm, err)
	}
	if h := sharedTier(t, b); h.Healthy || h.Cause == "" {
		t.Errorf("B's /status with S3 stopped: %+v, want degraded with the cause", h)
	}
	s3srv.Restart(t)
	for deadline := time.Now().Add(30 * time.Second); !sharedTier(t, b).Healthy; time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("B still degraded after S3 came back: %+v", sharedTier(t, b))
		}
	}
	bz.Run(t, "clean", "--expunge")
	bz.Run(t, append([]string{"build", "--remote_cache=grpc://" + b.GRPC, env}, cacheTargets...)...)
}

// sharedTier reads the S3 tier's health from a frontend's /status.
func sharedTier(t *testing.T, s *Server) store.Health {
	t.Helper()
	var st struct {
		SharedTier *store.Health `json:"shared_tier"`
	}
	if err := json.Unmarshal([]byte(httpGet(t, "http://"+s.HTTP+"/status")), &st); err != nil || st.SharedTier == nil {
		t.Fatalf("/status of %s has no shared tier (%v)", s.HTTP, err)
	}
	return *st.SharedTier
}
