package bench

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/ferrule-build/ferrule/remote/resource"
	bspb "google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// setupTimeout bounds the preparation of one workload.
const setupTimeout = 5 * time.Minute

// runWorkload prepares and runs one workload.
func (e *env) runWorkload(ctx context.Context, name string) Result {
	index := 0
	for i, n := range AllWorkloads {
		if n == name {
			index = i + 1
		}
	}
	if reason := e.skipReason(name); reason != "" {
		e.logf("%s: skipped: %s", name, reason)
		return Result{Name: name, Status: "skipped", Note: reason}
	}
	sctx, cancel := context.WithTimeout(ctx, setupTimeout)
	op, err := e.setup(sctx, name)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return Result{Name: name, Status: "interrupted", Note: "interrupted during set-up"}
		}
		e.logf("%s: set-up failed: %v", name, err)
		return Result{Name: name, Status: "failed", Note: "set-up failed: " + describe(err)}
	}
	bound := fmt.Sprintf("for %v", e.cfg.Duration)
	if e.cfg.Count > 0 {
		bound = fmt.Sprintf("for %d operations (at most %v)", e.cfg.Count, e.cfg.Duration)
	}
	e.logf("%s: running %s with %d workers", name, bound, e.cfg.Concurrency)
	r := e.drive(ctx, name, index, op)
	r.Unit = units[name]
	e.logf("%s: %s, %d ops in %.1fs, %.0f ops/s, %.1f MB/s, p50 %.2fms, p99 %.2fms, %d errors",
		name, r.Status, r.Ops, r.Seconds, r.OpsPerSec, r.MBPerSec, r.P50Ms, r.P99Ms, r.Errors)
	return r
}

// units names what Result.Items counts, per workload.
var units = map[string]string{
	FindMissing: "digests", BatchWrite: "blobs", BatchRead: "blobs",
	ByteStreamWrite: "blobs", ByteStreamRead: "blobs", ZstdWrite: "blobs", ZstdRead: "blobs",
	ActionCacheGet: "results", ChunkedWrite: "blobs", ChunkedRead: "blobs",
}

func (e *env) skipReason(name string) string {
	switch name {
	case ZstdWrite, ZstdRead:
		if !e.server.ByteStreamZstd {
			return "the server does not advertise zstd for ByteStream"
		}
	case BatchWrite, BatchRead:
		if e.batchBlobs == 0 {
			return fmt.Sprintf("a %d-byte blob does not fit the server's batch limit of %d bytes", e.cfg.SmallSize, e.server.MaxBatchTotalSizeBytes)
		}
	case ChunkedWrite, ChunkedRead:
		if !e.server.SplitSplice {
			return "the server does not advertise split and splice"
		}
	case FindMissing, ActionCacheGet:
		if e.batchBlobs == 0 {
			return fmt.Sprintf("its blobs (%d bytes) do not fit the server's batch limit of %d bytes", e.cfg.SmallSize, e.server.MaxBatchTotalSizeBytes)
		}
	}
	return ""
}

// setup uploads what the workload needs and returns its operation.
func (e *env) setup(ctx context.Context, name string) (opFunc, error) {
	switch name {
	case FindMissing:
		if err := e.smallPool(ctx); err != nil {
			return nil, err
		}
		return e.findMissingOp(), nil
	case BatchWrite:
		return e.batchWriteOp(), nil
	case BatchRead:
		if err := e.smallPool(ctx); err != nil {
			return nil, err
		}
		return e.batchReadOp(), nil
	case ByteStreamWrite:
		return e.bsWriteOp(false), nil
	case ZstdWrite:
		return e.bsWriteOp(true), nil
	case ByteStreamRead:
		if err := e.largePool(ctx); err != nil {
			return nil, err
		}
		return e.bsReadOp(false), nil
	case ZstdRead:
		if err := e.largePool(ctx); err != nil {
			return nil, err
		}
		return e.bsReadOp(true), nil
	case ActionCacheGet:
		return e.actionCacheSetup(ctx)
	case ChunkedWrite:
		return e.chunkedWriteSetup(ctx)
	case ChunkedRead:
		return e.chunkedReadSetup(ctx)
	}
	return nil, fmt.Errorf("unknown workload %q", name)
}

