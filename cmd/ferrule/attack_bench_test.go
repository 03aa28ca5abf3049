package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/ferrule-build/ferrule/remote/digest"
	"github.com/ferrule-build/ferrule/remote/server"
)

// BenchmarkUnderAttack is the load test under attack: a loopback ferrule
// serve (memory store, one in-process worker) answers a well-behaved
// client (FindMissingBlobs, small BatchUpdateBlobs and BatchReadBlobs,
// GetActionResult; every answer checked) first alone, then while bounded
// hostile clients stall ByteStream uploads and HTTP PUTs, send Execute
// requests with a doubling Directory DAG and a too-deep chain, send
// malformed resource names and flood Execute streams: each attack alone
// (sub-benchmarks named for it), then all at once ("all"). It prints the
// client's p99 before and during and the process's peak RSS (server and
// clients share the process); it fails on a wrong answer, a dead server
// or an RSS above the store's bound plus 256 MiB, never on a time.
// Run: go test -run '^$' -bench UnderAttack -benchtime 1x ./cmd/ferrule/
// (-bench UnderAttack/all for the combined attack only).
func BenchmarkUnderAttack(b *testing.B) {
	const (
		phase       = 6 * time.Second
		storeBytes  = 512 << 20
		rssBound    = storeBytes + 256<<20 // the memory store's bound plus room for the rest
		stalledBS   = 150                  // ByteStream uploads left open mid-blob
		stalledPUTs = 150                  // HTTP PUTs that send a header and stall
		execFlood   = 300                  // Execute streams opened by one client
	)
	c := defaultServeConfig()
	c.Dir = b.TempDir()
	c.Store = "memory"
	c.MaxSize = storeBytes
	c.GRPCAddress, c.HTTPAddress = "127.0.0.1:0", "127.0.0.1:0"
	c.LogLevel = "error"
	c.Workers, c.WorkerNoNamespaces = 1, true
	c.MaxClientUploads = 100
	c.MaxClientExecutes = 100
	c.HTTPBodyTimeout = 3 * time.Second
	srv, stop := startServeTB(b, c)
	defer stop()
	grpcAddr, httpAddr := srv.GRPCAddr().String(), srv.HTTPAddr().String()
	// Each hostile client dials from its own loopback address, so the
	// per-client limits see five clients besides the well-behaved one.
	dial := func(from net.IP) *grpc.ClientConn {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: from}}
		conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }))
		if err != nil {
			b.Fatal(err)
		}
		return conn
	}
	good := dial(net.IPv4(127, 0, 0, 1))
	defer good.Close()
	client := &goodClient{cas: repb.NewContentAddressableStorageClient(good), ac: repb.NewActionCacheClient(good)}
	if err := client.setup(); err != nil {
		b.Fatal(err)
	}

	type attackFunc func(ctx context.Context, conn *grpc.ClientConn, from net.IP, n *attackCounts)
	attacks := []struct {
		name string
		f    attackFunc
	}{
		{"stalled-uploads", func(ctx context.Context, conn *grpc.ClientConn, _ net.IP, n *attackCounts) {
			stallByteStream(ctx, conn, stalledBS, n)
		}},
		{"stalled-puts", func(ctx context.Context, _ *grpc.ClientConn, from net.IP, n *attackCounts) {
			stallPUTs(ctx, httpAddr, from, stalledPUTs, n)
		}},
		{"hostile-trees", func(ctx context.Context, conn *grpc.ClientConn, _ net.IP, n *attackCounts) {
			hostileTrees(ctx, b, conn, n)
		}},
		{"bad-names", func(ctx context.Context, conn *grpc.ClientConn, _ net.IP, n *attackCounts) { badNames(ctx, conn, n) }},
		{"execute-flood", func(ctx context.Context, conn *grpc.ClientConn, _ net.IP, n *attackCounts) {
			floodExecute(ctx, b, conn, execFlood, n)
		}},
	}
	// run measures the client alone, then while the attacks run, each
	// from its own address.
	run := func(b *testing.B, name string, fs []attackFunc) {
		for range b.N {
			before := client.run(phase)
			ctx, cancel := context.WithTimeout(context.Background(), phase)
			var wg sync.WaitGroup
			var counts attackCounts
			for i, f := range fs {
				from := net.IPv4(127, 0, 0, byte(11+i))
				wg.Add(1)
				go func() {
					defer wg.Done()
					conn := dial(from)
					defer conn.Close()
					f(ctx, conn, from, &counts)
				}()
			}
			during := client.run(phase)
			cancel()
			wg.Wait()

			// The server is alive and still right.
			if after := client.run(500 * time.Millisecond); after.ops == 0 || after.wrong > 0 || after.errors > 0 {
				b.Errorf("after the attacks: %d operations, %d wrong, %d errors", after.ops, after.wrong, after.errors)
			}
			hwm := procStatus("VmHWM")
			fmt.Printf("under attack [%s]: well-behaved client p99 %v alone (%d calls, %d errors, %d wrong), %v under attack (%d calls, %d errors, %d wrong); p50 %v, %v\n",
				name, before.p99(), before.ops, before.errors, before.wrong, during.p99(), during.ops, during.errors, during.wrong, before.p50(), during.p50())
			fmt.Printf("under attack [%s]: %d stalled uploads held (%d refused), %d stalled PUTs held (%d refused), %d hostile trees refused, %d bad names refused, %d Execute streams open (%d refused)\n",
				name, counts.bsHeld.Load(), counts.bsRefused.Load(), counts.putHeld.Load(), counts.putRefused.Load(),
				counts.treesRefused.Load(), counts.namesRefused.Load(), counts.execOpen.Load(), counts.execRefused.Load())
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			fmt.Printf("under attack [%s]: peak RSS of the process so far (server and clients) %d MiB (VmHWM), now %d MiB, Go heap in use %d MiB; bound %d MiB\n",
				name, hwm>>20, procStatus("VmRSS")>>20, ms.HeapInuse>>20, rssBound>>20)
			if before.wrong+during.wrong > 0 {
				b.Errorf("the well-behaved client got %d wrong answers", before.wrong+during.wrong)
			}
			if hwm > rssBound {
				b.Errorf("peak RSS %d MiB above the bound of %d MiB", hwm>>20, rssBound>>20)
			}
			if counts.unexpected.Load() > 0 {
				b.Errorf("%d hostile requests got an answer other than the refusal expected (last: %v)", counts.unexpected.Load(), counts.lastUnexpected.Load())
			}
		}
	}
	var all []attackFunc
	for _, a := range attacks {
		all = append(all, a.f)
		b.Run(a.name, func(b *testing.B) { run(b, a.name, []attackFunc{a.f}) })
	}
	b.Run("all", func(b *testing.B) { run(b, "all", all) })
}

