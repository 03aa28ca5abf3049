package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/ferrule-build/ferrule/remote/bench"
	"github.com/ferrule-build/ferrule/remote/clientcreds"
)

// sizeFlag is a byte count flag that accepts units ("4KiB", "4MiB").
type sizeFlag struct{ n *int }

func (s sizeFlag) String() string {
	if s.n == nil {
		return ""
	}
	return fmt.Sprint(*s.n)
}

func (s sizeFlag) Set(v string) error {
	n, err := bench.ParseSize(v)
	if err != nil {
		return err
	}
	*s.n = n
	return nil
}

func init() {
	register(&command{
		name:    "bench",
		summary: "load-test a REAPI v2 cache server (Ferrule, bazel-remote, ...) and print throughput and latency",
		usage:   "[flags] --addr HOST:PORT | --compare [--labels A,B] A.json B.json",
		run:     runBench,
	})
}

func runBench(fs *flag.FlagSet, args []string) error {
	cfg := bench.DefaultConfig()
	fs.StringVar(&cfg.Addr, "addr", cfg.Addr, "gRPC `address` of the server (host:port; grpc:// or, for TLS, grpcs:// prefix allowed)")
	caFile := fs.String("tls_ca_file", "", "PEM CA bundle to verify the server's certificate with; turns TLS on (default with grpcs://: the system's roots)")
	clientCert := fs.String("tls_client_certificate", "", "PEM client certificate for mTLS (with --tls_client_key)")
	clientKey := fs.String("tls_client_key", "", "PEM key of --tls_client_certificate")
	token := fs.String("token", "", "bearer token sent as authorization: Bearer TOKEN (a role with writes: the benchmark uploads)")
	fs.StringVar(&cfg.Instance, "instance", "", "REAPI instance `name`")
	workloads := fs.String("workloads", "all", "comma-separated `list` of workloads: "+strings.Join(bench.AllWorkloads, ","))
	fs.IntVar(&cfg.Concurrency, "concurrency", cfg.Concurrency, "requests in flight at once")
	fs.IntVar(&cfg.Connections, "connections", cfg.Connections, "gRPC connections to spread the requests over")
	fs.DurationVar(&cfg.Duration, "duration", cfg.Duration, "how long each workload runs (also the limit with --count)")
	fs.Int64Var(&cfg.Count, "count", 0, "stop each workload after this many requests (0: run for --duration)")
	fs.DurationVar(&cfg.OpTimeout, "op-timeout", cfg.OpTimeout, "deadline of each request")
	fs.Var(sizeFlag{&cfg.SmallSize}, "small-size", "`bytes` per small blob (batch workloads, action outputs); units like 4KiB allowed")
	fs.IntVar(&cfg.BatchBlobs, "batch-blobs", cfg.BatchBlobs, "blobs per BatchUpdateBlobs/BatchReadBlobs call (lowered to fit the server's limit)")
	fs.Var(sizeFlag{&cfg.LargeSize}, "large-size", "`bytes` per large blob (ByteStream workloads)")
	fs.Var(sizeFlag{&cfg.ChunkSize}, "chunk-size", "`bytes` per ByteStream WriteRequest")
	fs.IntVar(&cfg.LargePool, "large-pool", cfg.LargePool, "large blobs uploaded for the ByteStream read workloads")
	fs.IntVar(&cfg.FindDigests, "find-digests", cfg.FindDigests, "digests per FindMissingBlobs call")
	fs.Float64Var(&cfg.PresentFraction, "present", cfg.PresentFraction, "fraction of FindMissingBlobs digests that exist on the server")
	fs.IntVar(&cfg.SmallPool, "small-pool", cfg.SmallPool, "small blobs uploaded for findmissing and batch-read")
	fs.IntVar(&cfg.ActionResults, "action-results", cfg.ActionResults, "action results uploaded for ac-get")
	fs.Uint64Var(&cfg.Seed, "seed", 0, "seed for the generated blobs (0: random, so each run writes new blobs)")
	asJSON := fs.Bool("json", false, "print the results as JSON instead of a table")
	allowRemote := fs.Bool("allow-remote", false, "allow a server address that is not on this machine (the benchmark writes a lot of data)")
	compare := fs.Bool("compare", false, "instead of running, compare two files of --json results: ferrule bench --compare A.json B.json")
	labels := fs.String("labels", "A,B", "with --compare, the `names` of the two sides")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *compare {
		return compareBench(fs.Args(), *labels)
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	addr, useTLS, err := benchAddr(cfg.Addr)
	if err != nil {
		return usagef("%v", err)
	}
	dialOpts, err := clientcreds.Config{
		TLS: useTLS, CAFile: *caFile, CertFile: *clientCert, KeyFile: *clientKey, Token: *token,
		CAFlag: "--tls_ca_file", CertFlag: "--tls_client_certificate", KeyFlag: "--tls_client_key",
	}.DialOptions()
	if err != nil {
		return err
	}
	cfg.Addr = addr
	cfg.Workloads = strings.Split(*workloads, ",")
	if !*allowRemote {
		if err := checkLoopback(addr); err != nil {
			return err
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	progress := fs.Output() // stderr
	fmt.Fprintf(progress, "ferrule bench: %s, workloads %s, concurrency %d (Ctrl-C prints the results so far)\n", addr, *workloads, cfg.Concurrency)
	rep, err := bench.Run(ctx, cfg, progress, dialOpts...)
	if err != nil {
		var ce bench.ConfigError
		if errors.As(err, &ce) {
			return usagef("%v", err)
		}
		return err
	}
	if *asJSON {
		err = rep.WriteJSON(os.Stdout)
	} else {
		err = rep.WriteTable(os.Stdout)
	}
	if err != nil {
		return err
	}
	if ctx.Err() != nil {
		return errors.New("interrupted")
	}
	if rep.Failed() {
		return errors.New("some workloads had errors (see above)")
	}
	return nil
}

// compareBench prints the side-by-side table of two result files.
func compareBench(files []string, labels string) error {
	if len(files) != 2 {
		return usagef("--compare takes two result files, got %d", len(files))
	}
	names := strings.Split(labels, ",")
	if len(names) != 2 || names[0] == "" || names[1] == "" {
		return usagef("--labels %q: want two comma-separated names", labels)
	}
	var sides [2][]*bench.Report
	for i, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			return err
		}
		sides[i], err = bench.ReadReports(fh)
		fh.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
	}
	cs := bench.Compare(sides[0], sides[1])
	if len(cs) == 0 {
		return fmt.Errorf("%s and %s have no workload in common", files[0], files[1])
	}
	return bench.WriteComparison(os.Stdout, names[0], names[1], cs)
}

// benchAddr normalises the --addr value to host:port and says whether it
// asks for TLS (grpcs://).
func benchAddr(a string) (addr string, useTLS bool, err error) {
	a = strings.TrimSpace(a)
	switch {
	case strings.HasPrefix(a, "grpcs://"):
		a, useTLS = strings.TrimPrefix(a, "grpcs://"), true
	case strings.HasPrefix(a, "grpc://"):
		a = strings.TrimPrefix(a, "grpc://")
	case strings.Contains(a, "://"):
		return "", false, fmt.Errorf("--addr %q: want HOST:PORT (or grpc://HOST:PORT, grpcs://HOST:PORT)", a)
	}
	a = strings.TrimSuffix(a, "/")
	host, port, err := net.SplitHostPort(a)
	if err != nil || port == "" {
		return "", false, fmt.Errorf("--addr %q: want HOST:PORT", a)
	}
	if host == "" {
		host = "localhost"
	}
	return net.JoinHostPort(host, port), useTLS, nil
}

// checkLoopback refuses addresses that are not on this machine unless the
// user says otherwise: the benchmark fills a cache with junk.
func checkLoopback(addr string) error {
	host, _, _ := net.SplitHostPort(addr)
	var ips []net.IP
	if ip := net.ParseIP(host); ip != nil {
		ips = []net.IP{ip}
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		addrs, err := net.DefaultResolver.LookupIPAddr(ctx, host)
		if err != nil {
			return fmt.Errorf("cannot resolve %q: %v", host, err)
		}
		for _, a := range addrs {
			ips = append(ips, a.IP)
		}
	}
	for _, ip := range ips {
		if !ip.IsLoopback() {
			return fmt.Errorf("%s is not a loopback address; the benchmark writes a lot of data into the cache it measures, so pass --allow-remote to run it against another machine", addr)
		}
	}
	return nil
}
