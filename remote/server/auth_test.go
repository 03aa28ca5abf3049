package server_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"golang.org/x/crypto/bcrypt"
	bspb "google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/ferrule-build/ferrule/remote/auth"
	"github.com/ferrule-build/ferrule/remote/certs"
	"github.com/ferrule-build/ferrule/remote/certs/certstest"
	"github.com/ferrule-build/ferrule/remote/digest"
	"github.com/ferrule-build/ferrule/remote/execution"
	"github.com/ferrule-build/ferrule/remote/server"
	"github.com/ferrule-build/ferrule/remote/store/memory"
	"github.com/ferrule-build/ferrule/remote/workerpb"
)

// Tokens of the token file the tests write.
const (
	readerToken   = "reader-token-0123456789"
	writerToken   = "writer-token-0123456789"
	executorToken = "executor-token-0123456789"
	workerToken   = "worker-token-0123456789"
)

func tokenFile(t *testing.T) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "tokens")
	text := fmt.Sprintf("# name roles token\nbob reader %s\nci writer %s\nbazel executor %s\nw1 worker %s\n",
		readerToken, writerToken, executorToken, workerToken)
	if err := os.WriteFile(f, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// withExecution registers the execution service and the worker stream,
// as ferrule serve does.
func withExecution(srv *server.Server) {
	svc := execution.New(srv.Store(), execution.Options{Registerer: srv.Registerer(), Logger: srv.Logger()})
	srv.RegisterExecution(svc, svc.ExecutionCapabilities())
	svc.RegisterScheduler(srv.GRPC())
}

// as is a context that sends token the way Bazel and ferrule worker do.
func as(token string) context.Context {
	if token == "" {
		return context.Background()
	}
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+token)
}

func updateAC(ctx context.Context, conn *grpc.ClientConn) error {
	d, _ := digest.Of(repb.DigestFunction_SHA256, []byte("forged action"))
	_, err := repb.NewActionCacheClient(conn).UpdateActionResult(ctx, &repb.UpdateActionResultRequest{
		ActionDigest: d, ActionResult: &repb.ActionResult{ExitCode: 0, StdoutRaw: []byte("forged")}}, grpc.WaitForReady(true))
	return err
}

func putHTTP(t *testing.T, client *http.Client, url, authz string, body []byte) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("PUT", url, bytes.NewReader(body))
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

func refusals(t *testing.T, r *running, reason, method string) bool {
	t.Helper()
	resp, err := http.Get(r.http + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return strings.Contains(string(body), fmt.Sprintf(`ferrule_auth_refusals_total{method=%q,reason=%q}`, method, reason))
}

// An anonymous client could write the action cache over gRPC and HTTP (a
// forged result for everyone); with tokens on, only writers may.
func TestAuthActionCacheWrites(t *testing.T) {
	r := start(t, server.Config{Auth: auth.Config{TokenFile: tokenFile(t)}}, withExecution)

	err := updateAC(context.Background(), r.conn)
	if status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), "UpdateActionResult needs the writer role") {
		t.Fatalf("anonymous UpdateActionResult: %v", err)
	}
	if err := updateAC(as("not-a-known-token-000"), r.conn); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("unknown token: %v", err)
	}
	if err := updateAC(as(readerToken), r.conn); status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), `token "bob" has only reader`) {
		t.Fatalf("reader UpdateActionResult: %v", err)
	}
	// An executor runs actions but never writes results itself.
	if err := updateAC(as(executorToken), r.conn); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("executor UpdateActionResult: %v", err)
	}
	if err := updateAC(as(writerToken), r.conn); err != nil {
		t.Fatalf("writer UpdateActionResult: %v", err)
	}
	// Anonymous clients may not even read.
	d, _ := digest.Of(repb.DigestFunction_SHA256, []byte("forged action"))
	if _, err := repb.NewActionCacheClient(r.conn).GetActionResult(context.Background(), &repb.GetActionResultRequest{ActionDigest: d}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("anonymous GetActionResult: %v", err)
	}
	if _, err := repb.NewActionCacheClient(r.conn).GetActionResult(as(readerToken), &repb.GetActionResultRequest{ActionDigest: d}); err != nil {
		t.Fatalf("reader GetActionResult: %v", err)
	}
	// Health stays open, for probes.
	if _, err := healthpb.NewHealthClient(r.conn).Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("health: %v", err)
	}

	// HTTP: 401 with a challenge, 403 for a reader, 200 for a writer.
	hash := strings.Repeat("ab", 32)
	resp := putHTTP(t, http.DefaultClient, r.http+"/ac/"+hash, "", []byte{})
	if resp.StatusCode != http.StatusUnauthorized || len(resp.Header.Values("WWW-Authenticate")) == 0 {
		t.Fatalf("anonymous HTTP PUT /ac/: %d %v", resp.StatusCode, resp.Header)
	}
	if resp := putHTTP(t, http.DefaultClient, r.http+"/ac/"+hash, "Bearer "+readerToken, []byte{}); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("reader HTTP PUT /ac/: %d", resp.StatusCode)
	}
	if resp := putHTTP(t, http.DefaultClient, r.http+"/ac/"+hash, "bearer "+writerToken, []byte{}); resp.StatusCode != http.StatusOK {
		t.Fatalf("writer HTTP PUT /ac/ (scheme in lower case): %d", resp.StatusCode)
	}
	if resp, err := http.Get(r.http + "/metrics"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("/metrics is open: %v %v", resp, err)
	}

	if !refusals(t, r, "unauthenticated", "UpdateActionResult") || !refusals(t, r, "permission_denied", "UpdateActionResult") ||
		!refusals(t, r, "bad_credentials", "UpdateActionResult") || !refusals(t, r, "unauthenticated", "HTTP PUT /ac/") {
		t.Error("refusals are not counted on /metrics by reason and method")
	}
}