// startServeTB runs runServe on c until stop.
func startServeTB(tb testing.TB, c serveConfig) (*server.Server, func()) {
	ready := make(chan *server.Server, 1)
	serveReady = func(s *server.Server) { ready <- s }
	defer func() { serveReady = nil }()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runServe(ctx, c, io.Discard) }()
	select {
	case srv := <-ready:
		return srv, func() {
			cancel()
			if err := <-done; err != nil {
				tb.Errorf("serve: %v", err)
			}
		}
	case err := <-done:
		cancel()
		tb.Fatalf("serve: %v", err)
	}
	return nil, nil
}

// procStatus reads a kB figure of /proc/self/status, in bytes.
func procStatus(field string) int64 {
	data, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n << 10
		}
	}
	return 0
}

const sha = repb.DigestFunction_SHA256

func randomBlob(n int) ([]byte, *repb.Digest) {
	data := make([]byte, n)
	rand.Read(data)
	d, _ := digest.Of(sha, data)
	return data, d
}

// goodClient is the well-behaved client: it knows what the server holds
// and checks every answer against it.
type goodClient struct {
	cas     repb.ContentAddressableStorageClient
	ac      repb.ActionCacheClient
	present []*repb.Digest
	blobs   map[string][]byte
	action  *repb.Digest
	result  *repb.ActionResult
	writes  []*repb.BatchUpdateBlobsRequest_Request
}

