package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// clientCredentials are the gRPC dial options of a client command (bench)
// for TLS (verified against caFile, or the system's roots), a client
// certificate and a bearer token.
func clientCredentials(useTLS bool, caFile, certFile, keyFile, token string) ([]grpc.DialOption, error) {
	var opts []grpc.DialOption
	if useTLS {
		c := &tls.Config{MinVersion: tls.VersionTLS12}
		if caFile != "" {
			pem, err := os.ReadFile(caFile)
			if err != nil {
				return nil, fmt.Errorf("--tls_ca_file: %w", err)
			}
			c.RootCAs = x509.NewCertPool()
			if !c.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("--tls_ca_file %s holds no PEM certificate", caFile)
			}
		}
		if certFile != "" || keyFile != "" {
			pair, err := tls.LoadX509KeyPair(certFile, keyFile)
			if err != nil {
				return nil, fmt.Errorf("--tls_client_certificate %s, --tls_client_key %s: %w", certFile, keyFile, err)
			}
			c.Certificates = []tls.Certificate{pair}
		}
		opts = append(opts, grpc.WithTransportCredentials(credentials.NewTLS(c)))
	}
	if token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearer(token)))
	}
	return opts, nil
}

// bearer sends a token as Bazel's --remote_header=Authorization=Bearer does.
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

// RequireTransportSecurity is false so that loopback runs without TLS can
// measure the cost of the token alone.
func (b bearer) RequireTransportSecurity() bool { return false }
