package server_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"golang.org/x/net/http2"
	bspb "google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/ferrule-build/ferrule/remote/clientlimit"
	"github.com/ferrule-build/ferrule/remote/digest"
	"github.com/ferrule-build/ferrule/remote/server"
	"github.com/ferrule-build/ferrule/remote/store/disk"
)

// Stalled uploads are opened by a separate process (this test binary run
// as TestStallClient), so that the heap measured in this one is the
// server's alone.
const (
	stallEnv      = "FERRULE_STALL_CLIENT"
	stallSize     = 1 << 20  // declared size of each stalled blob
	stallFirst    = 64 << 10 // bytes sent before stalling
	stallClients  = 10       // source addresses 127.0.0.2 and up
	stallGRPCEach = 560      // ByteStream writes per client
	stallHTTPEach = 400      // HTTP PUTs per client
	stallMidEach  = 40       // ByteStream writes per client stalled within a large message
	stallMidSent  = 512 << 10
)

// TestMain runs this binary as the stalling client when FERRULE_STALL_CLIENT
// is set.
func TestMain(m *testing.M) {
	if spec := os.Getenv(stallEnv); spec != "" {
		if err := stallClientMain(spec); err != nil {
			fmt.Fprintln(os.Stderr, "stall client:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// stallClientMain opens stalled uploads to the server named in spec
// (GRPC_ADDR,HTTP_ADDR,CLIENTS,GRPC_EACH,HTTP_EACH[,MID_EACH,MID_DECLARED]):
// first MID_EACH ByteStream writes per client whose first message declares
// MID_DECLARED bytes of data and stalls after stallMidSent bytes of it, then
// the others, which stall after a whole first message. It prints
// "mid admitted" for every such write whose bytes the server took and
// "mid refused" for every one refused, then "ready", prints "http CODE"
// (or "http closed") for every HTTP response it gets, and returns when its
// standard input closes.
func stallClientMain(spec string) error {
	f := strings.Split(spec, ",")
	grpcAddr, httpAddr := f[0], f[1]
	clients, _ := strconv.Atoi(f[2])
	grpcEach, _ := strconv.Atoi(f[3])
	httpEach, _ := strconv.Atoi(f[4])
	var midEach, midDeclared int
	if len(f) > 6 {
		midEach, _ = strconv.Atoi(f[5])
		midDeclared, _ = strconv.Atoi(f[6])
	}
	out := bufio.NewWriter(os.Stdout)
	var outMu sync.Mutex
	say := func(s string) {
		outMu.Lock()
		defer outMu.Unlock()
		fmt.Fprintln(out, s)
		out.Flush()
	}
	var errOnce sync.Once
	var firstErr error
	fail := func(err error) { errOnce.Do(func() { firstErr = err }) }
	first := make([]byte, stallFirst)
	var wg sync.WaitGroup
	// The writes within a message first, all admitted unless they exceed
	// a cap themselves.
	for c := range clients {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+c))}}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := stallMidMessage(d, grpcAddr, midEach, midDeclared, say); err != nil {
				fail(err)
			}
		}()
	}
	wg.Wait()
	for c := range clients {
		local := &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+c))}
		d := &net.Dialer{LocalAddr: local}
		conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }))
		if err != nil {
			return err
		}
		bs := bspb.NewByteStreamClient(conn)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range grpcEach {
				w, err := bs.Write(context.Background())
				if err != nil {
					fail(err)
					return
				}
				name := fmt.Sprintf("uploads/%s/blobs/%s/%d", randHex(16), randHex(32), stallSize)
				if err := w.Send(&bspb.WriteRequest{ResourceName: name, Data: first}); err != nil && err != io.EOF {
					fail(err)
					return
				}
			}
		}()
		for range httpEach {
			wg.Add(1)
			go func() {
				defer wg.Done()
				nc, err := d.Dial("tcp", httpAddr)
				if err != nil {
					fail(err)
					return
				}
				fmt.Fprintf(nc, "PUT /cas/%s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", randHex(32), stallSize)
				nc.Write(first)
				go func() {
					resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
					if err != nil {
						say("http closed")
						return
					}
					say("http " + strconv.Itoa(resp.StatusCode))
				}()
			}()
		}
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	say("ready")
	io.Copy(io.Discard, os.Stdin)
	return nil
}