// --allow_unauthenticated_reads: anonymous clients read, and only read.
func TestAuthUnauthenticatedReads(t *testing.T) {
	r := start(t, server.Config{Auth: auth.Config{TokenFile: tokenFile(t), AllowUnauthenticatedReads: true}}, nil)
	d, _ := digest.Of(repb.DigestFunction_SHA256, []byte("x"))
	_, err := repb.NewActionCacheClient(r.conn).GetActionResult(context.Background(), &repb.GetActionResultRequest{ActionDigest: d}, grpc.WaitForReady(true))
	if status.Code(err) != codes.NotFound {
		t.Fatalf("anonymous read: %v", err)
	}
	if err := updateAC(context.Background(), r.conn); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("anonymous write: %v", err)
	}
	if resp, err := http.Get(r.http + "/cas/" + d.Hash); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("anonymous HTTP GET: %v %v", resp, err)
	}
}

// openSession opens a worker session and returns the first answer to Hello.
func openSession(ctx context.Context, conn *grpc.ClientConn) error {
	sess, err := workerpb.NewSchedulerClient(conn).Session(ctx, grpc.WaitForReady(true))
	if err != nil {
		return err
	}
	sess.Send(&workerpb.WorkerMessage{Kind: &workerpb.WorkerMessage_Hello{Hello: &workerpb.Hello{WorkerId: "rogue", Concurrency: 1}}})
	m, err := sess.Recv()
	if err == nil && m.GetWelcome() == nil {
		return fmt.Errorf("first message %v is no welcome", m)
	}
	return err
}

// Anyone could join as a worker and answer other clients' actions; only
// the worker role may.
func TestAuthWorkerStream(t *testing.T) {
	r := start(t, server.Config{Auth: auth.Config{TokenFile: tokenFile(t)}}, withExecution)
	if err := openSession(context.Background(), r.conn); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("worker without credentials: %v", err)
	}
	if err := openSession(as("a-wrong-worker-token-0123"), r.conn); status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), "not in the server's token file") {
		t.Fatalf("worker with a wrong token: %v", err)
	}
	if err := openSession(as(writerToken), r.conn); status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "needs the worker role") {
		t.Fatalf("worker with a writer token: %v", err)
	}
	if err := openSession(as(workerToken), r.conn); err != nil {
		t.Fatalf("worker with a worker token: %v", err)
	}
}

