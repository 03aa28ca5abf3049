package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrule-build/ferrule/remote/certs/certstest"
)

// TestAuth builds through servers with tokens, TLS and client
// certificates. Over gRPC with tokens: a writer fills the cache; a reader
// gets hits and, told by GetCapabilities that it may not update the
// action cache, attempts no upload while its build still succeeds; a
// client without credentials is refused. Over HTTPS: a writer's token with
// --tls_certificate fills the cache, a client certificate alone (mTLS,
// mapped to reader) gets hits. Over grpcs:// (the toolchain root's Bazel
// takes its ALPN-capable TLS from netty-tcnative, see
// toolchains/root/manifest.txt): a reader's token with --tls_certificate
// and a client certificate alone both get hits.
func TestAuth(t *testing.T) {
	requireE2E(t)
	// Under the checkout's test root, which the toolchain root binds, so
	// Bazel inside it reads the certificates.
	dir, err := os.MkdirTemp(testRoot(t), "auth-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	const writer, reader = "e2e-writer-token-0123456789", "e2e-reader-token-0123456789"
	tokens := filepath.Join(dir, "tokens")
	if err := os.WriteFile(tokens, []byte("ci writer "+writer+"\ndev reader "+reader+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	b := NewBazel(t, repoRoot(t))
	defer b.Shutdown(t)
	logs := t.TempDir()
	build := func(log string, flags []string, targets ...string) (string, error) {
		args := append([]string{"build", "--execution_log_json_file=" + filepath.Join(logs, log)}, flags...)
		return b.RunErr(t, append(args, targets...)...)
	}
	mustBuild := func(log string, flags []string, targets ...string) string {
		t.Helper()
		out, err := build(log, flags, targets...)
		if err != nil {
			t.Fatalf("build %s: %v\n%s", log, err, tail(out, 40))
		}
		return out
	}

	s := StartServer(t, "--token_file", tokens)
	grpcAs := func(token string) []string {
		return []string{"--remote_cache=grpc://" + s.GRPC, "--remote_header=Authorization=Bearer " + token}
	}
	b.Run(t, "clean")
	mustBuild("writer.json", grpcAs(writer), cacheTargets[0])
	b.Run(t, "clean", "--expunge")
	readerOut := mustBuild("reader.json", grpcAs(reader), cacheTargets[0])
	checkAllRemoteHits(t, ReadExecLog(t, filepath.Join(logs, "reader.json")))
	// An action the cache lacks: the reader runs it and, told that it may
	// not update the action cache, uploads nothing; Bazel says so.
	if out := mustBuild("reader-slow.json", grpcAs(reader), "//e2e/testdata/slow"); !strings.Contains(readerOut+out, "not authorized to write local results") {
		t.Errorf("Bazel did not say that the reader may not upload:\n%s", tail(out, 30))
	}
	if strings.Contains(s.log.String(), `principal="token \"dev\" (reader)"`) {
		t.Errorf("the reader attempted an upload:\n%s", tail(s.log.String(), 20))
	}
	// Without credentials Bazel is refused at GetCapabilities and builds
	// without the cache.
	b.Run(t, "clean")
	out := mustBuild("anonymous.json", []string{"--remote_cache=grpc://" + s.GRPC}, cacheTargets[0])
	if !strings.Contains(out, "UNAUTHENTICATED") {
		t.Errorf("build without credentials was not refused:\n%s", tail(out, 30))
	}
	for _, sp := range ReadExecLog(t, filepath.Join(logs, "anonymous.json")) {
		if sp.RemoteCacheHit() {
			t.Errorf("a client without credentials got a hit (%s)", sp.Mnemonic)
		}
	}
	log := s.log.String()
	if strings.Contains(log, writer) || strings.Contains(log, reader) {
		t.Errorf("the server log holds a token")
	}
	if !strings.Contains(log, `reason=unauthenticated method=GetCapabilities principal=anonymous`) {
		t.Errorf("the server log does not name the refused anonymous client:\n%s", tail(log, 20))
	}

	// TLS and mTLS over HTTPS.
	ca := certstest.NewCA(t, dir, "ca")
	sc := ca.Server(t, dir, "server")
	client := ca.Client(t, dir, "e2e-client", time.Now().Add(time.Hour))
	roles := filepath.Join(dir, "roles")
	if err := os.WriteFile(roles, []byte("e2e-client reader\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ts := StartServer(t, "--tls_cert_file", sc.Cert, "--tls_key_file", sc.Key, "--tls_ca_file", ca.File,
		"--tls_client_roles_file", roles, "--token_file", tokens)
	tlsFlags := []string{"--remote_cache=https://" + ts.HTTP, "--tls_certificate=" + ca.File}
	b.Run(t, "clean")
	mustBuild("https-writer.json", append(tlsFlags, "--remote_header=Authorization=Bearer "+writer), cacheTargets[0])
	b.Run(t, "clean")
	mustBuild("mtls.json", append(tlsFlags, "--tls_client_certificate="+client.Cert, "--tls_client_key="+client.Key), cacheTargets[0])
	checkAllRemoteHits(t, ReadExecLog(t, filepath.Join(logs, "mtls.json")))

	// TLS and mTLS over grpcs://, on the same store.
	grpcsFlags := []string{"--remote_cache=grpcs://" + ts.GRPC, "--tls_certificate=" + ca.File}
	for _, c := range []struct {
		log   string
		flags []string
	}{
		{"grpcs-token.json", []string{"--remote_header=Authorization=Bearer " + reader}},
		{"grpcs-mtls.json", []string{"--tls_client_certificate=" + client.Cert, "--tls_client_key=" + client.Key}},
	} {
		b.Run(t, "clean")
		args := append([]string{"build", "--execution_log_json_file=" + filepath.Join(logs, c.log)}, grpcsFlags...)
		out, err := b.RunErr(t, append(append(args, c.flags...), cacheTargets[0])...)
		if err != nil {
			t.Fatalf("build %s: %v\n%s", c.log, err, tail(out, 40))
		}
		if strings.Contains(out, "Failed to init TLS") {
			t.Errorf("%s: Bazel could not open grpcs://:\n%s", c.log, tail(out, 30))
		}
		checkAllRemoteHits(t, ReadExecLog(t, filepath.Join(logs, c.log)))
	}
}
