// Package bench is a load generator for any REAPI v2 cache server. It
// speaks only the standard protocol (Capabilities, ContentAddressableStorage,
// ActionCache, ByteStream), so the same run can be pointed at Ferrule and at
// other servers such as bazel-remote and the numbers compared side by side.
//
// Each workload first uploads what it needs (blobs to read, action results
// to fetch), then runs Concurrency workers issuing one kind of request until
// its duration or count bound is reached, and reports operations per
// second, bytes per second, latency percentiles and errors. Reads are
// verified against their digests; a wrong answer counts as an error.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/klauspost/compress/zstd"
	bspb "google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// Run runs the workloads of cfg one after the other against cfg.Addr and
// returns their results. Extra dial options (a bufconn dialer in tests) may
// be given. progress, if not nil, receives one line per step.
//
// The error is for problems that stop the whole run: a bad configuration,
// an unreachable server, or one that does not speak REAPI. Failed requests
// are counted in the results instead. If ctx is cancelled, Run returns the
// results so far.
func Run(ctx context.Context, cfg Config, progress io.Writer, opts ...grpc.DialOption) (*Report, error) {
	if err := cfg.validate(); err != nil {
		return nil, ConfigError{err}
	}
	names, _ := selectWorkloads(cfg.Workloads)
	if cfg.Seed == 0 {
		cfg.Seed = rand.Uint64() | 1
	}
	if progress == nil {
		progress = io.Discard
	}
	e := &env{cfg: cfg, progress: progress}
	dialOpts := append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(256<<20), grpc.MaxCallSendMsgSize(256<<20)),
	}, opts...)
	for i := 0; i < cfg.Connections; i++ {
		cc, err := grpc.NewClient("passthrough:///"+cfg.Addr, dialOpts...)
		if err != nil {
			e.close()
			return nil, fmt.Errorf("cannot connect to %s: %w", cfg.Addr, err)
		}
		e.conns = append(e.conns, cc)
	}
	defer e.close()

	if err := e.probe(ctx); err != nil {
		return nil, err
	}
	rep := &Report{
		Addr: cfg.Addr, Instance: cfg.Instance, Seed: cfg.Seed,
		Concurrency: cfg.Concurrency, Connections: cfg.Connections,
		DurationLimitSec: cfg.Duration.Seconds(), CountLimit: cfg.Count,
		SmallSize: cfg.SmallSize, LargeSize: cfg.LargeSize, ChunkSize: cfg.ChunkSize,
		BatchBlobs: e.batchBlobs, FindDigests: cfg.FindDigests,
		Server: e.server,
	}
	for _, name := range names {
		if ctx.Err() != nil {
			break
		}
		rep.Workloads = append(rep.Workloads, e.runWorkload(ctx, name))
	}
	return rep, nil
}

// env is what the workloads of one run share.
type env struct {
	cfg      Config
	progress io.Writer
	conns    []*grpc.ClientConn
	server   ServerInfo

	batchBlobs int // blobs per batch call, after the server's limit

	smallOnce sync.Once
	smallErr  error
	small     []*repb.Digest // uploaded small blobs (stream streamSmallPool)

	largeOnce sync.Once
	largeErr  error
	large     []*repb.Digest // uploaded large blobs (stream streamLargePool)

	cdc cdcState // for the chunked workloads
}

// Streams separate the blobs of different purposes so that no workload
// finds another's blobs already present.
const (
	streamSmallPool uint64 = iota + 1
	streamBatchWrite
	streamLargePool
	streamBSWrite
	streamZstdWrite
	streamACOutputs
	streamActions
	streamCDC
)

func (e *env) close() {
	for _, c := range e.conns {
		c.Close()
	}
}

func (e *env) logf(format string, args ...any) {
	fmt.Fprintf(e.progress, "bench: "+format+"\n", args...)
}

