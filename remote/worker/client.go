package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/ferrule-build/ferrule/remote/execution/workerpb"
	"github.com/ferrule-build/ferrule/remote/store"
	"google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Serve connects r to a scheduler over conn and runs the leases it gets
// until ctx ends or the session breaks (then it returns the error; callers
// reconnect). platform is what the worker offers; concurrency how many
// actions it runs at once.
func Serve(ctx context.Context, conn grpc.ClientConnInterface, r *Runner, platform []*repb.Platform_Property, concurrency int) error {
	if concurrency < 1 {
		concurrency = 1
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := workerpb.NewSchedulerClient(conn).Session(ctx)
	if err != nil {
		return err
	}
	hello := &workerpb.Hello{WorkerId: r.ID(), Concurrency: int32(concurrency)}
	for _, p := range platform {
		hello.Platform = append(hello.Platform, &workerpb.Property{Name: p.Name, Value: p.Value})
	}
	var sendMu sync.Mutex
	send := func(m *workerpb.WorkerMessage) error {
		sendMu.Lock()
		defer sendMu.Unlock()
		return stream.Send(m)
	}
	if err := send(&workerpb.WorkerMessage{Kind: &workerpb.WorkerMessage_Hello{Hello: hello}}); err != nil {
		return err
	}
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	interval := time.Duration(first.GetWelcome().GetHeartbeatIntervalMs()) * time.Millisecond
	if interval <= 0 {
		interval = 10 * time.Second
	}
	r.log.Info("connected to the scheduler", "concurrency", concurrency)
	go func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				if err := send(&workerpb.WorkerMessage{Kind: &workerpb.WorkerMessage_Heartbeat{Heartbeat: &workerpb.Heartbeat{}}}); err != nil {
					cancel()
					return
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		m, err := stream.Recv()
		if err != nil {
			cancel()
			return err
		}
		l := m.GetLease()
		if l == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			out := r.runLease(ctx, l)
			res := &workerpb.LeaseResult{LeaseId: l.LeaseId}
			if out.Result != nil {
				res.ActionResult, _ = proto.Marshal(out.Result)
			}
			if out.Status != nil {
				res.Status, _ = proto.Marshal(out.Status)
			}
			if err := send(&workerpb.WorkerMessage{Kind: &workerpb.WorkerMessage_Result{Result: res}}); err != nil {
				r.log.Warn("reporting a result failed", "lease", l.LeaseId, "err", err)
				cancel()
			}
		}()
	}
}

func (r *Runner) runLease(ctx context.Context, l *workerpb.Lease) Outcome {
	t := &Task{Instance: l.InstanceName, Function: repb.DigestFunction_Value(l.DigestFunction),
		ActionDigest: &repb.Digest{}, Action: &repb.Action{}, Command: &repb.Command{},
		Timeout: time.Duration(l.TimeoutMs) * time.Millisecond}
	if err := proto.Unmarshal(l.ActionDigest, t.ActionDigest); err != nil {
		return Outcome{Status: statusOf(codes.InvalidArgument, "lease: action digest: %v", err)}
	}
	if err := proto.Unmarshal(l.Action, t.Action); err != nil {
		return Outcome{Status: statusOf(codes.InvalidArgument, "lease: action: %v", err)}
	}
	if err := proto.Unmarshal(l.Command, t.Command); err != nil {
		return Outcome{Status: statusOf(codes.InvalidArgument, "lease: command: %v", err)}
	}
	r.log.Info("running action", "action", t.ActionDigest.Hash, "lease", l.LeaseId)
	out := r.Run(ctx, t)
	r.log.Info("action done", "action", t.ActionDigest.Hash, "exit", out.Result.GetExitCode(), "status", codes.Code(out.Status.GetCode()))
	return out
}

// RemoteStore is a store.Store (CAS only) over the REAPI
// ContentAddressableStorage and ByteStream services of a server: what a
// `ferrule worker` process uses to read inputs and write outputs.
type RemoteStore struct {
	cas repb.ContentAddressableStorageClient
	bs  bytestream.ByteStreamClient
}

// NewRemoteStore returns a store that talks to the server behind conn.
func NewRemoteStore(conn grpc.ClientConnInterface) *RemoteStore {
	return &RemoteStore{cas: repb.NewContentAddressableStorageClient(conn), bs: bytestream.NewByteStreamClient(conn)}
}

func resourceName(k store.Key, upload string) string {
	name := ""
	if k.Instance != "" {
		name = k.Instance + "/"
	}
	if upload != "" {
		name += "uploads/" + upload + "/"
	}
	name += "blobs/"
	if k.Function != repb.DigestFunction_SHA256 && k.Function != repb.DigestFunction_UNKNOWN {
		name += lower(k.Function.String()) + "/"
	}
	return fmt.Sprintf("%s%s/%d", name, k.Hash, k.Size)
}