// --read_only once refused only action cache writes: gRPC CAS writes and
// Execute went through.
func TestReadOnlyRefusesEveryWrite(t *testing.T) {
	r := start(t, server.Config{ReadOnly: true}, withExecution)
	ctx := context.Background()
	data := []byte("blob")
	d, _ := digest.Of(repb.DigestFunction_SHA256, data)
	cas := repb.NewContentAddressableStorageClient(r.conn)
	_, err := cas.BatchUpdateBlobs(ctx, &repb.BatchUpdateBlobsRequest{Requests: []*repb.BatchUpdateBlobsRequest_Request{{Digest: d, Data: data}}}, grpc.WaitForReady(true))
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "read-only") {
		t.Fatalf("BatchUpdateBlobs: %v", err)
	}
	ws, err := bspb.NewByteStreamClient(r.conn).Write(ctx)
	if err == nil {
		ws.Send(&bspb.WriteRequest{ResourceName: fmt.Sprintf("uploads/u/blobs/%s/%d", d.Hash, d.SizeBytes), Data: data, FinishWrite: true})
		_, err = ws.CloseAndRecv()
	}
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("ByteStream Write: %v", err)
	}
	if _, err := cas.SpliceBlob(ctx, &repb.SpliceBlobRequest{BlobDigest: d}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("SpliceBlob: %v", err)
	}
	st, err := repb.NewExecutionClient(r.conn).Execute(ctx, &repb.ExecuteRequest{ActionDigest: d})
	if err == nil {
		_, err = st.Recv()
	}
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("Execute: %v", err)
	}
	if resp := putHTTP(t, http.DefaultClient, r.http+"/cas/"+d.Hash, "", data); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("HTTP PUT: %d", resp.StatusCode)
	}
	// Reads still work.
	if _, err := cas.FindMissingBlobs(ctx, &repb.FindMissingBlobsRequest{BlobDigests: []*repb.Digest{d}}); err != nil {
		t.Fatalf("FindMissingBlobs: %v", err)
	}
	if !refusals(t, r, "read_only", "Execute") {
		t.Error("read-only refusal of Execute not counted")
	}
}

// An executor uploads inputs and runs actions.
func TestAuthExecutor(t *testing.T) {
	r := start(t, server.Config{Auth: auth.Config{TokenFile: tokenFile(t)}}, withExecution)
	ctx := as(executorToken)
	data := []byte("input")
	d, _ := digest.Of(repb.DigestFunction_SHA256, data)
	if _, err := repb.NewContentAddressableStorageClient(r.conn).BatchUpdateBlobs(ctx, &repb.BatchUpdateBlobsRequest{
		Requests: []*repb.BatchUpdateBlobsRequest_Request{{Digest: d, Data: data}}}, grpc.WaitForReady(true)); err != nil {
		t.Fatalf("executor BatchUpdateBlobs: %v", err)
	}
	// The action does not exist: the execution service says so, not auth.
	st, err := repb.NewExecutionClient(r.conn).Execute(ctx, &repb.ExecuteRequest{ActionDigest: d})
	if err == nil {
		_, err = st.Recv()
	}
	if c := status.Code(err); c == codes.PermissionDenied || c == codes.Unauthenticated {
		t.Fatalf("executor Execute: %v", err)
	}
	st, err = repb.NewExecutionClient(r.conn).Execute(as(writerToken), &repb.ExecuteRequest{ActionDigest: d})
	if err == nil {
		_, err = st.Recv()
	}
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "needs the executor role") {
		t.Fatalf("writer Execute: %v", err)
	}
}

// Every method the server registers is in the permission table (a missing
// one would be refused to everyone).
func TestAuthMethodTable(t *testing.T) {
	r := start(t, server.Config{Reflection: true}, withExecution)
	for name, info := range r.srv.GRPC().GetServiceInfo() {
		for _, m := range info.Methods {
			full := "/" + name + "/" + m.Name
			if _, ok := auth.Methods[full]; !ok {
				t.Errorf("%s is not in auth.Methods", full)
			}
		}
	}
}