// parallel runs f(i) for i in [0, n) on up to workers goroutines and
// returns the first error; it stops starting new calls after one.
func parallel(ctx context.Context, n, workers int, f func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var mu sync.Mutex
	var first error
	next := 0
	var wg sync.WaitGroup
	for w := 0; w < min(workers, n); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				if first != nil || next >= n || ctx.Err() != nil {
					mu.Unlock()
					return
				}
				i := next
				next++
				mu.Unlock()
				if err := f(ctx, i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
						cancel()
					}
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		first = ctx.Err()
	}
	return first
}

// uploadSmall stores the blobs Payload(seed, stream, i, size) for i in
// [0, n) with BatchUpdateBlobs and returns their digests.
func (e *env) uploadSmall(ctx context.Context, stream uint64, n, size int) ([]*repb.Digest, error) {
	digests := make([]*repb.Digest, n)
	per := e.batchBlobs
	calls := (n + per - 1) / per
	cas := repb.NewContentAddressableStorageClient(e.conns[0])
	err := parallel(ctx, calls, min(e.cfg.Concurrency, 4), func(ctx context.Context, c int) error {
		req := &repb.BatchUpdateBlobsRequest{InstanceName: e.cfg.Instance, DigestFunction: repb.DigestFunction_SHA256}
		for i := c * per; i < min(n, (c+1)*per); i++ {
			data := Payload(e.cfg.Seed, stream, uint64(i), size)
			digests[i] = DigestOf(data)
			req.Requests = append(req.Requests, &repb.BatchUpdateBlobsRequest_Request{Digest: digests[i], Data: data})
		}
		cctx, cancel := context.WithTimeout(ctx, e.cfg.OpTimeout)
		defer cancel()
		resp, err := cas.BatchUpdateBlobs(cctx, req)
		if err != nil {
			return fmt.Errorf("BatchUpdateBlobs: %w", err)
		}
		return checkUpdates(req, resp)
	})
	return digests, err
}

func checkUpdates(req *repb.BatchUpdateBlobsRequest, resp *repb.BatchUpdateBlobsResponse) error {
	if len(resp.GetResponses()) != len(req.Requests) {
		return wrongf("BatchUpdateBlobs answered %d of %d blobs", len(resp.GetResponses()), len(req.Requests))
	}
	for _, r := range resp.GetResponses() {
		if c := codes.Code(r.GetStatus().GetCode()); c != codes.OK {
			return fmt.Errorf("BatchUpdateBlobs: blob %s/%d: %s: %s", r.GetDigest().GetHash(), r.GetDigest().GetSizeBytes(), c, r.GetStatus().GetMessage())
		}
	}
	return nil
}

func (e *env) smallPool(ctx context.Context) error {
	e.smallOnce.Do(func() {
		e.logf("uploading %d blobs of %d bytes for the lookup and read workloads", e.cfg.SmallPool, e.cfg.SmallSize)
		e.small, e.smallErr = e.uploadSmall(ctx, streamSmallPool, e.cfg.SmallPool, e.cfg.SmallSize)
	})
	return e.smallErr
}

func (e *env) largePool(ctx context.Context) error {
	e.largeOnce.Do(func() {
		n := e.cfg.LargePool
		e.logf("uploading %d blobs of %d bytes with ByteStream for the read workloads", n, e.cfg.LargeSize)
		e.large = make([]*repb.Digest, n)
		e.largeErr = parallel(ctx, n, min(e.cfg.Concurrency, 4), func(ctx context.Context, i int) error {
			w := e.newWorker(i, 0)
			data := Payload(e.cfg.Seed, streamLargePool, uint64(i), e.cfg.LargeSize)
			d := DigestOf(data)
			cctx, cancel := context.WithTimeout(ctx, e.cfg.OpTimeout)
			defer cancel()
			committed, err := w.write(cctx, resource.WriteName(e.cfg.Instance, resource.NewUUID(), repb.DigestFunction_SHA256, d, false), data, e.cfg.ChunkSize)
			if err != nil {
				return fmt.Errorf("ByteStream.Write: %w", err)
			}
			if committed != d.SizeBytes {
				return wrongf("ByteStream.Write committed %d of %d bytes", committed, d.SizeBytes)
			}
			e.large[i] = d
			return nil
		})
	})
	return e.largeErr
}