// stallMidMessage opens n ByteStream writes over HTTP/2 from d whose first
// message declares declared bytes of data and sends stallMidSent bytes of
// it (a gRPC client cannot stop within a message), and returns once each
// is admitted (its bytes were taken) or refused.
func stallMidMessage(d *net.Dialer, addr string, n, declared int, say func(string)) error {
	tr := &http2.Transport{AllowHTTP: true, DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
		return d.DialContext(ctx, network, addr)
	}}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		name := fmt.Sprintf("uploads/%s/blobs/%s/%d", randHex(16), randHex(32), declared)
		msg, err := proto.Marshal(&bspb.WriteRequest{ResourceName: name, Data: make([]byte, declared)})
		if err != nil {
			return err
		}
		frame := binary.BigEndian.AppendUint32([]byte{0}, uint32(len(msg)))
		frame = append(frame, msg[:stallMidSent]...)
		pr, pw := io.Pipe()
		req, err := http.NewRequest("POST", "http://"+addr+"/google.bytestream.ByteStream/Write", pr)
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/grpc")
		req.Header.Set("TE", "trailers")
		// Admitted: its bytes were taken and it is not answered soon
		// after (a refused stream is answered at once, and the client may
		// have taken its bytes all the same).
		wrote, answered := make(chan bool, 1), make(chan struct{})
		go func() {
			_, err := pw.Write(frame)
			wrote <- err == nil
		}()
		go func() {
			defer close(answered)
			resp, err := tr.RoundTrip(req)
			if err != nil {
				return
			}
			io.Copy(io.Discard, resp.Body)
			if resp.Trailer.Get("Grpc-Status") == "" && resp.Header.Get("Grpc-Status") == "" {
				errs <- fmt.Errorf("a write stalled within its message ended without a status")
			}
		}()
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case ok := <-wrote:
				if ok {
					select {
					case <-answered:
					case <-time.After(2 * time.Second):
						say("mid admitted")
						return
					}
				}
			case <-answered:
			}
			say("mid refused")
		}()
	}
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

type stallClient struct {
	cmd   *exec.Cmd
	stdin io.Closer
	ready chan struct{}
	mu    sync.Mutex
	codes map[string]int // HTTP outcomes: "503", "408", "closed"
	mid   map[string]int // writes stalled within a message: "admitted", "refused"
}

func (c *stallClient) midCount(what string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mid[what]
}

func (c *stallClient) count(code string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.codes[code]
}

func startStallClient(t *testing.T, r *running, clients, grpcEach, httpEach int, mid ...int) *stallClient {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	spec := fmt.Sprintf("%s=%s,%s,%d,%d,%d", stallEnv, r.srv.GRPCAddr(), r.srv.HTTPAddr(), clients, grpcEach, httpEach)
	if len(mid) == 2 {
		spec += fmt.Sprintf(",%d,%d", mid[0], mid[1])
	}
	cmd.Env = append(os.Environ(), spec)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &stallClient{cmd: cmd, stdin: stdin, ready: make(chan struct{}), codes: map[string]int{}, mid: map[string]int{}}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			if line == "ready" {
				close(c.ready)
				continue
			}
			if what, ok := strings.CutPrefix(line, "mid "); ok {
				c.mu.Lock()
				c.mid[what]++
				c.mu.Unlock()
			}
			if code, ok := strings.CutPrefix(line, "http "); ok {
				c.mu.Lock()
				c.codes[code]++
				c.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() {
		stdin.Close()
		cmd.Wait()
	})
	return c
}

// waitFor polls cond; the deadline only stops a test that would hang.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Minute); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
	}
}

func getStatus(t *testing.T, r *running) server.Status {
	t.Helper()
	resp, err := http.Get(r.http + "/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st server.Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

// liveHeap is the heap in use after pooled buffers are dropped (sync.Pool
// keeps them through one GC).
func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

func tempFiles(t *testing.T, dir string) int {
	n := 0
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), ".tmp-") {
			n++
		}
		return nil
	})
	return n
}

// perUploadBytes is the heap one admitted, stalled upload may hold on
// the server: the bytes it sent before stalling and what the server
// counts besides a message being received (the disk store's buffers while
// it waits, the stream and its goroutines).
const perUploadBytes = stallFirst + server.UploadOverheadBytes

// midStreamBytes is what a write stalled within its first message holds
// besides the bytes it sent: the stream and its goroutine (its Put has not
// started).
const midStreamBytes = 128 << 10