// probe asks the server for its capabilities, which also checks that it is
// reachable and speaks REAPI.
func (e *env) probe(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	caps, err := repb.NewCapabilitiesClient(e.conns[0]).GetCapabilities(ctx, &repb.GetCapabilitiesRequest{InstanceName: e.cfg.Instance})
	if err != nil {
		switch status.Code(err) {
		case codes.Unavailable:
			return fmt.Errorf("cannot reach a REAPI server at %s (is it running, and is that its gRPC port?): %s", e.cfg.Addr, status.Convert(err).Message())
		case codes.DeadlineExceeded:
			return fmt.Errorf("no answer from %s within 10s to GetCapabilities", e.cfg.Addr)
		case codes.Unimplemented:
			return fmt.Errorf("the server at %s does not implement the REAPI Capabilities service: %s", e.cfg.Addr, status.Convert(err).Message())
		case codes.Canceled:
			return fmt.Errorf("interrupted while contacting %s", e.cfg.Addr)
		}
		return fmt.Errorf("GetCapabilities on %s failed: %v", e.cfg.Addr, err)
	}
	cc := caps.GetCacheCapabilities()
	if cc == nil {
		return fmt.Errorf("the server at %s has no cache capabilities (an execution-only server?); nothing to benchmark", e.cfg.Addr)
	}
	info := ServerInfo{MaxBatchTotalSizeBytes: cc.GetMaxBatchTotalSizeBytes()}
	if v := caps.GetLowApiVersion(); v != nil {
		info.LowAPIVersion = fmt.Sprintf("%d.%d", v.GetMajor(), v.GetMinor())
	}
	if v := caps.GetHighApiVersion(); v != nil {
		info.HighAPIVersion = fmt.Sprintf("%d.%d", v.GetMajor(), v.GetMinor())
	}
	sha := len(cc.GetDigestFunctions()) == 0 // REAPI 2.0 servers may leave it empty: SHA256
	for _, f := range cc.GetDigestFunctions() {
		info.DigestFunctions = append(info.DigestFunctions, strings.ToLower(f.String()))
		sha = sha || f == repb.DigestFunction_SHA256
	}
	if !sha {
		return fmt.Errorf("the server at %s does not offer SHA256 digests (it offers %s); the benchmark uses SHA256", e.cfg.Addr, strings.Join(info.DigestFunctions, ", "))
	}
	info.ByteStreamZstd = slices.Contains(cc.GetSupportedCompressors(), repb.Compressor_ZSTD)
	info.SplitSplice = cc.GetSplitBlobSupport() && cc.GetSpliceBlobSupport()
	info.BatchZstd = slices.Contains(cc.GetSupportedBatchUpdateCompressors(), repb.Compressor_ZSTD)
	if ac := cc.GetActionCacheUpdateCapabilities(); ac != nil {
		info.ACUpdateEnabled = ac.GetUpdateEnabled()
	}
	e.server = info

	// Fit batch calls into the server's limit. Without one, stay under the
	// 4 MiB message size most gRPC servers accept.
	limit := info.MaxBatchTotalSizeBytes
	if limit <= 0 {
		limit = 4 << 20
	}
	const perBlobOverhead = 128 // digest, status and framing per blob
	fit := int((limit - 1024) / int64(e.cfg.SmallSize+perBlobOverhead))
	e.batchBlobs = max(0, min(e.cfg.BatchBlobs, fit))
	e.logf("server %s: api %s..%s, digests %v, bytestream zstd %v, max batch %d bytes, action cache updates %v",
		e.cfg.Addr, info.LowAPIVersion, info.HighAPIVersion, info.DigestFunctions, info.ByteStreamZstd, info.MaxBatchTotalSizeBytes, info.ACUpdateEnabled)
	if e.batchBlobs < e.cfg.BatchBlobs && e.batchBlobs > 0 {
		e.logf("the server's batch limit fits %d blobs of %d bytes a call, not %d; using %d", e.batchBlobs, e.cfg.SmallSize, e.cfg.BatchBlobs, e.batchBlobs)
	}
	return nil
}

// opResult is what one successful operation did.
type opResult struct {
	items int64         // digests looked up, blobs moved, results fetched
	bytes int64         // payload bytes moved (uncompressed)
	wire  int64         // payload bytes on the wire (compressed, if so)
	lat   time.Duration // time spent in the request(s), not in preparing them
}

// opFunc performs operation number seq on worker w.
type opFunc func(ctx context.Context, w *worker, seq int64) (opResult, error)

// worker holds one goroutine's clients and scratch state.
type worker struct {
	id   int
	conn *grpc.ClientConn
	cas  repb.ContentAddressableStorageClient
	ac   repb.ActionCacheClient
	bs   bspb.ByteStreamClient
	rng  *rand.Rand

	enc *zstd.Encoder
	dec *zstd.Decoder
	buf []byte // scratch for payloads
	in  []byte // scratch for received data
	out []byte // scratch for decompressed data
}

func (e *env) newWorker(id int, workload int) *worker {
	cc := e.conns[id%len(e.conns)]
	return &worker{
		id:   id,
		conn: cc,
		cas:  repb.NewContentAddressableStorageClient(cc),
		ac:   repb.NewActionCacheClient(cc),
		bs:   bspb.NewByteStreamClient(cc),
		rng:  rand.New(rand.NewPCG(e.cfg.Seed+uint64(workload), uint64(id))),
	}
}