// syncBuffer is a log sink the server writes from many goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Refusals are logged with the principal, never with the credential.
func TestAuthLogHasNoSecrets(t *testing.T) {
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	htpasswd := filepath.Join(t.TempDir(), "htpasswd")
	hash, err := bcrypt.GenerateFromPassword([]byte("secret-password"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(htpasswd, []byte("alice:"+string(hash)+":reader\n"), 0o600)
	r := start(t, server.Config{Logger: log, Auth: auth.Config{TokenFile: tokenFile(t), HtpasswdFile: htpasswd}}, nil)

	wrong := "wrong-token-but-long-enough"
	updateAC(as(wrong), r.conn)
	updateAC(as(readerToken), r.conn)
	basic := func(pw string) string {
		return "Basic " + b64("alice:"+pw)
	}
	hashHex := strings.Repeat("cd", 32)
	if resp := putHTTP(t, http.DefaultClient, r.http+"/cas/"+hashHex, basic("not-her-password"), []byte("x")); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong password: %d", resp.StatusCode)
	}
	if resp := putHTTP(t, http.DefaultClient, r.http+"/cas/"+hashHex, basic("secret-password"), []byte("x")); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("reader alice PUT: %d", resp.StatusCode)
	}
	req, _ := http.NewRequest("GET", r.http+"/cas/"+hashHex, nil)
	req.Header.Set("Authorization", basic("secret-password"))
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("reader alice GET: %v %v", resp, err)
	}
	out := logs.String()
	for _, secret := range []string{wrong, readerToken, "not-her-password", "secret-password", b64("alice:secret-password")} {
		if strings.Contains(out, secret) {
			t.Errorf("the log holds a credential %q:\n%s", secret, out)
		}
	}
	for _, want := range []string{"bad_credentials", `token \"bob\"`, `wrong password for user \"alice\"`, `basic \"alice\"`} {
		if !strings.Contains(out, want) {
			t.Errorf("the log lacks %s:\n%s", want, out)
		}
	}
}

// mtlsServer runs a server with TLS and a client CA; bob is a reader by
// his certificate's name.
func mtlsServer(t *testing.T, log *slog.Logger, extra auth.Config) (*running, *certstest.CA, string) {
	dir := t.TempDir()
	ca := certstest.NewCA(t, dir, "ca")
	sc := ca.Server(t, dir, "server")
	roles := filepath.Join(dir, "roles")
	os.WriteFile(roles, []byte("bob reader\nci.example writer\n"), 0o600)
	extra.CertRoleFile = roles
	r := start(t, server.Config{Logger: log, TLS: certs.Files{Cert: sc.Cert, Key: sc.Key, CA: ca.File}, Auth: extra}, nil)
	return r, ca, dir
}

func dialTLS(t *testing.T, addr string, c *tls.Config) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(c)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func TestMutualTLS(t *testing.T) {
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	r, ca, dir := mtlsServer(t, log, auth.Config{})
	addr := r.srv.GRPCAddr().String()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	bob := ca.Client(t, dir, "bob", time.Now().Add(time.Hour))
	conn := dialTLS(t, addr, &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{bob.TLS}})
	d, _ := digest.Of(repb.DigestFunction_SHA256, []byte("x"))
	if _, err := repb.NewActionCacheClient(conn).GetActionResult(ctx, &repb.GetActionResultRequest{ActionDigest: d}); status.Code(err) != codes.NotFound {
		t.Fatalf("bob reads: %v", err)
	}
	if err := updateAC(ctx, conn); status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), `certificate "bob" has only reader`) {
		t.Fatalf("bob writes: %v", err)
	}
	// A certificate known by a subject alternative name... by its CN here.
	ci := ca.Client(t, dir, "ci.example", time.Now().Add(time.Hour))
	if err := updateAC(ctx, dialTLS(t, addr, &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{ci.TLS}})); err != nil {
		t.Fatalf("ci writes: %v", err)
	}

	// Refused at the handshake: no certificate, an expired one, one from
	// another CA, plain text.
	expired := ca.Client(t, dir, "expired", time.Now().Add(-time.Hour))
	other := certstest.NewCA(t, dir, "other").Client(t, dir, "mallory", time.Now().Add(time.Hour))
	for name, c := range map[string][]tls.Certificate{"none": nil, "expired": {expired.TLS}, "other CA": {other.TLS}} {
		// GetClientCertificate sends the certificate even where the server's
		// list of acceptable CAs does not name its issuer.
		conn := dialTLS(t, addr, &tls.Config{RootCAs: ca.Pool(), GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if c == nil {
				return &tls.Certificate{}, nil
			}
			return &c[0], nil
		}})
		c2, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := repb.NewCapabilitiesClient(conn).GetCapabilities(c2, &repb.GetCapabilitiesRequest{})
		cancel()
		if err == nil {
			t.Errorf("client certificate %s: accepted", name)
		}
	}
	plain, _ := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	defer plain.Close()
	if _, err := repb.NewCapabilitiesClient(plain).GetCapabilities(ctx, &repb.GetCapabilitiesRequest{}); status.Code(err) != codes.Unavailable {
		t.Errorf("plain text client: %v", err)
	}
	// The server logs a refused handshake after the client has seen it
	// fail: wait (bounded) for the lines.
	for _, want := range []string{"TLS handshake refused", "expired", "unknown authority"} {
		for end := time.Now().Add(10 * time.Second); !strings.Contains(logs.String(), want) && time.Now().Before(end); {
			time.Sleep(10 * time.Millisecond)
		}
		if out := logs.String(); !strings.Contains(out, want) {
			t.Errorf("server log lacks %q:\n%s", want, out)
		}
	}

	// HTTPS with the same rules.
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{bob.TLS}}}}
	https := "https://" + r.srv.HTTPAddr().String()
	if resp, err := hc.Get(https + "/cas/" + d.Hash); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("bob HTTPS GET: %v %v", resp, err)
	}
	if resp := putHTTP(t, hc, https+"/cas/"+d.Hash, "", []byte("x")); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("bob HTTPS PUT: %d", resp.StatusCode)
	}
	nocert := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}}}
	if _, err := nocert.Get(https + "/status"); err == nil {
		t.Fatal("HTTPS without a client certificate accepted")
	}
}