type phaseStats struct {
	lat                []time.Duration
	ops, errors, wrong int
}

func (p *phaseStats) quantile(q float64) time.Duration {
	if len(p.lat) == 0 {
		return 0
	}
	s := slices.Clone(p.lat)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}
func (p *phaseStats) p99() time.Duration { return p.quantile(0.99) }
func (p *phaseStats) p50() time.Duration { return p.quantile(0.50) }

func (g *goodClient) setup() error {
	ctx := context.Background()
	g.blobs = map[string][]byte{}
	req := &repb.BatchUpdateBlobsRequest{}
	for range 8 {
		data, d := randomBlob(1024)
		g.present = append(g.present, d)
		g.blobs[d.Hash] = data
		req.Requests = append(req.Requests, &repb.BatchUpdateBlobsRequest_Request{Digest: d, Data: data})
	}
	if _, err := g.cas.BatchUpdateBlobs(ctx, req); err != nil {
		return err
	}
	for range 64 {
		data, d := randomBlob(2048)
		g.writes = append(g.writes, &repb.BatchUpdateBlobsRequest_Request{Digest: d, Data: data})
	}
	_, g.action = randomBlob(64)
	g.result = &repb.ActionResult{OutputFiles: []*repb.OutputFile{{Path: "out", Digest: g.present[0]}}, ExitCode: 0}
	_, err := g.ac.UpdateActionResult(ctx, &repb.UpdateActionResultRequest{ActionDigest: g.action, ActionResult: g.result})
	return err
}

// run calls the four RPCs in turn for d, timing each and checking its
// answer.
func (g *goodClient) run(d time.Duration) *phaseStats {
	st := &phaseStats{}
	end := time.Now().Add(d)
	call := func(f func(ctx context.Context) (bool, error)) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		t0 := time.Now()
		ok, err := f(ctx)
		st.lat = append(st.lat, time.Since(t0))
		st.ops++
		switch {
		case err != nil:
			st.errors++
		case !ok:
			st.wrong++
		}
	}
	for time.Now().Before(end) {
		_, absent := randomBlob(100)
		call(func(ctx context.Context) (bool, error) {
			resp, err := g.cas.FindMissingBlobs(ctx, &repb.FindMissingBlobsRequest{BlobDigests: append(slices.Clone(g.present[:4]), absent)})
			return err == nil && len(resp.GetMissingBlobDigests()) == 1 && proto.Equal(resp.MissingBlobDigests[0], absent), err
		})
		// Writes cycle over a fixed pool, so the store does not grow and
		// the RSS figures show what the attacks cost.
		w := g.writes[st.ops%len(g.writes)]
		data, d := w.Data, w.Digest
		call(func(ctx context.Context) (bool, error) {
			resp, err := g.cas.BatchUpdateBlobs(ctx, &repb.BatchUpdateBlobsRequest{Requests: []*repb.BatchUpdateBlobsRequest_Request{{Digest: d, Data: data}}})
			return err == nil && len(resp.GetResponses()) == 1 && resp.Responses[0].GetStatus().GetCode() == 0, err
		})
		call(func(ctx context.Context) (bool, error) {
			resp, err := g.cas.BatchReadBlobs(ctx, &repb.BatchReadBlobsRequest{Digests: []*repb.Digest{g.present[1], g.present[2], d}})
			if err != nil || len(resp.GetResponses()) != 3 {
				return false, err
			}
			for _, r := range resp.Responses {
				want, ok := g.blobs[r.Digest.GetHash()]
				if !ok && r.Digest.GetHash() == d.Hash {
					want, ok = data, true
				}
				if !ok || r.GetStatus().GetCode() != 0 || !bytes.Equal(r.Data, want) {
					return false, nil
				}
			}
			return true, nil
		})
		call(func(ctx context.Context) (bool, error) {
			res, err := g.ac.GetActionResult(ctx, &repb.GetActionResultRequest{ActionDigest: g.action})
			return err == nil && len(res.GetOutputFiles()) == 1 && proto.Equal(res.OutputFiles[0].Digest, g.present[0]), err
		})
	}
	return st
}

