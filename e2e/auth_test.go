package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrule-build/ferrule/remote/certs/certstest"
)

// TestAuth builds through a server with TLS, tokens and client
// certificates: a writer fills the cache; a reader gets hits, and its
// uploads are refused while its build still succeeds; a client without
// credentials is refused; a client certificate alone (mTLS) gets hits.
func TestAuth(t *testing.T) {
	requireE2E(t)
	// Under the checkout's test root, which the toolchain root binds, so
	// Bazel inside it reads the certificates.
	dir, err := os.MkdirTemp(testRoot(t), "auth-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	ca := certstest.NewCA(t, dir, "ca")
	sc := ca.Server(t, dir, "server")
	client := ca.Client(t, dir, "e2e-client", time.Now().Add(time.Hour))
	const writer, reader = "e2e-writer-token-0123456789", "e2e-reader-token-0123456789"
	tokens := filepath.Join(dir, "tokens")
	roles := filepath.Join(dir, "roles")
	if err := os.WriteFile(tokens, []byte("ci writer "+writer+"\ndev reader "+reader+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(roles, []byte("e2e-client reader\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := StartServer(t, "--tls_cert_file", sc.Cert, "--tls_key_file", sc.Key, "--tls_ca_file", ca.File,
		"--tls_client_roles_file", roles, "--token_file", tokens)

	b := NewBazel(t, repoRoot(t))
	defer b.Shutdown(t)
	tlsFlags := []string{"--remote_cache=grpcs://" + s.GRPC, "--tls_certificate=" + ca.File}
	as := func(token string) []string {
		return append(append([]string(nil), tlsFlags...), "--remote_header=Authorization=Bearer "+token)
	}
	logs := t.TempDir()
	build := func(log string, flags []string, targets ...string) (string, error) {
		args := append([]string{"build", "--execution_log_json_file=" + filepath.Join(logs, log)}, flags...)
		return b.RunErr(t, append(args, targets...)...)
	}

	// The writer fills the cache over TLS.
	b.Run(t, "clean")
	if out, err := build("writer.json", as(writer), cacheTargets[0]); err != nil {
		t.Fatalf("writer build: %v\n%s", err, tail(out, 40))
	}

	// The reader gets every action from it.
	b.Run(t, "clean", "--expunge")
	if out, err := build("reader.json", as(reader), cacheTargets[0]); err != nil {
		t.Fatalf("reader build: %v\n%s", err, tail(out, 40))
	}
	checkAllRemoteHits(t, ReadExecLog(t, filepath.Join(logs, "reader.json")))

	// An action the cache lacks: the reader runs it, its upload is refused
	// and the build still succeeds, with a warning.
	out, err := build("reader-slow.json", as(reader), "//e2e/testdata/slow")
	if err != nil {
		t.Fatalf("reader build of a new action: %v\n%s", err, tail(out, 40))
	}
	if !strings.Contains(out, "PERMISSION_DENIED") {
		t.Errorf("the reader's refused upload gave no warning:\n%s", tail(out, 30))
	}

	// No credentials: refused.
	b.Run(t, "clean")
	out, err = build("anonymous.json", tlsFlags, cacheTargets[0])
	if err == nil || !strings.Contains(out, "UNAUTHENTICATED") {
		t.Errorf("build without credentials: %v\n%s", err, tail(out, 30))
	}

	// mTLS: the client certificate alone makes a reader.
	b.Run(t, "clean")
	mtls := append(append([]string(nil), tlsFlags...), "--tls_client_certificate="+client.Cert, "--tls_client_key="+client.Key)
	if out, err := build("mtls.json", mtls, cacheTargets[0]); err != nil {
		t.Fatalf("mTLS build: %v\n%s", err, tail(out, 40))
	}
	checkAllRemoteHits(t, ReadExecLog(t, filepath.Join(logs, "mtls.json")))

	log := s.log.String()
	for _, secret := range []string{writer, reader} {
		if strings.Contains(log, secret) {
			t.Errorf("the server log holds a token")
		}
	}
	if !strings.Contains(log, `principal="token \"dev\" (reader)"`) {
		t.Errorf("the server log does not name the refused reader:\n%s", tail(log, 20))
	}
}
