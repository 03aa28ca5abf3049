package auth

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/bcrypt"
	"google.golang.org/grpc/codes"
)

// Config says where credentials come from and what anonymous clients may do.
type Config struct {
	// TokenFile holds bearer tokens and their roles (see readTokens).
	TokenFile string
	// HtpasswdFile holds basic auth users (bcrypt only; see readHtpasswd).
	HtpasswdFile string
	// ClientCertificates: the server verifies client certificates (mTLS),
	// and a verified certificate authenticates its holder.
	ClientCertificates bool
	// CertRoleFile maps certificate names to roles (see readCertRoles);
	// empty gives every verified certificate every role.
	CertRoleFile string
	// AllowUnauthenticatedReads gives clients without credentials the
	// reader role.
	AllowUnauthenticatedReads bool
	// ReadOnly refuses every write, whoever asks.
	ReadOnly bool
	// Registerer receives the refusal counter; nil keeps it unregistered.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// Policy authenticates requests and refuses what their principal may not do.
type Policy struct {
	cfg       Config
	open      bool                              // no credential source: everyone holds every role
	tokens    *watched[map[tokenKey]*Principal] // nil without a token file
	users     *watched[*htpasswd]               // nil without an htpasswd file
	certRoles *watched[[]certRole]              // nil without a role file

	refused *prometheus.CounterVec
	log     *slog.Logger
}

// maxBasicCache bounds the remembered basic credentials (a bcrypt check
// takes tens of milliseconds; Bazel sends the header on every request).
const maxBasicCache = 1024

// New reads the credential files of c. A bad file gives an error naming
// the file and the line.
func New(c Config) (*Policy, error) {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	p := &Policy{cfg: c, log: c.Logger}
	var err error
	if c.TokenFile != "" {
		if p.tokens, err = watch("token file", c.TokenFile, readTokens, c.Logger); err != nil {
			return nil, err
		}
	}
	if c.HtpasswdFile != "" {
		if p.users, err = watch("htpasswd file", c.HtpasswdFile, readHtpasswdCache, c.Logger); err != nil {
			return nil, err
		}
	}
	if c.CertRoleFile != "" {
		if !c.ClientCertificates {
			return nil, fmt.Errorf("a client certificate role file (%s) needs a client CA (--tls_ca_file)", c.CertRoleFile)
		}
		if p.certRoles, err = watch("client certificate role file", c.CertRoleFile, readCertRoles, c.Logger); err != nil {
			return nil, err
		}
	}
	p.open = c.TokenFile == "" && c.HtpasswdFile == "" && !c.ClientCertificates
	if p.open && c.AllowUnauthenticatedReads {
		return nil, fmt.Errorf("--allow_unauthenticated_reads needs a credential source (--token_file, --htpasswd_file or --tls_ca_file)")
	}
	p.refused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ferrule_auth_refusals_total",
		Help: "Requests refused for want of credentials or permissions, by reason (unauthenticated, bad_credentials, permission_denied, read_only) and method.",
	}, []string{"reason", "method"})
	if c.Registerer != nil {
		if err := c.Registerer.Register(p.refused); err != nil {
			return nil, fmt.Errorf("auth metrics: %w", err)
		}
	}
	return p, nil
}

// Open reports whether no credential source is configured.
func (p *Policy) Open() bool { return p.open }

// ClientCertificatesRequired reports whether a TLS client must present a
// certificate: mTLS is the only credential source and anonymous reads
// are off.
func (p *Policy) ClientCertificatesRequired() bool {
	return p.cfg.ClientCertificates && p.cfg.TokenFile == "" && p.cfg.HtpasswdFile == "" && !p.cfg.AllowUnauthenticatedReads
}

// refusal is why a request is refused.
type refusal struct {
	code   codes.Code // Unauthenticated or PermissionDenied
	reason string     // the metric's label
	msg    string
}

var (
	open      = &Principal{Via: "open", Perm: All}
	anonymous = &Principal{Via: "anonymous"}
	anonRead  = &Principal{Via: "anonymous", Perm: Read, Roles: []string{"reader"}}
)

// authenticate finds the principal of a request from its Authorization
// header value and the verified chain of its client certificate (nil
// without one).
func (p *Policy) authenticate(header string, cert *x509.Certificate) (*Principal, *refusal) {
	if p.open {
		return open, nil
	}
	if header != "" {
		return p.fromHeader(header)
	}
	if cert != nil && p.cfg.ClientCertificates {
		return p.fromCertificate(cert), nil
	}
	if p.cfg.AllowUnauthenticatedReads {
		return anonRead, nil
	}
	return anonymous, nil
}

func badCredentials(format string, args ...any) *refusal {
	return &refusal{code: codes.Unauthenticated, reason: "bad_credentials", msg: fmt.Sprintf(format, args...)}
}