func (e *env) findMissingOp() opFunc {
	present := int(float64(e.cfg.FindDigests)*e.cfg.PresentFraction + 0.5)
	missing := e.cfg.FindDigests - present
	// Digests that are never uploaded stay missing, so one pool of them,
	// made up front, serves every call and keeps the client's own work per
	// call small (it shares the machine with the server it measures).
	pool := make([]*repb.Digest, max(4*missing, 1))
	want := make(map[string]bool, len(pool))
	rng := rand.New(rand.NewPCG(e.cfg.Seed, 0xf1d))
	for i := range pool {
		pool[i] = randomDigest(rng)
		want[pool[i].Hash] = true
	}
	return func(ctx context.Context, w *worker, seq int64) (opResult, error) {
		req := &repb.FindMissingBlobsRequest{
			InstanceName:   e.cfg.Instance,
			DigestFunction: repb.DigestFunction_SHA256,
			BlobDigests:    make([]*repb.Digest, 0, e.cfg.FindDigests),
		}
		start := w.rng.IntN(len(e.small))
		for i := 0; i < present; i++ {
			req.BlobDigests = append(req.BlobDigests, e.small[(start+i)%len(e.small)])
		}
		start = w.rng.IntN(len(pool))
		for i := 0; i < missing; i++ {
			req.BlobDigests = append(req.BlobDigests, pool[(start+i)%len(pool)])
		}
		// Interleave present and missing digests as a build's would be.
		w.rng.Shuffle(len(req.BlobDigests), func(i, j int) {
			req.BlobDigests[i], req.BlobDigests[j] = req.BlobDigests[j], req.BlobDigests[i]
		})
		t := time.Now()
		resp, err := w.cas.FindMissingBlobs(ctx, req)
		lat := time.Since(t)
		if err != nil {
			return opResult{}, err
		}
		got := resp.GetMissingBlobDigests()
		wrong := 0
		for _, d := range got {
			if !want[d.GetHash()] {
				wrong++
			}
		}
		if wrong > 0 || len(got) != missing {
			return opResult{}, wrongf("FindMissingBlobs reported %d of %d digests missing, %d of them uploaded before", len(got), missing, wrong)
		}
		return opResult{items: int64(len(req.BlobDigests)), lat: lat}, nil
	}
}

func (e *env) batchWriteOp() opFunc {
	per := e.batchBlobs
	size := e.cfg.SmallSize
	return func(ctx context.Context, w *worker, seq int64) (opResult, error) {
		req := &repb.BatchUpdateBlobsRequest{
			InstanceName:   e.cfg.Instance,
			DigestFunction: repb.DigestFunction_SHA256,
			Requests:       make([]*repb.BatchUpdateBlobsRequest_Request, per),
		}
		for j := range req.Requests {
			data := Payload(e.cfg.Seed, streamBatchWrite, uint64(seq)*uint64(per)+uint64(j), size)
			req.Requests[j] = &repb.BatchUpdateBlobsRequest_Request{Digest: DigestOf(data), Data: data}
		}
		t := time.Now()
		resp, err := w.cas.BatchUpdateBlobs(ctx, req)
		lat := time.Since(t)
		if err != nil {
			return opResult{}, err
		}
		if err := checkUpdates(req, resp); err != nil {
			return opResult{}, err
		}
		n := int64(per * size)
		return opResult{items: int64(per), bytes: n, wire: n, lat: lat}, nil
	}
}

func (e *env) batchReadOp() opFunc {
	per := e.batchBlobs
	return func(ctx context.Context, w *worker, seq int64) (opResult, error) {
		req := &repb.BatchReadBlobsRequest{
			InstanceName:   e.cfg.Instance,
			DigestFunction: repb.DigestFunction_SHA256,
			Digests:        make([]*repb.Digest, per),
		}
		for j := range req.Digests {
			req.Digests[j] = e.small[w.rng.IntN(len(e.small))]
		}
		t := time.Now()
		resp, err := w.cas.BatchReadBlobs(ctx, req)
		lat := time.Since(t)
		if err != nil {
			return opResult{}, err
		}
		if len(resp.GetResponses()) != per {
			return opResult{}, wrongf("BatchReadBlobs answered %d of %d digests", len(resp.GetResponses()), per)
		}
		var n int64
		for _, r := range resp.GetResponses() {
			if c := codes.Code(r.GetStatus().GetCode()); c != codes.OK {
				return opResult{}, fmt.Errorf("BatchReadBlobs: blob %s: %s: %s", r.GetDigest().GetHash(), c, r.GetStatus().GetMessage())
			}
			if r.GetCompressor() != repb.Compressor_IDENTITY {
				return opResult{}, wrongf("BatchReadBlobs sent %s data that was not asked for", r.GetCompressor())
			}
			if d := DigestOf(r.GetData()); d.Hash != r.GetDigest().GetHash() || d.SizeBytes != r.GetDigest().GetSizeBytes() {
				return opResult{}, wrongf("BatchReadBlobs returned data that does not match digest %s/%d", r.GetDigest().GetHash(), r.GetDigest().GetSizeBytes())
			}
			n += int64(len(r.GetData()))
		}
		return opResult{items: int64(per), bytes: n, wire: n, lat: lat}, nil
	}
}