func (w *worker) encoder() (*zstd.Encoder, error) {
	if w.enc == nil {
		enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
		if err != nil {
			return nil, err
		}
		w.enc = enc
	}
	return w.enc, nil
}

// decoder returns the worker's zstd decoder. Its memory bound leaves room
// for the window sizes encoders pick (often 8 MiB) above the blob size.
func (w *worker) decoder(maxSize int) (*zstd.Decoder, error) {
	if w.dec == nil {
		dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(uint64(maxSize)+64<<20))
		if err != nil {
			return nil, err
		}
		w.dec = dec
	}
	return w.dec, nil
}

func (w *worker) release() {
	if w.enc != nil {
		w.enc.Close()
	}
	if w.dec != nil {
		w.dec.Close()
	}
}

// abortAfter is how many failures in a row end a workload early: a server
// that fails everything (or has gone away) is not worth hammering.
const abortAfter = 50

// workerStats is one worker's tally.
type workerStats struct {
	ops, items, bytes, wire, errors int64
	lat                             latencies
	errs                            map[string]int64
}

// drive runs op on Concurrency workers until the duration or count bound.
func (e *env) drive(ctx context.Context, name string, index int, op opFunc) Result {
	res := Result{Name: name, Status: "ok"}
	stopAt := time.Now().Add(e.cfg.Duration)
	var next, consecutive atomic.Int64
	var aborted atomic.Bool
	stats := make([]workerStats, e.cfg.Concurrency)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range stats {
		wg.Add(1)
		go func(st *workerStats) {
			defer wg.Done()
			w := e.newWorker(i, index)
			defer w.release()
			st.errs = map[string]int64{}
			for ctx.Err() == nil && !aborted.Load() && time.Now().Before(stopAt) {
				seq := next.Add(1) - 1
				if e.cfg.Count > 0 && seq >= e.cfg.Count {
					return
				}
				opCtx, cancel := context.WithTimeout(ctx, e.cfg.OpTimeout)
				r, err := op(opCtx, w, seq)
				cancel()
				if err != nil {
					if ctx.Err() != nil {
						return // interrupted: not the server's fault
					}
					st.errors++
					st.errs[describe(err)]++
					if consecutive.Add(1) >= abortAfter {
						aborted.Store(true)
					}
					continue
				}
				consecutive.Store(0)
				st.ops++
				st.items += r.items
				st.bytes += r.bytes
				st.wire += r.wire
				st.lat = append(st.lat, r.lat)
			}
		}(&stats[i])
	}
	wg.Wait()
	elapsed := time.Since(start)

	errs := map[string]int64{}
	var lats []latencies
	for _, st := range stats {
		res.Ops += st.ops
		res.Items += st.items
		res.Bytes += st.bytes
		res.WireBytes += st.wire
		res.Errors += st.errors
		lats = append(lats, st.lat)
		for k, v := range st.errs {
			errs[k] += v
		}
	}
	res.Seconds = elapsed.Seconds()
	if res.Seconds > 0 {
		res.OpsPerSec = float64(res.Ops) / res.Seconds
		res.ItemsPerSec = float64(res.Items) / res.Seconds
		res.MBPerSec = float64(res.Bytes) / 1e6 / res.Seconds
	}
	s := summarize(lats...)
	res.P50Ms, res.P99Ms, res.MaxMs = ms(s.p50), ms(s.p99), ms(s.max)
	res.ErrorSamples = topErrors(errs, 5)
	switch {
	case ctx.Err() != nil:
		res.Status = "interrupted"
	case aborted.Load():
		res.Status = "aborted"
		res.Note = fmt.Sprintf("stopped after %d failures in a row", abortAfter)
	case res.Errors > 0:
		res.Status = "errors"
	}
	return res
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// describe turns an error into a short, groupable line.
func describe(err error) string {
	msg := err.Error()
	if s, ok := status.FromError(err); ok {
		msg = s.Code().String() + ": " + s.Message()
	}
	if len(msg) > 200 {
		msg = msg[:200] + "..."
	}
	return msg
}

func topErrors(m map[string]int64, n int) []ErrorSample {
	var out []ErrorSample
	for k, v := range m {
		out = append(out, ErrorSample{Error: k, Count: v})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return out[i].Error < out[j].Error
	})
	if len(out) > n {
		out = out[:n]
	}
	return out
}

// errWrongAnswer marks a response that does not match what was stored.
var errWrongAnswer = errors.New("wrong answer")

func wrongf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errWrongAnswer, fmt.Sprintf(format, args...))
}
