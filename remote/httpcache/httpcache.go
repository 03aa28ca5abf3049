// Package httpcache serves Bazel's plain HTTP cache protocol
// (--remote_cache=http://...) over a store.Store: GET, HEAD and PUT on
// /ac/<hash> and /cas/<hash>, optionally below an instance prefix
// (/<instance...>/ac/<hash>). CAS uploads are verified against their hash;
// action results are served only when every blob they reference exists.
//
// The protocol names entries by hash alone. Action cache entries have the
// key the gRPC service gives them (ac.ResultKey: no size), so each protocol
// sees the results the other wrote. For CAS reads the size comes from the
// uploads and action results seen (Bazel reads a result before its
// outputs), else from the backend (store.Sizer), which also knows blobs
// uploaded over gRPC or before a restart.
package httpcache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/ferrule-build/ferrule/remote/ac"
	"github.com/ferrule-build/ferrule/remote/clientlimit"
	"github.com/ferrule-build/ferrule/remote/digest"
	"github.com/ferrule-build/ferrule/remote/resource"
	"github.com/ferrule-build/ferrule/remote/rpcstatus"
	"github.com/ferrule-build/ferrule/remote/store"
)

// Options configure a Handler.
type Options struct {
	// ReadOnly refuses PUT with 403.
	ReadOnly bool
	// MaxResultBytes bounds an action cache entry.
	MaxResultBytes int64
	// MaxIndex bounds the number of remembered CAS sizes.
	MaxIndex int
	// Uploads, if set, admits each PUT (503 past its caps).
	Uploads *clientlimit.Limiter
	// BodyTimeout drops a PUT whose body sends nothing for this long
	// (408; nothing is stored). Zero means DefaultBodyTimeout.
	BodyTimeout time.Duration
	Logger      *slog.Logger
}

// DefaultBodyTimeout is the default of Options.BodyTimeout.
const DefaultBodyTimeout = time.Minute

// Handler serves the HTTP cache protocol.
type Handler struct {
	store store.Store
	opts  Options

	mu    sync.Mutex
	sizes map[sizeKey]int64 // CAS hash -> size, learnt from uploads and results
}

type sizeKey struct {
	instance string
	hash     string
}

// New returns a Handler over s.
func New(s store.Store, o Options) *Handler {
	if o.MaxResultBytes <= 0 {
		o.MaxResultBytes = ac.DefaultMaxResultBytes
	}
	if o.MaxIndex <= 0 {
		o.MaxIndex = 1 << 20
	}
	if o.BodyTimeout <= 0 {
		o.BodyTimeout = DefaultBodyTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &Handler{store: store.WithCompleteness(store.WithVerification(s)), opts: o, sizes: map[sizeKey]int64{}}
}

func (h *Handler) remember(instance, hash string, size int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.sizes) >= h.opts.MaxIndex {
		clear(h.sizes) // crude but bounded; results read later refill it
	}
	h.sizes[sizeKey{instance, hash}] = size
}

func (h *Handler) lookup(ctx context.Context, k store.Key) (int64, bool) {
	if k.Hash == digest.Empty(k.Function).Hash {
		return 0, true
	}
	h.mu.Lock()
	size, ok := h.sizes[sizeKey{k.Instance, k.Hash}]
	h.mu.Unlock()
	if ok {
		return size, true
	}
	// The backend finds blobs stored over gRPC or before a restart.
	size, err := store.SizeOf(ctx, h.store, k)
	return size, err == nil
}

// parse splits /<instance...>/<ac|cas>/<hash>.
func parse(p string) (instance string, kind store.Kind, hash string, err error) {
	p = strings.TrimPrefix(p, "/")
	segs := strings.Split(p, "/")
	if len(segs) < 2 {
		return "", 0, "", errors.New("want /ac/<hash> or /cas/<hash>")
	}
	hash = segs[len(segs)-1]
	switch segs[len(segs)-2] {
	case "ac":
		kind = store.AC
	case "cas":
		kind = store.CAS
	default:
		return "", 0, "", errors.New("want /ac/<hash> or /cas/<hash>")
	}
	instance = strings.Join(segs[:len(segs)-2], "/")
	if err := resource.CheckInstance(instance); err != nil {
		return "", 0, "", err
	}
	if err := digest.Validate(repb.DigestFunction_SHA256, &repb.Digest{Hash: hash}); err != nil {
		return "", 0, "", err
	}
	return instance, kind, hash, nil
}