// TestStalledUploads opens 10,000 uploads (ByteStream writes and HTTP
// PUTs from ten client addresses) that each send a first chunk and stall,
// 400 of the writes within a first message that declares nearly the gRPC
// receive limit: the server admits MaxOpen of them, refuses the rest (after
// a short wait) with
// RESOURCE_EXHAUSTED/503, and its live heap stays under a bound derived
// from that cap and what the stalled streams sent, and under the bound
// /status derives from the caps.
func TestStalledUploads(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 10,000 connections")
	}
	limits := clientlimit.Limits{MaxOpen: 500, MaxPerClient: 80, Wait: 100 * time.Millisecond}
	if v := os.Getenv("FERRULE_STALL_UNBOUNDED"); v != "" {
		// For measuring the server without caps (not a test).
		limits = clientlimit.Limits{MaxOpen: 1 << 30, MaxPerClient: 1 << 30}
	}
	dir := t.TempDir()
	st, err := disk.Open(disk.Options{Dir: dir, Compress: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	// Streams cut when the client goes are parked for resumption (not
	// counted as open); a short idle timeout drops them.
	r := start(t, server.Config{Store: st, Uploads: limits, HTTPBodyTimeout: time.Hour, UploadIdleTimeout: 200 * time.Millisecond}, nil)
	stat := getStatus(t, r)
	base := liveHeap()

	// The largest first message a write may send: data up to the
	// receive limit, less room for the resource name and framing.
	declared := int(stat.UploadMemory.RecvLimitBytes) - 1024
	c := startStallClient(t, r, stallClients, stallGRPCEach, stallHTTPEach, stallMidEach, declared)
	total := stallClients * (stallGRPCEach + stallHTTPEach + stallMidEach)
	up := r.srv.Uploads
	waitFor(t, "every upload admitted or refused", func() bool {
		return int(up.Admitted()+up.Refused(clientlimit.Uploads.LimitOpen)+up.Refused(clientlimit.Uploads.LimitPerClient)) == total
	})
	<-c.ready
	mid := c.midCount("admitted")
	// Every admitted upload but those within their first message has
	// created its temporary file: each holds what it got of its first
	// chunk.
	waitFor(t, "a temporary file per admitted upload", func() bool { return tempFiles(t, dir) == up.Open()-mid })
	// The server holds what the writes stalled within a message sent.
	midBytes := uint64(mid) * stallMidSent
	waitFor(t, "the stalled messages' bytes", func() bool { return liveHeap() >= base+midBytes+uint64(up.Open()-mid)*stallFirst })
	heap := liveHeap()
	open := up.Open()
	bound := base + uint64(open-mid)*perUploadBytes + midBytes + uint64(mid)*midStreamBytes
	t.Logf("%d stalled uploads: %d open (%d within a message declaring %d bytes, %d refused), %v refused at max_open_uploads, %v at max_uploads_per_client; live heap %.1f MiB before, %.1f MiB with them (bound %.1f MiB; /status bound for the caps %.1f MiB)",
		total, open, mid, declared, c.midCount("refused"), up.Refused(clientlimit.Uploads.LimitOpen), up.Refused(clientlimit.Uploads.LimitPerClient),
		float64(base)/(1<<20), float64(heap)/(1<<20), float64(bound)/(1<<20), float64(stat.UploadMemory.BoundBytes)/(1<<20))
	if mid == 0 {
		t.Error("no write stalled within a message was admitted")
	}
	if open > limits.MaxOpen {
		t.Errorf("%d uploads open, over max_open_uploads %d", open, limits.MaxOpen)
	}
	if heap > bound {
		t.Errorf("live heap %d bytes with %d stalled uploads, over the bound %d", heap, total, bound)
	}
	if heap > base+uint64(stat.UploadMemory.BoundBytes) {
		t.Errorf("live heap %d bytes with %d stalled uploads, over the bound /status gives, %d", heap, total, stat.UploadMemory.BoundBytes)
	}
	if up.Refused(clientlimit.Uploads.LimitOpen) == 0 {
		t.Error("no upload refused at max_open_uploads")
	}
	// Refused HTTP PUTs were answered 503 at once.
	waitFor(t, "the refused PUTs' answers", func() bool { return c.count("503") > 0 })
	// (A refused PUT's connection may also be reset under its unread body:
	// the client then sees "closed", which is no drop.)
	if n := c.count("408"); n != 0 {
		t.Errorf("%d stalled PUTs dropped with an hour's body timeout", n)
	}
	c.stdin.Close()
	waitFor(t, "the uploads to end when their client goes", func() bool { return up.Open() == 0 })
}

// TestStalledPUTsDropped: a PUT whose body stalls is answered 408 after
// the body timeout and its temporary file is removed.
func TestStalledPUTsDropped(t *testing.T) {
	dir := t.TempDir()
	st, err := disk.Open(disk.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	r := start(t, server.Config{Store: st, HTTPBodyTimeout: 200 * time.Millisecond}, nil)
	const n = 50
	c := startStallClient(t, r, 1, 0, n)
	<-c.ready
	waitFor(t, "every stalled PUT answered", func() bool { return c.count("408")+c.count("closed")+c.count("503") == n })
	if got := c.count("408"); got != n {
		t.Errorf("%d of %d stalled PUTs answered 408 (others: %v closed, %v 503)", got, n, c.count("closed"), c.count("503"))
	}
	waitFor(t, "the uploads released", func() bool { return r.srv.Uploads.Open() == 0 })
	if n := tempFiles(t, dir); n != 0 {
		t.Errorf("%d temporary files left by dropped PUTs", n)
	}
}

// TestUploadsPerClient: one client address past max_uploads_per_client is
// refused while another is still admitted.
func TestUploadsPerClient(t *testing.T) {
	r := start(t, server.Config{Uploads: clientlimit.Limits{MaxOpen: 100, MaxPerClient: 5, Wait: 100 * time.Millisecond}, HTTPBodyTimeout: time.Hour}, nil)
	c := startStallClient(t, r, 1, 10, 0)
	<-c.ready
	up := r.srv.Uploads
	waitFor(t, "the first client's uploads", func() bool { return up.Admitted()+up.Refused(clientlimit.Uploads.LimitPerClient) == 10 })
	if up.Open() != 5 || up.Refused(clientlimit.Uploads.LimitPerClient) != 5 {
		t.Fatalf("one client: %d open, %v refused per client; want 5 and 5", up.Open(), up.Refused(clientlimit.Uploads.LimitPerClient))
	}
	// A second address (127.0.0.2 is taken; the helper starts there, so
	// run it with two clients: the second is 127.0.0.3).
	c2 := startStallClient(t, r, 2, 1, 3)
	<-c2.ready
	waitFor(t, "the second client's uploads", func() bool { return up.Admitted()+up.Refused(clientlimit.Uploads.LimitPerClient) == 18 })
	// 127.0.0.2 had 5 open: its 4 new ones are refused; 127.0.0.3's 4 are admitted.
	if up.Open() != 9 {
		t.Errorf("%d open, want 9 (5 + the second address's 4)", up.Open())
	}
	// Its PUTs are answered 503 (or reset under their unread bodies).
	waitFor(t, "answers to the full address's PUTs", func() bool { return c2.count("503")+c2.count("closed") == 3 })
	if c2.count("503") == 0 {
		t.Error("no refused PUT was answered 503")
	}
	resp, err := http.Get(r.http + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"ferrule_uploads_open 9", `ferrule_uploads_refused_total{limit="max_uploads_per_client"} 9`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// TestReceiveLimit: the gRPC receive limit is what the largest legal
// request needs (a full batch of 10,000 small blobs is stored), a
// ByteStream message over it is refused with RESOURCE_EXHAUSTED, and
// /status gives the memory bound the upload caps imply.
func TestReceiveLimit(t *testing.T) {
	r := start(t, server.Config{}, nil)
	st := getStatus(t, r)
	m := st.UploadMemory
	if m.RecvLimitBytes != 5<<20 || m.MaxOpen != 1000 || m.PerUploadBytes != m.RecvLimitBytes+server.UploadOverheadBytes ||
		m.BoundBytes != 1000*m.PerUploadBytes+int64(m.MaxParked)*server.UploadOverheadBytes {
		t.Errorf("/status upload_memory %+v", m)
	}
	ctx := context.Background()
	const n = 10_000
	each := int(st.MaxBatchBytes) / n
	req := &repb.BatchUpdateBlobsRequest{}
	for i := range n {
		data := []byte(fmt.Sprintf("%0*d", each, i))
		dg, _ := digest.Of(repb.DigestFunction_SHA256, data)
		req.Requests = append(req.Requests, &repb.BatchUpdateBlobsRequest_Request{Digest: dg, Data: data})
	}
	resp, err := repb.NewContentAddressableStorageClient(r.conn).BatchUpdateBlobs(ctx, req)
	if err != nil {
		t.Fatalf("a full batch of %d blobs (%d bytes in a message): %v", n, proto.Size(req), err)
	}
	for _, r := range resp.Responses {
		if r.Status.GetCode() != 0 {
			t.Fatalf("blob in a full batch: %v", r.Status)
		}
	}
	data := make([]byte, 6<<20)
	dg, _ := digest.Of(repb.DigestFunction_SHA256, data)
	w, err := bspb.NewByteStreamClient(r.conn).Write(ctx)
	if err != nil {
		t.Fatal(err)
	}
	w.Send(&bspb.WriteRequest{ResourceName: fmt.Sprintf("uploads/%s/blobs/%s/%d", randHex(16), dg.Hash, dg.SizeBytes), Data: data, FinishWrite: true})
	if _, err := w.CloseAndRecv(); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("a ByteStream message of 6 MiB: %v, want RESOURCE_EXHAUSTED", err)
	}
}