func (p *Policy) fromHeader(header string) (*Principal, *refusal) {
	scheme, value, _ := strings.Cut(strings.TrimSpace(header), " ")
	value = strings.TrimSpace(value)
	switch {
	case strings.EqualFold(scheme, "Bearer"):
		if p.tokens == nil {
			return nil, badCredentials("this server takes no bearer tokens (no --token_file)")
		}
		if pr, ok := p.tokens.get()[keyOf(value)]; ok && value != "" {
			return pr, nil
		}
		return nil, badCredentials("the bearer token is not in the server's token file")
	case strings.EqualFold(scheme, "Basic"):
		if p.users == nil {
			return nil, badCredentials("this server takes no basic credentials (no --htpasswd_file)")
		}
		return p.users.get().check(value)
	}
	return nil, badCredentials("unsupported authorization scheme %q (want Bearer or Basic)", scheme)
}

// htpasswd is a loaded htpasswd file and the credentials that passed its
// bcrypt check: a reloaded file starts with none remembered.
type htpasswd struct {
	users map[string]user

	mu sync.Mutex
	ok map[tokenKey]*Principal
}

func readHtpasswdCache(file string) (*htpasswd, error) {
	users, err := readHtpasswd(file)
	if err != nil {
		return nil, err
	}
	return &htpasswd{users: users, ok: map[tokenKey]*Principal{}}, nil
}

func (h *htpasswd) check(value string) (*Principal, *refusal) {
	raw, err := base64.StdEncoding.DecodeString(value)
	if err != nil {
		return nil, badCredentials("basic credentials are not base64")
	}
	name, password, ok := strings.Cut(string(raw), ":")
	if !ok {
		return nil, badCredentials("basic credentials are not USER:PASSWORD")
	}
	k := keyOf(string(raw))
	h.mu.Lock()
	pr, ok := h.ok[k]
	h.mu.Unlock()
	if ok {
		return pr, nil
	}
	u, ok := h.users[name]
	if !ok {
		return nil, badCredentials("unknown user %q", name)
	}
	if bcrypt.CompareHashAndPassword(u.hash, []byte(password)) != nil {
		return nil, badCredentials("wrong password for user %q", name)
	}
	h.mu.Lock()
	if len(h.ok) >= maxBasicCache {
		clear(h.ok)
	}
	h.ok[k] = u.Principal
	h.mu.Unlock()
	return u.Principal, nil
}

// certNames are the names a certificate answers to: its common name and
// its DNS, e-mail and URI subject alternative names.
func certNames(c *x509.Certificate) []string {
	names := append([]string{c.Subject.CommonName}, c.DNSNames...)
	names = append(names, c.EmailAddresses...)
	for _, u := range c.URIs {
		names = append(names, u.String())
	}
	return names
}

func (p *Policy) fromCertificate(c *x509.Certificate) *Principal {
	pr := &Principal{Name: c.Subject.CommonName, Via: "certificate"}
	if pr.Name == "" {
		pr.Name = c.Subject.String()
	}
	if p.certRoles == nil {
		pr.Perm, pr.Roles = All, slices.Clone(roleNames)
		return pr
	}
	names := certNames(c)
	for _, r := range p.certRoles.get() {
		if slices.Contains(names, r.name) {
			pr.Perm |= r.perm
			for _, n := range r.roles {
				if !slices.Contains(pr.Roles, n) {
					pr.Roles = append(pr.Roles, n)
				}
			}
		}
	}
	return pr
}

// authorize decides whether pr may do what needs need; what names the
// call in messages.
func (p *Policy) authorize(pr *Principal, need Perm, what string) *refusal {
	if p.cfg.ReadOnly && need&writes != 0 {
		return &refusal{code: codes.PermissionDenied, reason: "read_only",
			msg: fmt.Sprintf("this server is read-only (--read_only): %s is refused", what)}
	}
	if pr.Perm&need == need {
		return nil
	}
	if pr.Via == "anonymous" {
		msg := fmt.Sprintf("%s needs %s: no credentials were sent (a bearer token, basic auth or a client certificate)", what, rolesWith(need))
		if pr.Perm != None {
			msg = fmt.Sprintf("%s needs %s: clients without credentials may only read", what, rolesWith(need))
		}
		return &refusal{code: codes.Unauthenticated, reason: "unauthenticated", msg: msg}
	}
	has := "no role"
	if len(pr.Roles) > 0 {
		has = "only " + strings.Join(pr.Roles, ",")
	}
	return &refusal{code: codes.PermissionDenied, reason: "permission_denied",
		msg: fmt.Sprintf("%s needs %s; %s %q has %s", what, rolesWith(need), pr.Via, pr.Name, has)}
}

// refuse counts and logs a refusal. The log names the principal, never a
// credential.
func (p *Policy) refuse(r *refusal, pr *Principal, method, remote string) {
	p.refused.WithLabelValues(r.reason, method).Inc()
	who := "unknown"
	if pr != nil {
		who = pr.String()
	}
	level := slog.LevelInfo
	if r.reason == "bad_credentials" {
		level = slog.LevelWarn
	}
	p.log.Log(context.Background(), level, "request refused", "reason", r.reason, "method", method, "principal", who, "remote", remote, "err", r.msg)
}