// ServeHTTP implements the protocol.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	instance, kind, hash, err := parse(r.URL.Path)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	// The HTTP protocol has no digest function; hashes are SHA256. Action
	// results have the key the gRPC service gives them (ac.ResultKey).
	k := store.Key{Kind: kind, Instance: instance, Function: repb.DigestFunction_SHA256, Hash: hash}
	if kind == store.AC {
		k = ac.ResultKey(instance, repb.DigestFunction_SHA256, hash)
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		if kind == store.AC {
			h.getAC(w, r, k)
		} else {
			h.getCAS(w, r, k)
		}
	case http.MethodPut:
		if h.opts.ReadOnly {
			http.Error(w, "this cache is read-only", http.StatusForbidden)
			return
		}
		if h.opts.Uploads != nil {
			release, err := h.opts.Uploads.Acquire(r.Context(), clientlimit.HTTPClient(r))
			if err != nil {
				// Do not wait for the body of a refused upload.
				w.Header().Set("Connection", "close")
				http.Error(w, status.Convert(err).Message(), http.StatusServiceUnavailable)
				return
			}
			defer release()
		}
		r.Body = &idleBody{rc: r.Body, ctl: http.NewResponseController(w), timeout: h.opts.BodyTimeout}
		if kind == store.AC {
			h.putAC(w, r, k)
		} else {
			h.putCAS(w, r, k)
		}
	default:
		w.Header().Set("Allow", "GET, HEAD, PUT")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	code := http.StatusInternalServerError
	if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() {
		w.Header().Set("Connection", "close")
		http.Error(w, "request body stalled: "+err.Error(), http.StatusRequestTimeout)
		return
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		http.Error(w, "request body ended early: "+err.Error(), http.StatusBadRequest)
		return
	}
	switch status.Code(rpcstatus.Error(err)) {
	case codes.ResourceExhausted:
		// An entry that could fit, in a store full of uploads in
		// progress, is worth a retry; one too large never fits.
		code = http.StatusRequestEntityTooLarge
		if errors.Is(err, store.ErrFull) {
			code = http.StatusServiceUnavailable
		}
	case codes.NotFound:
		code = http.StatusNotFound
	case codes.InvalidArgument:
		code = http.StatusBadRequest
	case codes.Canceled, codes.DeadlineExceeded, codes.Unavailable:
		code = http.StatusServiceUnavailable
	}
	if code == http.StatusInternalServerError {
		h.opts.Logger.Error("http cache", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	http.Error(w, status.Convert(rpcstatus.Error(err)).Message(), code)
}

func (h *Handler) getCAS(w http.ResponseWriter, r *http.Request, k store.Key) {
	size, ok := h.lookup(r.Context(), k)
	if !ok {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	k.Size = size
	if size == 0 {
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusOK)
		return
	}
	if r.Method == http.MethodHead {
		missing, err := h.store.FindMissing(r.Context(), []store.Key{k})
		if err != nil {
			h.fail(w, r, err)
			return
		}
		if len(missing) > 0 {
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
		w.WriteHeader(http.StatusOK)
		return
	}
	rc, got, err := h.store.Get(r.Context(), k, 0)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	defer rc.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(got, 10))
	if _, err := io.CopyN(w, rc, got); err != nil {
		h.opts.Logger.Warn("http cache: sending blob", "key", k.String(), "err", err)
	}
}

func (h *Handler) getAC(w http.ResponseWriter, r *http.Request, k store.Key) {
	// The store's Complete decorator serves only complete results.
	data, err := store.ReadBlob(r.Context(), h.store, k, h.opts.MaxResultBytes)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	res := &repb.ActionResult{}
	if err := proto.Unmarshal(data, res); err != nil {
		http.Error(w, "stored result does not parse", http.StatusNotFound)
		return
	}
	h.learn(r.Context(), k.Instance, res)
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	if r.Method == http.MethodHead {
		w.WriteHeader(http.StatusOK)
		return
	}
	w.Write(data)
}

// learn remembers the sizes of the blobs res references, so that the GETs
// of its outputs that follow can find them.
func (h *Handler) learn(ctx context.Context, instance string, res *repb.ActionResult) {
	add := func(d *repb.Digest) {
		if d != nil {
			h.remember(instance, d.Hash, d.SizeBytes)
		}
	}
	for _, f := range res.OutputFiles {
		add(f.Digest)
	}
	add(res.StdoutDigest)
	add(res.StderrDigest)
	for _, d := range res.OutputDirectories {
		add(d.TreeDigest)
		if d.TreeDigest == nil {
			continue
		}
		k := store.Key{Kind: store.CAS, Instance: instance, Function: repb.DigestFunction_SHA256, Hash: d.TreeDigest.Hash, Size: d.TreeDigest.SizeBytes}
		data, err := store.ReadBlob(ctx, h.store, k, store.MaxMessageBytes)
		if err != nil {
			continue
		}
		tree := &repb.Tree{}
		if proto.Unmarshal(data, tree) != nil {
			continue
		}
		for _, dir := range append([]*repb.Directory{tree.Root}, tree.Children...) {
			for _, f := range dir.GetFiles() {
				add(f.Digest)
			}
		}
	}
}

func contentLength(w http.ResponseWriter, r *http.Request, limit int64) (int64, bool) {
	if r.ContentLength < 0 {
		http.Error(w, "PUT needs a Content-Length", http.StatusLengthRequired)
		return 0, false
	}
	if limit > 0 && r.ContentLength > limit {
		http.Error(w, fmt.Sprintf("%d bytes is over the limit of %d", r.ContentLength, limit), http.StatusRequestEntityTooLarge)
		return 0, false
	}
	return r.ContentLength, true
}

func (h *Handler) putCAS(w http.ResponseWriter, r *http.Request, k store.Key) {
	size, ok := contentLength(w, r, 0)
	if !ok {
		return
	}
	k.Size = size
	// The store verifies the body against the hash (Verifying); the
	// empty blob needs no entry.
	var err error
	if !store.IsEmpty(k) {
		err = h.store.Put(r.Context(), k, size, r.Body)
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.remember(k.Instance, k.Hash, size)
	w.WriteHeader(http.StatusOK)
}

func (h *Handler) putAC(w http.ResponseWriter, r *http.Request, k store.Key) {
	size, ok := contentLength(w, r, h.opts.MaxResultBytes)
	if !ok {
		return
	}
	data := make([]byte, size)
	if _, err := io.ReadFull(r.Body, data); err != nil {
		h.fail(w, r, err)
		return
	}
	res := &repb.ActionResult{}
	if err := proto.Unmarshal(data, res); err != nil {
		http.Error(w, "body is not an ActionResult: "+err.Error(), http.StatusBadRequest)
		return
	}
	if err := ac.Validate(k.Function, res); err != nil {
		http.Error(w, "invalid ActionResult: "+err.Error(), http.StatusBadRequest)
		return
	}
	if err := h.store.Put(r.Context(), k, size, bytes.NewReader(data)); err != nil {
		h.fail(w, r, err)
		return
	}
	h.learn(r.Context(), k.Instance, res)
	w.WriteHeader(http.StatusOK)
}

// idleBody is a request body whose every Read must make progress within
// timeout: the connection's read deadline moves forward before each Read,
// so a body that stalls fails with a timeout while a slow but steady one
// goes on.
type idleBody struct {
	rc      io.ReadCloser
	ctl     *http.ResponseController
	timeout time.Duration
}

func (b *idleBody) Read(p []byte) (int, error) {
	if err := b.ctl.SetReadDeadline(time.Now().Add(b.timeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return 0, err
	}
	return b.rc.Read(p)
}

func (b *idleBody) Close() error { return b.rc.Close() }
