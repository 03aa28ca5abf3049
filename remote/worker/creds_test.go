package worker

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrule-build/ferrule/remote/workerpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// testCA makes a CA and a certificate it signs for 127.0.0.1, written as
// PEM files in dir; it returns the files' paths.
func testCA(t *testing.T, dir, name string, client bool) (caFile, certFile, keyFile string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name + " CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	usage := x509.ExtKeyUsageServerAuth
	if client {
		usage = x509.ExtKeyUsageClientAuth
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{usage}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	write := func(file, typ string, b []byte) string {
		p := filepath.Join(dir, file)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return write(name+"-ca.pem", "CERTIFICATE", caDER), write(name+".pem", "CERTIFICATE", der), write(name+".key", "EC PRIVATE KEY", kb)
}

// scheduler is a real gRPC server over TLS with a client CA, whose
// interceptor checks the bearer token as the server's does; its Session
// answers the Hello and records the token it saw.
type tokenScheduler struct {
	workerpb.UnimplementedSchedulerServer
	want string
}

func (s *tokenScheduler) Session(stream workerpb.Scheduler_SessionServer) error {
	md, _ := metadata.FromIncomingContext(stream.Context())
	if got := md.Get("authorization"); len(got) != 1 || got[0] != "Bearer "+s.want {
		return status.Error(codes.Unauthenticated, "bad or missing worker token")
	}
	if _, err := stream.Recv(); err != nil {
		return err
	}
	return stream.Send(&workerpb.SchedulerMessage{Kind: &workerpb.SchedulerMessage_Welcome{Welcome: &workerpb.Welcome{HeartbeatIntervalMs: 1000}}})
}

func TestWorkerCredentials(t *testing.T) {
	dir := t.TempDir()
	serverCA, serverCert, serverKey := testCA(t, dir, "server", false)
	clientCA, clientCert, clientKey := testCA(t, dir, "client", true)
	otherCA, _, _ := testCA(t, dir, "other", false)
	cert, err := tls.LoadX509KeyPair(serverCert, serverKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	b, _ := os.ReadFile(clientCA)
	pool.AppendCertsFromPEM(b)
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert})))
	workerpb.RegisterSchedulerServer(srv, &tokenScheduler{want: "s3cret-token"})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lis)
	defer srv.Stop()

	tokenFile := filepath.Join(dir, "token")
	os.WriteFile(tokenFile, []byte("\ns3cret-token\n"), 0o600)
	wrongFile := filepath.Join(dir, "wrong")
	os.WriteFile(wrongFile, []byte("guessed\n"), 0o600)

	session := func(c Credentials) error {
		opts, err := c.DialOptions()
		if err != nil {
			return err
		}
		conn, err := grpc.NewClient(lis.Addr().String(), opts...)
		if err != nil {
			return err
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s, err := workerpb.NewSchedulerClient(conn).Session(ctx)
		if err != nil {
			return err
		}
		if err := s.Send(&workerpb.WorkerMessage{Kind: &workerpb.WorkerMessage_Hello{Hello: &workerpb.Hello{WorkerId: "w"}}}); err != nil {
			_, rerr := s.Recv()
			return rerr
		}
		_, err = s.Recv()
		return err
	}
	good := Credentials{TokenFile: tokenFile, CAFile: serverCA, ClientCertFile: clientCert, ClientKeyFile: clientKey}
	if err := session(good); err != nil {
		t.Fatalf("good credentials: %v", err)
	}
	for name, c := range map[string]Credentials{
		"wrong token":        {TokenFile: wrongFile, CAFile: serverCA, ClientCertFile: clientCert, ClientKeyFile: clientKey},
		"no token":           {CAFile: serverCA, ClientCertFile: clientCert, ClientKeyFile: clientKey},
		"server not trusted": {TokenFile: tokenFile, CAFile: otherCA, ClientCertFile: clientCert, ClientKeyFile: clientKey},
	} {
		err := session(c)
		if !Refused(err) {
			t.Errorf("%s: %v is not seen as a refusal", name, err)
			continue
		}
		msg := (&RefusedError{Creds: c, Err: err}).Error()
		if strings.Contains(msg, "s3cret") || strings.Contains(msg, "guessed") {
			t.Errorf("%s: the message shows the token: %s", name, msg)
		}
		if c.TokenFile != "" && !strings.Contains(msg, FlagTokenFile+" "+c.TokenFile) {
			t.Errorf("%s: the message does not name the token file: %s", name, msg)
		}
	}
	// Without a client certificate the server refuses the handshake; under
	// TLS 1.3 the client may only see the connection break (then the worker
	// keeps retrying, logging the error).
	if err := session(Credentials{TokenFile: tokenFile, CAFile: serverCA}); err == nil {
		t.Error("a worker without a client certificate got a session")
	}
	// A scheduler that is down is not a refusal: the worker keeps trying.
	down := Credentials{TokenFile: tokenFile, CAFile: serverCA, ClientCertFile: clientCert, ClientKeyFile: clientKey}
	opts, _ := down.DialOptions()
	conn, _ := grpc.NewClient("127.0.0.1:1", opts...)
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := workerpb.NewSchedulerClient(conn).Session(ctx); Refused(err) {
		t.Errorf("a closed port counts as a refusal: %v", err)
	}
}

func TestWorkerCredentialFiles(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, []byte("\n\n"), 0o600)
	notPEM := filepath.Join(dir, "ca")
	os.WriteFile(notPEM, []byte("not a certificate"), 0o600)
	for _, tc := range []struct {
		c    Credentials
		want string
	}{
		{Credentials{TokenFile: filepath.Join(dir, "absent")}, "--token_file"},
		{Credentials{TokenFile: empty}, "holds no token"},
		{Credentials{CAFile: notPEM}, "--tls_ca_file " + notPEM + ": no PEM certificate"},
		{Credentials{ClientCertFile: "x"}, "--tls_client_key_file"},
		{Credentials{ClientCertFile: "x", ClientKeyFile: "y"}, "needs --tls_ca_file"},
	} {
		if _, err := tc.c.DialOptions(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want an error with %q", tc.c, err, tc.want)
		}
	}
}
