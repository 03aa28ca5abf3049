package worker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
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
	var opts []grpc.DialOption
	if (c.ClientCertFile == "") != (c.ClientKeyFile == "") {
		return nil, fmt.Errorf("%s and %s go together", FlagClientCertFile, FlagClientKeyFile)
	}
	if c.CAFile == "" && c.ClientCertFile != "" {
		return nil, fmt.Errorf("%s needs %s (the CA that signed the server's certificate)", FlagClientCertFile, FlagCAFile)
	}
	secure := c.CAFile != ""
	if secure {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", FlagCAFile, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s %s: no PEM certificate in it", FlagCAFile, c.CAFile)
		}
		cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		if c.ClientCertFile != "" {
			cert, err := tls.LoadX509KeyPair(c.ClientCertFile, c.ClientKeyFile)
			if err != nil {
				return nil, fmt.Errorf("%s %s / %s %s: %w", FlagClientCertFile, c.ClientCertFile, FlagClientKeyFile, c.ClientKeyFile, err)
			}
			cfg.Certificates = []tls.Certificate{cert}
		}
		opts = append(opts, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	} else {
		opts = append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))
	}
	if c.TokenFile != "" {
		tok, err := readToken(c.TokenFile)
		if err != nil {
			return nil, err
		}
		opts = append(opts, grpc.WithPerRPCCredentials(bearer{token: tok, secure: secure}))
	}
	return opts, nil
}

func readToken(file string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("%s: %w", FlagTokenFile, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			if strings.ContainsAny(line, " \t") {
				return "", fmt.Errorf("%s %s: the token contains white space", FlagTokenFile, file)
			}
			return line, nil
		}
	}
	return "", fmt.Errorf("%s %s: the file holds no token", FlagTokenFile, file)
}

// bearer sends the token on every call. Without TLS it still sends it (a
// worker on loopback); secure says whether the transport is TLS.
type bearer struct {
	token  string
	secure bool
}

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

func (b bearer) RequireTransportSecurity() bool { return b.secure }

// String keeps the token out of anything that prints a bearer.
func (b bearer) String() string { return "bearer(redacted)" }

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