func (e *env) bsWriteOp(compressed bool) opFunc {
	stream := streamBSWrite
	if compressed {
		stream = streamZstdWrite
	}
	return func(ctx context.Context, w *worker, seq int64) (opResult, error) {
		if cap(w.buf) < e.cfg.LargeSize {
			w.buf = make([]byte, e.cfg.LargeSize)
		}
		data := w.buf[:e.cfg.LargeSize]
		FillPayload(data, e.cfg.Seed, stream, uint64(seq))
		d := DigestOf(data)
		send := data
		if compressed {
			enc, err := w.encoder()
			if err != nil {
				return opResult{}, fmt.Errorf("zstd encoder: %w", err)
			}
			w.out = enc.EncodeAll(data, w.out[:0])
			send = w.out
		}
		name := resource.WriteName(e.cfg.Instance, resource.NewUUID(), repb.DigestFunction_SHA256, d, compressed)
		t := time.Now()
		committed, err := w.write(ctx, name, send, e.cfg.ChunkSize)
		lat := time.Since(t)
		if err != nil {
			return opResult{}, err
		}
		// A finished plain upload commits the blob's size. A compressed one
		// commits the compressed bytes received, or -1 if the blob was
		// already there; some servers report the blob's size instead.
		ok := committed == d.SizeBytes
		if compressed {
			ok = ok || committed == int64(len(send)) || committed == -1
		}
		if !ok {
			return opResult{}, wrongf("ByteStream.Write of %d bytes (%d sent) committed %d", d.SizeBytes, len(send), committed)
		}
		return opResult{items: 1, bytes: d.SizeBytes, wire: int64(len(send)), lat: lat}, nil
	}
}

func (e *env) bsReadOp(compressed bool) opFunc {
	return func(ctx context.Context, w *worker, seq int64) (opResult, error) {
		d := e.large[w.rng.IntN(len(e.large))]
		// Bound what a misbehaving server can make us buffer.
		limit := int(d.SizeBytes) + int(d.SizeBytes)/8 + 1<<16
		t := time.Now()
		got, err := w.read(ctx, resource.ReadName(e.cfg.Instance, repb.DigestFunction_SHA256, d, compressed), limit)
		lat := time.Since(t)
		if err != nil {
			return opResult{}, err
		}
		wire := int64(len(got))
		if compressed {
			dec, err := w.decoder(int(d.SizeBytes))
			if err != nil {
				return opResult{}, fmt.Errorf("zstd decoder: %w", err)
			}
			// DecodeAll grows a short dst by a copy per frame, which is
			// quadratic for a stream of many frames (a 64 MiB blob in 256
			// frames took 10 s instead of 0.1 s): give it the room first.
			if cap(w.out) < int(d.SizeBytes) {
				w.out = make([]byte, 0, d.SizeBytes)
			}
			w.out, err = dec.DecodeAll(got, w.out[:0])
			if err != nil {
				return opResult{}, wrongf("ByteStream.Read of %s sent invalid zstd data: %v", d.Hash, err)
			}
			got = w.out
		}
		if g := DigestOf(got); g.Hash != d.Hash || g.SizeBytes != d.SizeBytes {
			return opResult{}, wrongf("ByteStream.Read of %s/%d returned %d bytes with digest %s", d.Hash, d.SizeBytes, g.SizeBytes, g.Hash)
		}
		return opResult{items: 1, bytes: d.SizeBytes, wire: wire, lat: lat}, nil
	}
}