// With tokens as well, a client certificate is optional: TLS with a token.
func TestTLSWithToken(t *testing.T) {
	r, ca, _ := mtlsServer(t, nil, auth.Config{TokenFile: tokenFile(t)})
	conn := dialTLS(t, r.srv.GRPCAddr().String(), &tls.Config{RootCAs: ca.Pool()})
	if err := updateAC(as(writerToken), conn); err != nil {
		t.Fatalf("writer token over TLS: %v", err)
	}
	if err := updateAC(context.Background(), conn); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("no credentials over TLS: %v", err)
	}
}

func TestAuthConfigErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "tokens")
	os.WriteFile(bad, []byte("# comment\nci writer 0123456789abcdef\nbob reader\n"), 0o600)
	_, err := server.New(server.Config{GRPCAddress: "127.0.0.1:0", Store: memory.New(0), Auth: auth.Config{TokenFile: bad}})
	if err == nil || !strings.Contains(err.Error(), bad+" line 3") {
		t.Errorf("bad token file: %v", err)
	}
	ca := certstest.NewCA(t, dir, "ca")
	if _, err := server.New(server.Config{GRPCAddress: "127.0.0.1:0", Store: memory.New(0), TLS: certs.Files{CA: ca.File}}); err == nil {
		t.Error("a client CA without a server certificate accepted")
	}
	sc := ca.Server(t, dir, "server")
	if _, err := server.New(server.Config{GRPCAddress: "127.0.0.1:0", Store: memory.New(0), TLS: certs.Files{Cert: sc.Cert, Key: ca.File}}); err == nil || !strings.Contains(err.Error(), sc.Cert) {
		t.Errorf("a key file holding no key: %v", err)
	}
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// GetCapabilities tells each caller whether it may write the action cache,
// so that Bazel does not attempt uploads it would be refused: a writer
// may; a reader, an executor (results come only from workers) and a
// worker may not, nor anyone on a read-only server. Without credentials
// configured everyone may.
func TestCapabilitiesPerPrincipal(t *testing.T) {
	updateEnabled := func(t *testing.T, r *running, token string) bool {
		t.Helper()
		caps, err := repb.NewCapabilitiesClient(r.conn).GetCapabilities(as(token), &repb.GetCapabilitiesRequest{}, grpc.WaitForReady(true))
		if err != nil {
			t.Fatalf("GetCapabilities as %q: %v", token, err)
		}
		return caps.CacheCapabilities.ActionCacheUpdateCapabilities.UpdateEnabled
	}
	r := start(t, server.Config{Auth: auth.Config{TokenFile: tokenFile(t)}}, withExecution)
	for token, want := range map[string]bool{writerToken: true, readerToken: false, executorToken: false, workerToken: false} {
		if got := updateEnabled(t, r, token); got != want {
			t.Errorf("token %s: update_enabled=%v, want %v", token, got, want)
		}
	}
	if !updateEnabled(t, start(t, server.Config{}, nil), "") {
		t.Error("a server without credentials tells an anonymous client it may not update the action cache")
	}
	if updateEnabled(t, start(t, server.Config{ReadOnly: true, Auth: auth.Config{TokenFile: tokenFile(t)}}, nil), writerToken) {
		t.Error("a read-only server tells a writer it may update the action cache")
	}
}
