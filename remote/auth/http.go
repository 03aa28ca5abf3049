package auth

import (
	"crypto/x509"
	"net/http"
	"path"
	"strings"

	"google.golang.org/grpc/codes"
)

// HTTPPerm is the permission an HTTP request to a Ferrule server needs:
// the health-like /metrics and /status are open (they hold counters and
// the server's settings, no cache contents); cache GET and HEAD read, PUT
// to /ac/ and /cas/ write the action cache and the CAS; execution log
// uploads publish; every other page (the web page of build events) reads.
func HTTPPerm(r *http.Request) Perm {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		if r.URL.Path == "/metrics" || r.URL.Path == "/status" {
			return None
		}
		return Read
	}
	switch {
	case path.Base(path.Dir(r.URL.Path)) == "ac":
		return WriteAC
	case strings.HasPrefix(r.URL.Path, "/invocation/") && strings.HasSuffix(r.URL.Path, "/execlog"):
		return Publish
	}
	return WriteCAS
}

// HTTP refuses requests to next their caller may not make: 401 with a
// WWW-Authenticate challenge without (valid) credentials, 403 without the
// permission.
func (p *Policy) HTTP(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		need := HTTPPerm(r)
		if need == None {
			next.ServeHTTP(w, r)
			return
		}
		var cert *x509.Certificate
		if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.VerifiedChains[0]) > 0 {
			cert = r.TLS.VerifiedChains[0][0]
		}
		what := "HTTP " + r.Method + " " + httpKind(r.URL.Path)
		pr, ref := p.authenticate(r.Header.Get("Authorization"), cert)
		if ref == nil {
			ref = p.authorize(pr, need, what)
		}
		if ref == nil {
			next.ServeHTTP(w, r.WithContext(p.withPrincipal(r.Context(), pr)))
			return
		}
		p.refuse(ref, pr, what, r.RemoteAddr)
		code := http.StatusForbidden
		if ref.code == codes.Unauthenticated {
			code = http.StatusUnauthorized
			w.Header().Add("WWW-Authenticate", `Basic realm="ferrule"`)
			w.Header().Add("WWW-Authenticate", `Bearer realm="ferrule"`)
		}
		http.Error(w, ref.msg, code)
	})
}

// httpKind names what a request path is for, in messages and metrics.
func httpKind(p string) string {
	switch path.Base(path.Dir(p)) {
	case "ac":
		return "/ac/"
	case "cas":
		return "/cas/"
	}
	if strings.HasSuffix(p, "/execlog") {
		return "execlog"
	}
	return "page"
}
