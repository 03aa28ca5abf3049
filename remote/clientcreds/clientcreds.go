// Package clientcreds holds what a client of Ferrule's server (a worker,
// `ferrule bench`) presents when it dials: TLS verified against a CA file
// or the system's roots, an optional client certificate for mTLS, and a
// bearer token sent as Bazel's --remote_header=Authorization=Bearer does.
package clientcreds

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// Config says what to present. Flag names are those of the command, for
// its error messages.
type Config struct {
	TLS      bool   // TLS even without CAFile (the system's roots)
	CAFile   string // PEM certificates the server's must chain to; implies TLS
	CertFile string // PEM client certificate (with KeyFile); implies TLS
	KeyFile  string
	Token    string // bearer token; "" sends none

	CAFlag, CertFlag, KeyFlag string
}

// DialOptions reads the files and returns the dial options: transport
// credentials (insecure without TLS) and the per-call token.
func (c Config) DialOptions() ([]grpc.DialOption, error) {
	if (c.CertFile == "") != (c.KeyFile == "") {
		return nil, fmt.Errorf("%s and %s go together", c.CertFlag, c.KeyFlag)
	}
	secure := c.TLS || c.CAFile != "" || c.CertFile != ""
	var opts []grpc.DialOption
	if secure {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if c.CAFile != "" {
			pem, err := os.ReadFile(c.CAFile)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", c.CAFlag, err)
			}
			cfg.RootCAs = x509.NewCertPool()
			if !cfg.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("%s %s: no PEM certificate in it", c.CAFlag, c.CAFile)
			}
		}
		if c.CertFile != "" {
			pair, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
			if err != nil {
				return nil, fmt.Errorf("%s %s / %s %s: %w", c.CertFlag, c.CertFile, c.KeyFlag, c.KeyFile, err)
			}
			cfg.Certificates = []tls.Certificate{pair}
		}
		opts = append(opts, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	} else {
		opts = append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))
	}
	if c.Token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearer{token: c.Token, secure: secure}))
	}
	return opts, nil
}

// ReadToken reads a token file: its first non-empty line, which must hold
// no white space. flag names the file's flag in errors.
func ReadToken(flag, file string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("%s: %w", flag, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			if strings.ContainsAny(line, " \t") {
				return "", fmt.Errorf("%s %s: the token contains white space", flag, file)
			}
			return line, nil
		}
	}
	return "", fmt.Errorf("%s %s: the file holds no token", flag, file)
}

// bearer sends the token on every call, over TLS or not (loopback runs
// without TLS measure and test the token alone).
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
