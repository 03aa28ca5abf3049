// Package web is the page `ferrule serve` shows on its HTTP port: the
// cache's hit rate, request rates, bytes, store fill and evictions as plots
// over the last day (sampled from the server's Prometheus registry), the
// remote execution queues and workers, and the invocations that Bazel
// published to the Build Event Service (package bes), one page each at
// /invocation/<id>, the path --bes_results_url=http://HOST:PORT/invocation/
// makes Bazel print.
//
// "Why did this build miss?": an invocation's execution log (Bazel's
// --execution_log_json_file) is uploaded after the build with
//
//	curl --data-binary @exec.json http://HOST:PORT/invocation/<id>/execlog
//
// and /compare?a=<id>&b=<id> shows the `ferrule explain` comparison of two
// invocations' logs. Everything is rendered on the server with html/template
// and inline SVG: the page loads nothing from elsewhere.
package web

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/ferrule-build/ferrule/remote/bes"
	"github.com/ferrule-build/ferrule/remote/bes/bep"
	"github.com/ferrule-build/ferrule/remote/execution"
	"github.com/ferrule-build/ferrule/remote/explain"
)

//go:embed templates/*.html
var templateFS embed.FS

var templates = template.Must(template.New("").Funcs(template.FuncMap{
	"dur":    formatDuration,
	"bytes":  func(n int64) string { return formatBytes(float64(n)) },
	"bytesf": formatBytes,
	"time": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format("2006-01-02 15:04:05 UTC")
	},
	"join": strings.Join,
}).ParseFS(templateFS, "templates/*.html"))

// Options configure a Handler.
type Options struct {
	// Store holds the invocations. Required.
	Store *bes.Store
	// Sampler provides the cache plots. Required.
	Sampler *Sampler
	// ReadOnly refuses execution log uploads.
	ReadOnly bool
	Logger   *slog.Logger
}

// Handler serves the page.
type Handler struct {
	opts Options
	log  *slog.Logger

	mu   sync.Mutex
	exec func() execution.Snapshot
}

// New returns a handler.
func New(opts Options) *Handler {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Handler{opts: opts, log: opts.Logger}
}

// SetExecution makes the page show the scheduler that snap describes.
func (h *Handler) SetExecution(snap func() execution.Snapshot) {
	h.mu.Lock()
	h.exec = snap
	h.mu.Unlock()
}

// Mount adds the page's routes to mux.
func (h *Handler) Mount(mux *http.ServeMux) {
	mux.HandleFunc("GET /{$}", h.serveIndex)
	mux.HandleFunc("GET /invocations", h.serveInvocations)
	mux.HandleFunc("GET /invocation/{id}", h.serveInvocation)
	mux.HandleFunc("GET /invocation/{id}/events", h.serveEvents)
	mux.HandleFunc("POST /invocation/{id}/execlog", h.serveExecLogUpload)
	mux.HandleFunc("PUT /invocation/{id}/execlog", h.serveExecLogUpload)
	mux.HandleFunc("GET /compare", h.serveCompare)
}

type indexPage struct {
	Plots       []Plot
	Last        Sample
	HitRate     string
	Interval    time.Duration
	Exec        *execution.Snapshot
	Invocations []bes.Summary
	Total       int
	BES         bes.StoreStats
	Limits      bes.Limits
}

