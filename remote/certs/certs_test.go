package certs_test

import (
	"crypto/tls"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ferrule-build/ferrule/remote/certs"
	"github.com/ferrule-build/ferrule/remote/certs/certstest"
)

// handshake connects to l trusting ca's pool and returns the error.
func handshake(t *testing.T, addr string, ca *certstest.CA) error {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"})
	if err != nil {
		return err
	}
	return c.Close()
}

// A renewed certificate is served without a restart; a broken one leaves
// the previous in use.
func TestReload(t *testing.T) {
	dir := t.TempDir()
	old := certstest.NewCA(t, dir, "old")
	p := old.Server(t, dir, "server")
	r, err := certs.Load(certs.Files{Cert: p.Cert, Key: p.Key}, nil)
	if err != nil {
		t.Fatal(err)
	}
	l, err := tls.Listen("tcp", "127.0.0.1:0", r.Config(tls.NoClientCert))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { c.(*tls.Conn).Handshake(); c.Close() }()
		}
	}()
	addr := l.Addr().String()
	if err := handshake(t, addr, old); err != nil {
		t.Fatalf("first certificate: %v", err)
	}

	// Replace the files with a certificate of another CA.
	renewed := certstest.NewCA(t, dir, "new")
	next := renewed.Server(t, t.TempDir(), "server")
	for _, f := range [][2]string{{next.Cert, p.Cert}, {next.Key, p.Key}} {
		data, _ := os.ReadFile(f[0])
		os.WriteFile(f[1], data, 0o600)
		later := time.Now().Add(2 * time.Second)
		os.Chtimes(f[1], later, later)
	}
	deadline := time.Now().Add(10 * time.Second)
	for handshake(t, addr, renewed) != nil {
		if time.Now().After(deadline) {
			t.Fatal("the renewed certificate is never served")
		}
		time.Sleep(200 * time.Millisecond)
	}

	// A broken key file: the last good certificate stays.
	os.WriteFile(p.Key, []byte("not a key"), 0o600)
	later := time.Now().Add(4 * time.Second)
	os.Chtimes(p.Key, later, later)
	time.Sleep(1100 * time.Millisecond)
	if err := handshake(t, addr, renewed); err != nil {
		t.Fatalf("after a broken key file: %v", err)
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	ca := certstest.NewCA(t, dir, "ca")
	p := ca.Server(t, dir, "server")
	if _, err := certs.Load(certs.Files{Cert: p.Cert}, nil); err == nil {
		t.Error("a certificate without a key accepted")
	}
	if _, err := certs.Load(certs.Files{Cert: p.Cert, Key: p.Key, CA: p.Key}, nil); err == nil || !strings.Contains(err.Error(), p.Key+" holds no PEM certificate") {
		t.Errorf("a CA file holding a key: %v", err)
	}
	if _, err := certs.Load(certs.Files{Cert: p.Cert, Key: ca.File}, nil); err == nil || !strings.Contains(err.Error(), p.Cert) {
		t.Errorf("a key file holding a certificate: %v", err)
	}
}