type attackCounts struct {
	bsHeld, bsRefused, putHeld, putRefused atomic.Int64
	treesRefused, namesRefused             atomic.Int64
	execOpen, execRefused, unexpected      atomic.Int64
	lastUnexpected                         atomic.Value // string
}

// odd counts an answer other than the refusal expected.
func (c *attackCounts) odd(what string) {
	c.unexpected.Add(1)
	c.lastUnexpected.Store(what)
}

// stallByteStream opens n uploads of 1 MiB blobs, sends 1 KiB of each and
// holds them until ctx ends.
func stallByteStream(ctx context.Context, conn *grpc.ClientConn, n int, c *attackCounts) {
	bs := bytestream.NewByteStreamClient(conn)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Declared 1 MiB; the content never comes, so any hash will do.
			_, d := randomBlob(16)
			d.SizeBytes = 1 << 20
			w, err := bs.Write(ctx)
			if err != nil {
				return
			}
			name := fmt.Sprintf("uploads/stall-%d/blobs/%s/%d", i, d.Hash, d.SizeBytes)
			// A refused upload ends the stream, so a later Send fails;
			// a held one takes both chunks and waits for the rest.
			err = w.Send(&bytestream.WriteRequest{ResourceName: name, Data: make([]byte, 1024)})
			if err == nil {
				time.Sleep(time.Second)
				err = w.Send(&bytestream.WriteRequest{WriteOffset: 1024, Data: make([]byte, 1024)})
			}
			if err != nil {
				_, err = w.CloseAndRecv()
				if status.Code(err) == codes.ResourceExhausted {
					c.bsRefused.Add(1)
				} else {
					c.odd(fmt.Sprintf("stalled upload: %v", err))
				}
				return
			}
			c.bsHeld.Add(1)
			<-ctx.Done()
		}()
	}
	wg.Wait()
}

// stallPUTs opens n HTTP PUTs announcing 1 MiB, sends 10 bytes and stalls.
func stallPUTs(ctx context.Context, addr string, from net.IP, n int, c *attackCounts) {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: from}}
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := d.DialContext(ctx, "tcp", addr)
			if err != nil {
				return
			}
			defer conn.Close()
			_, d := randomBlob(16)
			fmt.Fprintf(conn, "PUT /cas/%s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n0123456789", d.Hash, 1<<20+i)
			// An answer within 2 s (the body timeout is 3 s) is a refusal.
			conn.SetReadDeadline(time.Now().Add(2 * time.Second))
			buf := make([]byte, 64)
			if k, _ := conn.Read(buf); k > 0 {
				if bytes.Contains(buf[:k], []byte(" 503 ")) {
					c.putRefused.Add(1)
				} else {
					c.odd(fmt.Sprintf("stalled PUT: %q", buf[:k]))
				}
				return
			}
			c.putHeld.Add(1)
			<-ctx.Done()
		}()
	}
	wg.Wait()
}