func (h *Handler) render(w http.ResponseWriter, name string, data any) {
	var buf bytes.Buffer
	if err := templates.ExecuteTemplate(&buf, name, data); err != nil {
		h.log.Error("rendering page", "page", name, "error", err)
		http.Error(w, "rendering the page failed: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'")
	w.Write(buf.Bytes())
}

func (h *Handler) serveIndex(w http.ResponseWriter, r *http.Request) {
	h.index(w, r, 50)
}

func (h *Handler) serveInvocations(w http.ResponseWriter, r *http.Request) {
	h.index(w, r, 0)
}

func (h *Handler) index(w http.ResponseWriter, r *http.Request, limit int) {
	smps := h.opts.Sampler.Samples()
	p := indexPage{Plots: plots(smps), Interval: h.opts.Sampler.Interval(), BES: h.opts.Store.Stats(), Limits: h.opts.Store.Limits()}
	if len(smps) > 0 {
		p.Last = smps[len(smps)-1]
		if l := p.Last.ACHits + p.Last.ACMisses; l > 0 {
			p.HitRate = fmt.Sprintf("%.1f%%", 100*p.Last.ACHits/l)
		}
	}
	h.mu.Lock()
	exec := h.exec
	h.mu.Unlock()
	if exec != nil {
		s := exec()
		p.Exec = &s
	}
	all := h.opts.Store.List(0)
	p.Total = len(all)
	if limit > 0 && len(all) > limit {
		all = all[:limit]
	}
	p.Invocations = all
	h.render(w, "index.html", p)
}

type invocationPage struct {
	bes.Snapshot
	Others []bes.Summary // other invocations with an execution log
}

func (h *Handler) serveInvocation(w http.ResponseWriter, r *http.Request) {
	inv, ok := h.opts.Store.Get(r.PathValue("id"))
	if !ok {
		http.Error(w, "no invocation "+r.PathValue("id")+" (unknown, or past the server's retention)", http.StatusNotFound)
		return
	}
	p := invocationPage{Snapshot: inv}
	for _, s := range h.opts.Store.List(0) {
		if s.HasExecLog && s.ID != inv.ID {
			p.Others = append(p.Others, s)
		}
	}
	h.render(w, "invocation.html", p)
}

// serveEvents writes the stored events as JSON, one per line.
func (h *Handler) serveEvents(w http.ResponseWriter, r *http.Request) {
	evs, ok := h.opts.Store.Events(r.PathValue("id"))
	if !ok {
		http.Error(w, "no invocation "+r.PathValue("id"), http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	for _, raw := range evs {
		var ev bep.BuildEvent
		if err := proto.Unmarshal(raw, &ev); err != nil {
			continue // only events that decoded were stored
		}
		b, _ := protojson.Marshal(&ev)
		w.Write(b)
		w.Write([]byte("\n"))
	}
}

func (h *Handler) serveExecLogUpload(w http.ResponseWriter, r *http.Request) {
	if h.opts.ReadOnly {
		http.Error(w, "this server is read-only (--read_only): it does not accept execution logs", http.StatusForbidden)
		return
	}
	id := r.PathValue("id")
	max := h.opts.Store.Limits().MaxExecLogBytes
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, max))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		http.Error(w, fmt.Sprintf("execution log over the bound of %d bytes", max), http.StatusRequestEntityTooLarge)
		return
	}
	if err != nil {
		http.Error(w, "reading the execution log: "+err.Error(), http.StatusBadRequest)
		return
	}
	spawns, err := explain.Read(bytes.NewReader(data))
	if err != nil {
		http.Error(w, "not an execution log (--execution_log_json_file): "+err.Error(), http.StatusBadRequest)
		return
	}
	ok, err := h.opts.Store.SetExecLog(id, data)
	if err != nil {
		http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
		return
	}
	if !ok {
		http.Error(w, "no invocation "+id+": publish its build events first", http.StatusNotFound)
		return
	}
	fmt.Fprintf(w, "stored the execution log of invocation %s: %d actions\n", id, len(spawns))
}

type comparePage struct {
	A, B   bes.Snapshot
	Report *explain.Report
	Text   string
	Error  string
}

func (h *Handler) serveCompare(w http.ResponseWriter, r *http.Request) {
	var p comparePage
	a, okA := h.opts.Store.Get(r.URL.Query().Get("a"))
	b, okB := h.opts.Store.Get(r.URL.Query().Get("b"))
	if !okA || !okB {
		http.Error(w, "compare needs ?a=<invocation>&b=<invocation>, both stored", http.StatusNotFound)
		return
	}
	p.A, p.B = a, b
	logA, logB := h.opts.Store.ExecLog(a.ID), h.opts.Store.ExecLog(b.ID)
	switch {
	case logA == nil || logB == nil:
		p.Error = "both invocations need an uploaded execution log (POST /invocation/<id>/execlog)"
	default:
		sa, errA := explain.Read(bytes.NewReader(logA))
		sb, errB := explain.Read(bytes.NewReader(logB))
		if err := errors.Join(errA, errB); err != nil {
			p.Error = err.Error()
			break
		}
		p.Report = explain.Compare(sa, sb)
		var buf bytes.Buffer
		p.Report.Write(&buf, a.ID, b.ID, 50)
		p.Text = buf.String()
	}
	h.render(w, "compare.html", p)
}

func formatDuration(d time.Duration) string {
	switch {
	case d <= 0:
		return ""
	case d < time.Second:
		return strconv.FormatInt(d.Milliseconds(), 10) + " ms"
	case d < time.Minute:
		return fmt.Sprintf("%.1f s", d.Seconds())
	case d >= 48*time.Hour && d%(24*time.Hour) == 0:
		return fmt.Sprintf("%d days", d/(24*time.Hour))
	}
	return d.Round(time.Second).String()
}