// write uploads data under name in chunks and returns the committed size.
func (w *worker) write(ctx context.Context, name string, data []byte, chunk int) (int64, error) {
	stream, err := w.bs.Write(ctx)
	if err != nil {
		return 0, err
	}
	off := 0
	for {
		end := min(off+chunk, len(data))
		req := &bspb.WriteRequest{WriteOffset: int64(off), Data: data[off:end], FinishWrite: end == len(data)}
		if off == 0 {
			req.ResourceName = name
		}
		if err := stream.Send(req); err != nil {
			if err == io.EOF {
				break // the server ended the stream; its status follows
			}
			return 0, err
		}
		off = end
		if off == len(data) {
			break
		}
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return 0, err
	}
	return resp.GetCommittedSize(), nil
}

// read reads all of name into the worker's buffer, failing if the server
// sends more than limit bytes.
func (w *worker) read(ctx context.Context, name string, limit int) ([]byte, error) {
	stream, err := w.bs.Read(ctx, &bspb.ReadRequest{ResourceName: name})
	if err != nil {
		return nil, err
	}
	buf := w.in[:0]
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		if len(buf)+len(resp.GetData()) > limit {
			return nil, wrongf("ByteStream.Read of %s sent more than %d bytes", name, limit)
		}
		buf = append(buf, resp.GetData()...)
	}
	w.in = buf
	return buf, nil
}

// actionCacheSetup stores ActionResults whose outputs exist, then returns
// an operation that fetches them.
func (e *env) actionCacheSetup(ctx context.Context) (opFunc, error) {
	const outputsPer = 3 // two output files and stdout
	n := e.cfg.ActionResults
	e.logf("uploading %d action results with %d output blobs each", n, outputsPer)
	blobs, err := e.uploadSmall(ctx, streamACOutputs, n*outputsPer, e.cfg.SmallSize)
	if err != nil {
		return nil, err
	}
	actions := make([]*repb.Digest, n)
	results := make([]*repb.ActionResult, n)
	ac := repb.NewActionCacheClient(e.conns[0])
	err = parallel(ctx, n, min(e.cfg.Concurrency, 4), func(ctx context.Context, i int) error {
		// The Action itself is never read by a cache, only its digest.
		actions[i] = DigestOf(Payload(e.cfg.Seed, streamActions, uint64(i), 140))
		results[i] = &repb.ActionResult{
			OutputFiles: []*repb.OutputFile{
				{Path: fmt.Sprintf("bench/%d/out.o", i), Digest: blobs[i*outputsPer]},
				{Path: fmt.Sprintf("bench/%d/out.d", i), Digest: blobs[i*outputsPer+1]},
			},
			StdoutDigest: blobs[i*outputsPer+2],
		}
		cctx, cancel := context.WithTimeout(ctx, e.cfg.OpTimeout)
		defer cancel()
		_, err := ac.UpdateActionResult(cctx, &repb.UpdateActionResultRequest{
			InstanceName:   e.cfg.Instance,
			ActionDigest:   actions[i],
			ActionResult:   results[i],
			DigestFunction: repb.DigestFunction_SHA256,
		})
		if err != nil {
			if c := status.Code(err); c == codes.PermissionDenied || c == codes.Unimplemented {
				return fmt.Errorf("the server refuses action cache updates, so there is nothing to fetch: %w", err)
			}
			return fmt.Errorf("UpdateActionResult: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context, w *worker, seq int64) (opResult, error) {
		i := w.rng.IntN(n)
		t := time.Now()
		got, err := w.ac.GetActionResult(ctx, &repb.GetActionResultRequest{
			InstanceName:   e.cfg.Instance,
			ActionDigest:   actions[i],
			DigestFunction: repb.DigestFunction_SHA256,
		})
		lat := time.Since(t)
		if err != nil {
			return opResult{}, err
		}
		want := results[i]
		if len(got.GetOutputFiles()) != len(want.OutputFiles) || got.GetStdoutDigest().GetHash() != want.StdoutDigest.Hash {
			return opResult{}, wrongf("GetActionResult returned a different result for action %s", actions[i].Hash)
		}
		for j, f := range got.GetOutputFiles() {
			if f.GetPath() != want.OutputFiles[j].Path || f.GetDigest().GetHash() != want.OutputFiles[j].Digest.Hash ||
				(len(f.GetContents()) > 0 && DigestOf(f.GetContents()).Hash != want.OutputFiles[j].Digest.Hash) {
				return opResult{}, wrongf("GetActionResult returned a different output %q for action %s", f.GetPath(), actions[i].Hash)
			}
		}
		size := int64(proto.Size(got))
		return opResult{items: 1, bytes: size, wire: size, lat: lat}, nil
	}, nil
}