// hostileTrees stores a Directory DAG of 64 levels doubling per level and a
// chain 300 deep, and sends Execute requests for actions over them until
// ctx ends; each must be refused with INVALID_ARGUMENT.
func hostileTrees(ctx context.Context, tb testing.TB, conn *grpc.ClientConn, c *attackCounts) {
	cas := repb.NewContentAddressableStorageClient(conn)
	exec := repb.NewExecutionClient(conn)
	put := func(m proto.Message) *repb.Digest {
		data, _ := proto.Marshal(m)
		d, _ := digest.Of(sha, data)
		if _, err := cas.BatchUpdateBlobs(ctx, &repb.BatchUpdateBlobsRequest{Requests: []*repb.BatchUpdateBlobsRequest_Request{{Digest: d, Data: data}}}); err != nil && ctx.Err() == nil {
			tb.Errorf("uploading the hostile tree: %v", err)
		}
		return d
	}
	wide := &repb.Directory{}
	for range 64 {
		sub := put(wide)
		wide = &repb.Directory{Directories: []*repb.DirectoryNode{{Name: "a", Digest: sub}, {Name: "b", Digest: sub}}}
	}
	deep := &repb.Directory{}
	for range 300 {
		deep = &repb.Directory{Directories: []*repb.DirectoryNode{{Name: "d", Digest: put(deep)}}}
	}
	cmd := put(&repb.Command{Arguments: []string{"/bin/true"}})
	var actions []*repb.Digest
	for _, root := range []*repb.Directory{wide, deep} {
		actions = append(actions, put(&repb.Action{CommandDigest: cmd, InputRootDigest: put(root), DoNotCache: true}))
	}
	for i := 0; ctx.Err() == nil; i++ {
		stream, err := exec.Execute(ctx, &repb.ExecuteRequest{ActionDigest: actions[i%2], SkipCacheLookup: true})
		if err != nil {
			// gRPC sees the deadline pass before ctx.Err() does.
			if code := status.Code(err); code != codes.DeadlineExceeded && code != codes.Canceled {
				c.odd(fmt.Sprintf("hostile tree: %v", err))
			}
			continue
		}
		for {
			op, err := stream.Recv()
			if err != nil {
				break
			}
			if op.Done {
				resp := &repb.ExecuteResponse{}
				op.GetResponse().UnmarshalTo(resp)
				if codes.Code(resp.GetStatus().GetCode()) == codes.InvalidArgument {
					c.treesRefused.Add(1)
				} else {
					c.odd(fmt.Sprintf("hostile tree: %v", resp.GetStatus()))
				}
			}
		}
	}
}

// badNames reads and writes malformed resource names until ctx ends.
func badNames(ctx context.Context, conn *grpc.ClientConn, c *attackCounts) {
	bs := bytestream.NewByteStreamClient(conn)
	names := []string{"", "blobs", "blobs/zz/1", "blobs/" + strings.Repeat("a", 64) + "/-1", "../../etc/passwd",
		"uploads/x/blobs/" + strings.Repeat("0", 64) + "/99999999999999999999", "compressed-blobs/lz4/" + strings.Repeat("b", 64) + "/1",
		strings.Repeat("a/", 5000) + "blobs/x/1", "blobs/\x00/1"}
	for i := 0; ctx.Err() == nil; i++ {
		r, err := bs.Read(ctx, &bytestream.ReadRequest{ResourceName: names[i%len(names)]})
		if err == nil {
			_, err = r.Recv()
		}
		switch status.Code(err) {
		case codes.InvalidArgument:
			c.namesRefused.Add(1)
		case codes.Canceled, codes.DeadlineExceeded:
		default:
			c.odd(fmt.Sprintf("bad name: %v", err))
		}
	}
}

// floodExecute opens n Execute streams for one slow action (they merge
// into one operation) and holds them until ctx ends; past the per-client
// limit they must be refused with RESOURCE_EXHAUSTED.
func floodExecute(ctx context.Context, tb testing.TB, conn *grpc.ClientConn, n int, c *attackCounts) {
	cas := repb.NewContentAddressableStorageClient(conn)
	exec := repb.NewExecutionClient(conn)
	var blobs []*repb.BatchUpdateBlobsRequest_Request
	put := func(m proto.Message) *repb.Digest {
		data, _ := proto.Marshal(m)
		d, _ := digest.Of(sha, data)
		blobs = append(blobs, &repb.BatchUpdateBlobsRequest_Request{Digest: d, Data: data})
		return d
	}
	_, nonce := randomBlob(8)
	action := put(&repb.Action{CommandDigest: put(&repb.Command{Arguments: []string{"/bin/sleep", "30"}, OutputFiles: []string{nonce.Hash}}),
		InputRootDigest: put(&repb.Directory{})})
	if _, err := cas.BatchUpdateBlobs(ctx, &repb.BatchUpdateBlobsRequest{Requests: blobs}); err != nil {
		tb.Errorf("uploading the flood's action: %v", err)
		return
	}
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stream, err := exec.Execute(ctx, &repb.ExecuteRequest{ActionDigest: action})
			if err != nil {
				return
			}
			if _, err := stream.Recv(); err != nil {
				if status.Code(err) == codes.ResourceExhausted {
					c.execRefused.Add(1)
				}
				return
			}
			c.execOpen.Add(1)
			for {
				if _, err := stream.Recv(); err != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
}
