package execution

import (
	"context"
	"fmt"
	"path/filepath"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/ferrule-build/ferrule/remote/worker"
)

// LocalWorkerOptions configure StartLocalWorkers.
type LocalWorkerOptions struct {
	// Dir is the workers' working area; worker i uses Dir/worker-i.
	Dir string
	// Platform is what the workers offer; nil means worker.DefaultPlatform().
	Platform []*repb.Platform_Property
	// CacheMaxBytes bounds each worker's local file cache (0: default).
	CacheMaxBytes int64
	// NoNamespaces runs actions without mount/pid/net namespaces.
	NoNamespaces bool
	// ActionLimits bound what each action may use and upload (zero
	// fields: worker.ActionLimits' defaults).
	ActionLimits worker.ActionLimits
}

// StartLocalWorkers starts n in-process workers that take actions from s and
// read and write blobs through s's store. They run until ctx is cancelled;
// the returned function waits for them to stop.
func (s *Service) StartLocalWorkers(ctx context.Context, n int, opts LocalWorkerOptions) (wait func(), err error) {
	platform := opts.Platform
	if platform == nil {
		platform = worker.DefaultPlatform()
	}
	done := make(chan struct{}, n)
	for i := 0; i < n; i++ {
		r, err := worker.New(worker.Options{
			ID:            fmt.Sprintf("local-%d", i),
			Dir:           filepath.Join(opts.Dir, fmt.Sprintf("worker-%d", i)),
			Store:         s.st,
			CacheMaxBytes: opts.CacheMaxBytes,
			NoNamespaces:  opts.NoNamespaces,
			Limits:        s.opts.InputLimits,
			ActionLimits:  opts.ActionLimits,
			Logger:        s.log,
		})
		if err != nil {
			return nil, err
		}
		reg := s.registerWorker(r.ID(), platform)
		go func() {
			defer func() { done <- struct{}{} }()
			defer s.unregisterWorker(reg)
			for {
				j, lease, err := s.next(ctx, reg)
				if err != nil {
					return
				}
				out := r.Run(ctx, j.task)
				if ctx.Err() != nil {
					s.leaseLost(lease, "the server is shutting down")
					return
				}
				s.complete(lease, out)
			}
		}()
	}
	return func() {
		for i := 0; i < n; i++ {
			<-done
		}
	}, nil
}
