package e2e

import (
	"bytes"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zeebo/blake3"
)

// The server under what only a current Bazel (7.7.1, in the toolchain
// root) sends: BLAKE3 digests, zstd on the wire, top-level-only downloads,
// and lost-input recovery when blobs disappear between builds without the
// bytes.

// TestRemoteCacheBlake3 round-trips the cache targets with BLAKE3 digests
// (a startup option, so on its own output root).
func TestRemoteCacheBlake3(t *testing.T) {
	requireE2E(t)
	s := StartServer(t)
	b := &Bazel{Dir: repoRoot(t), OutputUserRoot: filepath.Join(testRoot(t), "bazel-root-blake3"), Startup: []string{"--digest_function=blake3"}}
	t.Cleanup(func() { b.Shutdown(t) })
	spawns := roundTripWith(t, b, []string{"--remote_cache=grpc://" + s.GRPC}, nil)
	checkAllRemoteHits(t, spawns)
	// The digests are BLAKE3: greeting.txt (downloaded, a top-level output)
	// hashes to the digest the log names for it.
	out := strings.TrimSpace(lastLine(b.Run(t, "info", "output_path")))
	files, _ := filepath.Glob(filepath.Join(out, "*/bin/e2e/testdata/cc/greeting.txt"))
	if len(files) != 1 {
		t.Fatalf("greeting.txt not found under %s", out)
	}
	data, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	sum := blake3.Sum256(data)
	want := hex.EncodeToString(sum[:])
	found := false
	for _, sp := range spawns {
		for _, o := range sp.ActualOutputs {
			if strings.HasSuffix(o.Path, "/greeting.txt") {
				found = true
				if o.Digest.Hash != want {
					t.Errorf("greeting.txt has digest %s in the log, its BLAKE3 is %s", o.Digest.Hash, want)
				}
			}
		}
	}
	if !found {
		t.Errorf("the rebuild's log names no greeting.txt output")
	}
}

// TestRemoteCacheCompression round-trips with --remote_cache_compression and
// checks in Bazel's own gRPC log that blobs moved as compressed-blobs/zstd.
func TestRemoteCacheCompression(t *testing.T) {
	requireE2E(t)
	s := StartServer(t)
	grpcLog := filepath.Join(t.TempDir(), "grpc.log")
	flags := []string{"--remote_cache=grpc://" + s.GRPC, "--remote_cache_compression"}
	spawns := roundTrip(t, flags, []string{"--remote_grpc_log=" + grpcLog})
	checkAllRemoteHits(t, spawns)
	data, err := os.ReadFile(grpcLog)
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(data, []byte("compressed-blobs/zstd/")); n == 0 {
		t.Errorf("Bazel's gRPC log of the rebuild names no compressed-blobs/zstd resource")
	} else {
		t.Logf("the rebuild read %d blobs as compressed-blobs/zstd", n)
	}
}

// TestRemoteCacheDownloadToplevel rebuilds with --remote_download_toplevel:
// every action is a hit, the top-level output is on disk and the
// intermediate objects are not.
func TestRemoteCacheDownloadToplevel(t *testing.T) {
	requireE2E(t)
	s := StartServer(t)
	checkAllRemoteHits(t, roundTrip(t, []string{"--remote_cache=grpc://" + s.GRPC}, []string{"--remote_download_toplevel"}))
	b := NewBazel(t, repoRoot(t))
	out := strings.TrimSpace(lastLine(b.Run(t, "info", "output_path")))
	if got, _ := filepath.Glob(filepath.Join(out, "*/bin/e2e/testdata/cc/greeting.txt")); len(got) == 0 {
		t.Errorf("--remote_download_toplevel did not download the top-level greeting.txt")
	}
	if objs, _ := filepath.Glob(filepath.Join(out, "*/bin/e2e/testdata/cc/_objs/*/*.o")); len(objs) > 0 {
		t.Errorf("--remote_download_toplevel downloaded intermediate objects: %v", objs)
	}
}

// TestLostInputsRetry builds without the bytes, empties the server's store
// (as eviction would), edits a source so the link needs an intermediate
// object that now exists nowhere, and checks that Bazel 7's
// --experimental_remote_cache_eviction_retries recovers: the build succeeds
// after Bazel reports the missing blobs and retries.
func TestLostInputsRetry(t *testing.T) {
	requireE2E(t)
	ws := smallWorkspace(t, "lost-inputs")
	s := StartServer(t)
	b := &Bazel{Dir: ws, OutputUserRoot: sharedOutputRoot(t)}
	t.Cleanup(func() { b.Run(t, "clean", "--expunge"); b.Shutdown(t) })
	flags := []string{"--remote_cache=grpc://" + s.GRPC, "--remote_download_minimal"}
	// Fill the cache, then rebuild from it: the intermediate outputs now
	// exist only on the server.
	b.Run(t, append([]string{"build"}, append(flags, "//:greeting")...)...)
	b.Run(t, "clean", "--expunge")
	b.Run(t, append([]string{"build"}, append(flags, "//:greeting")...)...)

	s.Restart(t, true) // every blob gone
	hello := filepath.Join(ws, "hello.c")
	src, err := os.ReadFile(hello)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(hello, append(src, []byte("\nint unused_after_edit(void) { return 1; }\n")...), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := b.RunErr(t, append([]string{"build", "--experimental_remote_cache_eviction_retries=2"}, append(flags, "//:greeting")...)...)
	if err != nil {
		t.Fatalf("the build after eviction failed despite retries: %v\n%s", err, tail(out, 30))
	}
	if !strings.Contains(out, "retrying the build") {
		t.Errorf("Bazel did not report a lost-input retry; the test did not exercise eviction:\n%s", tail(out, 30))
	}
}

// smallWorkspace copies e2e/testdata/cc into its own Bazel module under
// the test root, using the repository's registry and flags.
func smallWorkspace(t *testing.T, name string) string {
	t.Helper()
	ws := filepath.Join(testRoot(t), name, "ws")
	os.RemoveAll(ws)
	if err := copyTree(filepath.Join(repoRoot(t), "e2e", "testdata", "cc"), ws); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"MODULE.bazel": `module(name = "` + strings.ReplaceAll(name, "-", "_") + `")` + "\n",
		".bazelrc": "common --registry=file://" + filepath.Join(repoRoot(t), "third_party", "bazel-registry") + "\n" +
			"common --lockfile_mode=off\ncommon --noenable_workspace\nbuild --nosandbox_debug\n",
	}
	for f, content := range files {
		if err := os.WriteFile(filepath.Join(ws, f), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return ws
}
