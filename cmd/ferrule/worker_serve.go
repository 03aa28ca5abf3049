package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"path/filepath"

	"github.com/ferrule-build/ferrule/remote/execution"
	"github.com/ferrule-build/ferrule/remote/server"
)

// Remote execution in `ferrule serve`: the Execution service and the worker
// Scheduler service are always registered (so `ferrule worker` processes can
// join); --workers N adds N in-process workers.
var serveExec struct {
	workers   int
	workerDir string
	noNS      bool
	platform  platformFlag
}

func init() {
	serveHooks = append(serveHooks, serveHook{
		name: "execution",
		flags: func(fs *flag.FlagSet) {
			fs.IntVar(&serveExec.workers, "workers", 0, "in-process remote execution workers (0: only separate ferrule worker processes run actions)")
			fs.StringVar(&serveExec.workerDir, "worker_dir", "", "working directory of the in-process workers (default: workers/ under --dir)")
			fs.BoolVar(&serveExec.noNS, "worker_no_namespaces", false, "in-process workers run actions without mount/pid/network namespaces")
			fs.Var(&serveExec.platform, "worker_platform", "platform property NAME=VALUE the in-process workers offer on top of OSFamily and ISA (repeatable)")
		},
		setup: func(ctx context.Context, srv *server.Server, out io.Writer) (func(), error) {
			svc := execution.New(srv.Store(), execution.Options{Logger: srv.Logger()})
			srv.RegisterExecution(svc, svc.ExecutionCapabilities())
			svc.RegisterScheduler(srv.GRPC())
			if serveExec.workers <= 0 {
				fmt.Fprintf(out, "ferrule serve: remote execution on; no in-process workers (start `ferrule worker --scheduler ADDRESS`)\n")
				return nil, nil
			}
			dir := serveExec.workerDir
			if dir == "" {
				dir = filepath.Join(activeServeConfig.Dir, "workers")
			}
			wctx, cancel := context.WithCancel(ctx)
			wait, err := svc.StartLocalWorkers(wctx, serveExec.workers, execution.LocalWorkerOptions{
				Dir: dir, Platform: workerPlatform(serveExec.platform), NoNamespaces: serveExec.noNS,
			})
			if err != nil {
				cancel()
				return nil, err
			}
			fmt.Fprintf(out, "ferrule serve: remote execution on with %d in-process worker(s) in %s\n", serveExec.workers, dir)
			return func() { cancel(); wait() }, nil
		},
	})
}