func lower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// Get reads a CAS blob through ByteStream.Read.
func (s *RemoteStore) Get(ctx context.Context, k store.Key, offset int64) (io.ReadCloser, int64, error) {
	if k.Kind != store.CAS {
		return nil, 0, errors.New("remote store: only the CAS is available to workers")
	}
	ctx, cancel := context.WithCancel(ctx)
	rs, err := s.bs.Read(ctx, &bytestream.ReadRequest{ResourceName: resourceName(k, ""), ReadOffset: offset})
	if err != nil {
		cancel()
		return nil, 0, mapErr(err)
	}
	// Read the first message now so that NOT_FOUND is reported by Get.
	first, err := rs.Recv()
	if err != nil && err != io.EOF {
		cancel()
		return nil, 0, mapErr(err)
	}
	return &streamReader{rs: rs, buf: first.GetData(), eof: err == io.EOF, cancel: cancel}, k.Size, nil
}

func mapErr(err error) error {
	if status.Code(err) == codes.NotFound {
		return fmt.Errorf("%w: %v", store.ErrNotFound, err)
	}
	return err
}

type streamReader struct {
	rs     bytestream.ByteStream_ReadClient
	buf    []byte
	eof    bool
	cancel context.CancelFunc
}

func (r *streamReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		if r.eof {
			return 0, io.EOF
		}
		m, err := r.rs.Recv()
		if err == io.EOF {
			r.eof = true
			continue
		}
		if err != nil {
			return 0, err
		}
		r.buf = m.Data
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

func (r *streamReader) Close() error { r.cancel(); return nil }

// Put writes a CAS blob through ByteStream.Write.
func (s *RemoteStore) Put(ctx context.Context, k store.Key, size int64, rd io.Reader) error {
	if k.Kind != store.CAS {
		return errors.New("remote store: only the CAS is available to workers")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ws, err := s.bs.Write(ctx)
	if err != nil {
		return err
	}
	name := resourceName(k, newUUID())
	buf := make([]byte, 256<<10)
	var off int64
	for {
		n, rerr := io.ReadFull(rd, buf)
		if rerr != nil && rerr != io.EOF && rerr != io.ErrUnexpectedEOF {
			return rerr
		}
		last := off+int64(n) >= size || rerr != nil
		req := &bytestream.WriteRequest{WriteOffset: off, Data: buf[:n], FinishWrite: last}
		if off == 0 {
			req.ResourceName = name
		}
		if err := ws.Send(req); err != nil {
			if err == io.EOF { // the server ended early: the blob exists
				break
			}
			return err
		}
		off += int64(n)
		if last {
			break
		}
	}
	resp, err := ws.CloseAndRecv()
	if err != nil {
		return err
	}
	if resp.CommittedSize != size && resp.CommittedSize != -1 {
		return fmt.Errorf("upload of %s: server committed %d of %d bytes", name, resp.CommittedSize, size)
	}
	return nil
}

func newUUID() string {
	n := newRandom()
	return fmt.Sprintf("%x-%x-%x-%x-%x", n[0:4], n[4:6], n[6:8], n[8:10], n[10:16])
}

// FindMissing asks FindMissingBlobs, one call per instance and function.
func (s *RemoteStore) FindMissing(ctx context.Context, keys []store.Key) ([]store.Key, error) {
	type group struct {
		instance string
		fn       repb.DigestFunction_Value
	}
	groups := map[group][]store.Key{}
	var order []group
	for _, k := range keys {
		if k.Kind != store.CAS {
			return nil, errors.New("remote store: only the CAS is available to workers")
		}
		g := group{k.Instance, k.Function}
		if _, ok := groups[g]; !ok {
			order = append(order, g)
		}
		groups[g] = append(groups[g], k)
	}
	var missing []store.Key
	for _, g := range order {
		ks := groups[g]
		for start := 0; start < len(ks); start += 1000 {
			end := min(start+1000, len(ks))
			req := &repb.FindMissingBlobsRequest{InstanceName: g.instance, DigestFunction: g.fn}
			for _, k := range ks[start:end] {
				req.BlobDigests = append(req.BlobDigests, &repb.Digest{Hash: k.Hash, SizeBytes: k.Size})
			}
			resp, err := s.cas.FindMissingBlobs(ctx, req)
			if err != nil {
				return nil, err
			}
			for _, d := range resp.MissingBlobDigests {
				missing = append(missing, store.Key{Kind: store.CAS, Instance: g.instance, Function: g.fn, Hash: d.Hash, Size: d.SizeBytes})
			}
		}
	}
	return missing, nil
}
