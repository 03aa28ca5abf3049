package auth

import (
	"bytes"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// lockedBuffer is a log sink safe for concurrent writes.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// rewrite replaces file's text and moves its modification time on, so the
// change shows however coarse the file system's clock is.
func rewrite(t *testing.T, file, text string, step int) {
	t.Helper()
	writeFile(t, file, text)
	mod := time.Now().Add(time.Duration(step) * time.Minute)
	if err := os.Chtimes(file, mod, mod); err != nil {
		t.Fatal(err)
	}
}

// Token and htpasswd files are read again when they change: a new token
// or user is accepted, a removed one refused, a changed role counts, and
// a file that fails to parse keeps the previous contents and is logged
// with its file and line but without the secret on that line.
func TestCredentialFilesReload(t *testing.T) {
	old := recheck
	recheck = 0
	t.Cleanup(func() { recheck = old })
	const tokenA, tokenB = "token-a-0123456789", "token-b-0123456789"
	tokens := write(t, "tokens", "a reader "+tokenA+"\n")
	hashAlice, _ := bcrypt.GenerateFromPassword([]byte("pw-alice"), bcrypt.MinCost)
	hashBob, _ := bcrypt.GenerateFromPassword([]byte("pw-bob"), bcrypt.MinCost)
	htpasswd := write(t, "htpasswd", "alice:"+string(hashAlice)+":reader\n")
	var log lockedBuffer
	p, err := New(Config{TokenFile: tokens, HtpasswdFile: htpasswd, Logger: slog.New(slog.NewTextHandler(&log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	as := func(header string) *Principal {
		t.Helper()
		pr, r := p.authenticate(header, nil)
		if r != nil {
			return nil
		}
		return pr
	}
	basic := func(user, pw string) string {
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pw))
	}
	if pr := as("Bearer " + tokenA); pr == nil || pr.Perm != Read {
		t.Fatalf("token a before the change: %v", pr)
	}
	if pr := as(basic("alice", "pw-alice")); pr == nil || pr.Perm != Read {
		t.Fatalf("alice before the change: %v", pr)
	}

	rewrite(t, tokens, "a writer "+tokenA+"\nb reader "+tokenB+"\n", 1)
	rewrite(t, htpasswd, "bob:"+string(hashBob)+"\nalice:"+string(hashAlice)+":writer\n", 1)
	if pr := as("Bearer " + tokenA); pr == nil || pr.Perm&WriteAC == 0 {
		t.Errorf("token a after it became a writer: %v", pr)
	}
	if as("Bearer "+tokenB) == nil {
		t.Error("the added token b is refused")
	}
	// alice passed bcrypt before: her remembered credentials must not keep
	// the old role.
	if pr := as(basic("alice", "pw-alice")); pr == nil || pr.Perm&WriteAC == 0 {
		t.Errorf("alice after she became a writer: %v", pr)
	}
	if as(basic("bob", "pw-bob")) == nil {
		t.Error("the added user bob is refused")
	}
	if !strings.Contains(log.String(), "token file reloaded") || !strings.Contains(log.String(), "htpasswd file reloaded") {
		t.Errorf("reloads not logged:\n%s", log.String())
	}

	// Broken files: the previous contents stay.
	const short = "short-secret"
	rewrite(t, tokens, "b reader "+tokenB+"\nc writer "+short+"\n", 2)
	rewrite(t, htpasswd, "bob:"+string(hashBob)+"\ncarol:plain-password\n", 2)
	if as("Bearer "+tokenA) == nil || as("Bearer "+tokenB) == nil {
		t.Error("a token file that does not parse replaced the previous one")
	}
	if as(basic("alice", "pw-alice")) == nil {
		t.Error("an htpasswd file that does not parse replaced the previous one")
	}
	logged := log.String()
	for _, want := range []string{tokens + " line 2: c: token shorter than", htpasswd + " line 2: user carol: not a bcrypt hash"} {
		if !strings.Contains(logged, want) {
			t.Errorf("the log does not say %q:\n%s", want, logged)
		}
	}
	for _, secret := range []string{short, "plain-password", tokenA, tokenB, "pw-alice", string(hashBob)} {
		if strings.Contains(logged, secret) {
			t.Errorf("the log holds the secret %q", secret)
		}
	}
	// The bad version is logged once, not on every request.
	as("Bearer " + tokenB)
	if n := strings.Count(log.String(), "token file changed but does not load"); n != 1 {
		t.Errorf("the bad token file was logged %d times, want once", n)
	}

	// Fixed again: token a is gone.
	rewrite(t, tokens, "b reader "+tokenB+"\n", 3)
	if as("Bearer "+tokenA) != nil {
		t.Error("token a, removed from the file, is still accepted")
	}
}

// The client certificate role file is reloaded the same way.
func TestCertRoleFileReload(t *testing.T) {
	old := recheck
	recheck = 0
	t.Cleanup(func() { recheck = old })
	roles := write(t, "roles", "c1 reader\n")
	p, err := New(Config{ClientCertificates: true, CertRoleFile: roles})
	if err != nil {
		t.Fatal(err)
	}
	cert := &x509.Certificate{Subject: pkix.Name{CommonName: "c1"}}
	if pr := p.fromCertificate(cert); pr.Perm != Read {
		t.Fatalf("c1 before the change: %v", pr)
	}
	rewrite(t, roles, "c1 writer\n", 1)
	if pr := p.fromCertificate(cert); pr.Perm&WriteAC == 0 {
		t.Errorf("c1 after it became a writer: %v", pr)
	}
	rewrite(t, roles, "c1\n", 2)
	if pr := p.fromCertificate(cert); pr.Perm&WriteAC == 0 {
		t.Errorf("a role file that does not parse replaced the previous one: %v", pr)
	}
}
