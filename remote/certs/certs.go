// Package certs serves TLS from certificate files: the server's key pair
// and, for mutual TLS, the CA bundle client certificates must chain to.
// The files are read again when they change (looked at, at most once a
// second, when a client connects), so a renewed certificate needs no
// restart; a file that fails to load then keeps the previous one in use.
package certs

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc/credentials"
)

// Files names the PEM files. CA is optional.
type Files struct {
	Cert, Key, CA string
}

// Reloader holds the loaded certificates and reloads them on change.
type Reloader struct {
	files Files
	log   *slog.Logger

	mu      sync.Mutex
	checked time.Time
	stamps  []stamp
	cert    *tls.Certificate
	pool    *x509.CertPool // nil without Files.CA
}

// stamp is what tells a changed file: its modification time and size.
type stamp struct {
	mod  time.Time
	size int64
}

// recheck is how often the files are looked at.
const recheck = time.Second

// Load reads the files; an error names the file at fault.
func Load(f Files, log *slog.Logger) (*Reloader, error) {
	if f.Cert == "" || f.Key == "" {
		return nil, fmt.Errorf("TLS needs both a certificate file and a key file (--tls_cert_file, --tls_key_file)")
	}
	if log == nil {
		log = slog.Default()
	}
	r := &Reloader{files: f, log: log}
	if err := r.load(); err != nil {
		return nil, err
	}
	r.checked = time.Now()
	return r, nil
}

func (r *Reloader) paths() []string {
	p := []string{r.files.Cert, r.files.Key}
	if r.files.CA != "" {
		p = append(p, r.files.CA)
	}
	return p
}

func (r *Reloader) stat() ([]stamp, error) {
	var out []stamp
	for _, p := range r.paths() {
		fi, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		out = append(out, stamp{fi.ModTime(), fi.Size()})
	}
	return out, nil
}

// load reads every file and replaces the certificates (r.mu held or not
// yet shared).
func (r *Reloader) load() error {
	stamps, err := r.stat()
	if err != nil {
		return fmt.Errorf("TLS: %w", err)
	}
	certPEM, err := os.ReadFile(r.files.Cert)
	if err != nil {
		return fmt.Errorf("TLS certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(r.files.Key)
	if err != nil {
		return fmt.Errorf("TLS key: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("TLS certificate %s with key %s: %w", r.files.Cert, r.files.Key, err)
	}
	if cert.Leaf != nil && time.Now().After(cert.Leaf.NotAfter) {
		r.log.Warn("the server's TLS certificate has expired", "file", r.files.Cert, "not_after", cert.Leaf.NotAfter)
	}
	var pool *x509.CertPool
	if r.files.CA != "" {
		caPEM, err := os.ReadFile(r.files.CA)
		if err != nil {
			return fmt.Errorf("TLS client CA: %w", err)
		}
		pool = x509.NewCertPool()
		if !pool.AppendCertsFromPEM(caPEM) {
			return fmt.Errorf("TLS client CA file %s holds no PEM certificate", r.files.CA)
		}
	}
	r.cert, r.pool, r.stamps = &cert, pool, stamps
	return nil
}

// current returns the certificates, reloading them first if a file changed.
func (r *Reloader) current() (*tls.Certificate, *x509.CertPool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if time.Since(r.checked) >= recheck {
		r.checked = time.Now()
		stamps, err := r.stat()
		if err == nil && !equal(stamps, r.stamps) {
			if err := r.load(); err != nil {
				r.log.Warn("TLS files changed but do not load; keeping the previous ones", "err", err)
			} else {
				r.log.Info("TLS files reloaded", "cert", r.files.Cert, "ca", r.files.CA)
			}
		}
	}
	return r.cert, r.pool
}

func equal(a, b []stamp) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].mod.Equal(b[i].mod) || a[i].size != b[i].size {
			return false
		}
	}
	return true
}

// Config is a server TLS configuration over the current files. Without a
// CA file client certificates are not asked for; with one, clientAuth
// says whether they are required (tls.RequireAndVerifyClientCert) or
// verified when given (tls.VerifyClientCertIfGiven).
func (r *Reloader) Config(clientAuth tls.ClientAuthType, nextProtos ...string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: nextProtos,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			cert, pool := r.current()
			c := &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: nextProtos, Certificates: []tls.Certificate{*cert}}
			if pool != nil {
				c.ClientCAs, c.ClientAuth = pool, clientAuth
			}
			return c, nil
		},
	}
}

// GRPC is gRPC transport credentials over Config that log refused
// handshakes (an expired certificate, one from another CA, a client
// speaking plain text).
func (r *Reloader) GRPC(clientAuth tls.ClientAuthType) credentials.TransportCredentials {
	return loggedCreds{credentials.NewTLS(r.Config(clientAuth, "h2")), r.log}
}

type loggedCreds struct {
	credentials.TransportCredentials
	log *slog.Logger
}

func (c loggedCreds) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	out, info, err := c.TransportCredentials.ServerHandshake(conn)
	if err != nil {
		c.log.Warn("TLS handshake refused", "remote", conn.RemoteAddr().String(), "err", err)
	}
	return out, info, err
}

func (c loggedCreds) Clone() credentials.TransportCredentials {
	return loggedCreds{c.TransportCredentials.Clone(), c.log}
}
