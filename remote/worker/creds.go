package worker

import (
	"errors"
	"fmt"
	"net"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ferrule-build/ferrule/remote/clientcreds"
)

// Credentials are what a worker presents to its scheduler (and CAS): a
// bearer token, sent on every call as gRPC metadata
// "authorization: Bearer <token>", and TLS settings. Empty fields are not
// used. Flag names the flags in error messages.
type Credentials struct {
	TokenFile      string // a file holding the token (its first non-empty line)
	CAFile         string // PEM certificates the server's certificate must chain to; TLS when set
	ClientCertFile string // PEM client certificate for mTLS (with ClientKeyFile)
	ClientKeyFile  string
}

// Flag names as `ferrule worker` spells them, for messages.
const (
	FlagTokenFile      = "--token_file"
	FlagCAFile         = "--tls_ca_file"
	FlagClientCertFile = "--tls_client_cert_file"
	FlagClientKeyFile  = "--tls_client_key_file"
)

// Describe names the credentials in use, for messages (never the token).
func (c Credentials) Describe() string {
	var parts []string
	if c.TokenFile != "" {
		parts = append(parts, FlagTokenFile+" "+c.TokenFile)
	}
	if c.CAFile != "" {
		parts = append(parts, FlagCAFile+" "+c.CAFile)
	}
	if c.ClientCertFile != "" {
		parts = append(parts, FlagClientCertFile+" "+c.ClientCertFile)
	}
	if len(parts) == 0 {
		return "no credentials (none of " + FlagTokenFile + ", " + FlagCAFile + ", " + FlagClientCertFile + " given)"
	}
	return strings.Join(parts, ", ")
}

// DialOptions reads the files and returns the options that make a
// connection present the credentials.
func (c Credentials) DialOptions() ([]grpc.DialOption, error) {
	if c.CAFile == "" && c.ClientCertFile != "" && c.ClientKeyFile != "" {
		return nil, fmt.Errorf("%s needs %s (the CA that signed the server's certificate)", FlagClientCertFile, FlagCAFile)
	}
	cfg := clientcreds.Config{
		CAFile: c.CAFile, CertFile: c.ClientCertFile, KeyFile: c.ClientKeyFile,
		CAFlag: FlagCAFile, CertFlag: FlagClientCertFile, KeyFlag: FlagClientKeyFile,
	}
	if c.TokenFile != "" {
		tok, err := clientcreds.ReadToken(FlagTokenFile, c.TokenFile)
		if err != nil {
			return nil, err
		}
		cfg.Token = tok
	}
	return cfg.DialOptions()
}

// RefusedError says the scheduler refused the worker's credentials: a
// worker stops instead of reconnecting.
type RefusedError struct {
	Creds Credentials
	Err   error
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("the scheduler refused this worker (%s): %v", e.Creds.Describe(), e.Err)
}

func (e *RefusedError) Unwrap() error { return e.Err }

// Refused reports whether err from a session means the credentials are
// wrong (UNAUTHENTICATED, PERMISSION_DENIED, a failed TLS handshake) rather
// than a scheduler that is down or restarting.
func Refused(err error) bool {
	if err == nil {
		return false
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return false
	}
	switch status.Code(err) {
	case codes.Unauthenticated, codes.PermissionDenied:
		return true
	case codes.Unavailable:
		msg := err.Error()
		return strings.Contains(msg, "authentication handshake failed") || strings.Contains(msg, "tls:") || strings.Contains(msg, "x509:")
	}
	return false
}
