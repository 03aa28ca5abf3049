// Package e2e holds Ferrule's end-to-end tests: real Bazel (7.7.1, from the
// toolchain root, run through tools/root.sh) building this workspace against
// a real `ferrule serve`.
//
// They run when FERRULE_E2E=1 (tools/test.sh sets it) and are skipped
// otherwise, so `go test ./...` on a machine without Bazel stays useful.
// Every test shares one Bazel output root (FERRULE_BAZEL_OUTPUT_USER_ROOT, as
// tools/test.sh sets it) so one JVM serves them all; tests that need a second
// "machine" use a second root and shut its server down when they finish.
package e2e

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// requireE2E skips the test unless end-to-end tests are enabled, and fails
// it (rather than skipping) if they are enabled but the toolchain root with
// Bazel is missing.
func requireE2E(t *testing.T) {
	t.Helper()
	if os.Getenv("FERRULE_E2E") != "1" {
		t.Skip("end-to-end test: set FERRULE_E2E=1 (tools/test.sh does) to run it")
	}
	out, err := exec.Command(rootScript(t), "test", "-x", "/usr/bin/bazel").CombinedOutput()
	if err != nil {
		t.Fatalf("FERRULE_E2E=1 but the toolchain root has no Bazel: run ./tools/setup.sh (%v: %s)", err, out)
	}
}

// rootScript is tools/root.sh of this checkout: it runs a command inside the
// toolchain root, where Bazel and the toolchains are.
func rootScript(t *testing.T) string {
	return filepath.Join(repoRoot(t), "tools", "root.sh")
}

// repoRoot is the checkout this test runs from.
func repoRoot(t *testing.T) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate the test source")
	}
	return filepath.Dir(filepath.Dir(file))
}

// testRoot is a directory owned by this test run for output roots, copies
// of the repository and server state. It outlives single tests (so the
// shared Bazel output root is reused) and is under the repository's
// .ferrule/ by default.
func testRoot(t *testing.T) string {
	t.Helper()
	root := os.Getenv("FERRULE_TEST_ROOT")
	if root == "" {
		root = filepath.Join(repoRoot(t), ".ferrule", "test")
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	return root
}

// sharedOutputRoot is the Bazel --output_user_root every test uses unless it
// models a second machine.
func sharedOutputRoot(t *testing.T) string {
	if r := os.Getenv("FERRULE_BAZEL_OUTPUT_USER_ROOT"); r != "" {
		return r
	}
	return filepath.Join(testRoot(t), "bazel-root")
}

// Bazel runs Bazel in one workspace with one output root and environment.
type Bazel struct {
	Dir            string   // workspace directory
	OutputUserRoot string   // --output_user_root
	Startup        []string // more startup options
	Env            []string // full environment; nil means the test's own
}

// NewBazel returns a Bazel for dir on the shared output root.
func NewBazel(t *testing.T, dir string) *Bazel {
	return &Bazel{Dir: dir, OutputUserRoot: sharedOutputRoot(t)}
}

// buildCommands take build options such as --symlink_prefix.
var buildCommands = map[string]bool{"build": true, "test": true, "run": true, "coverage": true}

// Run runs `bazel <args>` and returns its combined output. It fails the test
// on a non-zero exit unless the caller uses RunErr.
func (b *Bazel) Run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := b.RunErr(t, args...)
	if err != nil {
		t.Fatalf("bazel %s: %v\n%s", strings.Join(args, " "), err, tail(out, 80))
	}
	return out
}

// RunErr is Run without failing the test.
func (b *Bazel) RunErr(t *testing.T, args ...string) (string, error) {
	t.Helper()
	full := append([]string{"--output_user_root=" + b.OutputUserRoot}, b.Startup...)
	if len(args) > 0 && buildCommands[args[0]] {
		full = append(full, args[0], "--symlink_prefix=/", "--color=no", "--curses=no")
		full = append(full, args[1:]...)
	} else {
		full = append(full, args...)
	}
	cmd := exec.Command(rootScript(t), append([]string{"bazel"}, full...)...)
	cmd.Dir = b.Dir
	cmd.Env = b.Env
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	t.Logf("(in %s) bazel %s", b.Dir, strings.Join(full, " "))
	err := cmd.Run()
	return out.String(), err
}

// Shutdown stops the Bazel server of this output root.
func (b *Bazel) Shutdown(t *testing.T) {
	if _, err := b.RunErr(t, "shutdown"); err != nil {
		t.Logf("bazel shutdown: %v", err)
	}
}

func tail(s string, lines int) string {
	parts := strings.Split(s, "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}

// CopyRepo copies the checkout (tracked and untracked-but-not-ignored files,
// plus the gitignored vendored crates the build needs) to dst, so a test can
// build it from another absolute path.
func CopyRepo(t *testing.T, dst string) {
	t.Helper()
	src := repoRoot(t)
	cmd := exec.Command("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard")
	cmd.Dir = src
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	files := strings.Split(strings.TrimRight(string(out), "\x00"), "\x00")
	if err := os.RemoveAll(dst); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if f == "" {
			continue
		}
		if err := copyPath(filepath.Join(src, f), filepath.Join(dst, f)); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue // deleted in the work tree but still in the index
			}
			t.Fatalf("copy %s: %v", f, err)
		}
	}
	for _, extra := range []string{"third_party/vendor"} {
		if _, err := os.Stat(filepath.Join(src, extra)); err == nil {
			if err := copyTree(filepath.Join(src, extra), filepath.Join(dst, extra)); err != nil {
				t.Fatalf("copy %s: %v", extra, err)
			}
		}
	}
}

func copyTree(src, dst string) error {
	return filepath.Walk(src, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if info.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		return copyPath(p, filepath.Join(dst, rel))
	})
}

func copyPath(src, dst string) error {
	info, err := os.Lstat(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	if info.Mode()&os.ModeSymlink != 0 {
		target, err := os.Readlink(src)
		if err != nil {
			return err
		}
		return os.Symlink(target, dst)
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, info.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// cleanEnv is an environment for a simulated second machine: the given HOME
// and USER, and only what Bazel itself needs from the host.
func cleanEnv(home, user string) []string {
	env := []string{"HOME=" + home, "USER=" + user, "LOGNAME=" + user}
	for _, k := range []string{"PATH", "LANG", "TMPDIR"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

var (
	ferruleOnce sync.Once
	ferruleBin  string
	ferruleErr  error
)

// ferruleBinary builds cmd/ferrule once per test process.
func ferruleBinary(t *testing.T) string {
	t.Helper()
	ferruleOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ferrule-e2e-bin")
		if err != nil {
			ferruleErr = err
			return
		}
		ferruleBin = filepath.Join(dir, "ferrule")
		cmd := exec.Command("go", "build", "-o", ferruleBin, "./cmd/ferrule")
		cmd.Dir = repoRoot(t)
		if out, err := cmd.CombinedOutput(); err != nil {
			ferruleErr = fmt.Errorf("go build ./cmd/ferrule: %v\n%s", err, out)
		}
	})
	if ferruleErr != nil {
		t.Fatal(ferruleErr)
	}
	return ferruleBin
}

// freePorts returns n distinct loopback TCP ports that were free a moment
// ago (all held open together while chosen, so none is picked twice).
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// Server is a running `ferrule serve` (or other ferrule process) on loopback.
type Server struct {
	GRPC string // host:port
	HTTP string // host:port
	Dir  string
	args []string
	cmd  *exec.Cmd
	log  *bytes.Buffer
}

// StartServer runs `ferrule serve` with a fresh disk store on free loopback
// ports plus extra flags, waits until its health service answers, and stops
// it when the test ends.
func StartServer(t *testing.T, extra ...string) *Server {
	t.Helper()
	dir := t.TempDir()
	ports := freePorts(t, 2)
	s := &Server{
		GRPC: fmt.Sprintf("127.0.0.1:%d", ports[0]),
		HTTP: fmt.Sprintf("127.0.0.1:%d", ports[1]),
		Dir:  dir,
		log:  &bytes.Buffer{},
	}
	s.args = append([]string{"serve", "--dir", dir, "--grpc_address", s.GRPC, "--http_address", s.HTTP}, extra...)
	s.start(t)
	t.Cleanup(func() {
		s.cmd.Process.Kill()
		s.cmd.Wait()
		if t.Failed() {
			t.Logf("ferrule serve log:\n%s", tail(s.log.String(), 60))
		}
	})
	return s
}

func (s *Server) start(t *testing.T) {
	t.Helper()
	s.cmd = exec.Command(ferruleBinary(t), s.args...)
	s.cmd.Stdout = s.log
	s.cmd.Stderr = s.log
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start ferrule serve: %v", err)
	}
	waitHealthy(t, s.GRPC, s.log, slices.Contains(s.args, "--tls_cert_file"))
}

// Restart kills the server (SIGKILL) and starts it again on the same
// addresses and store; with fresh, the store is emptied first.
func (s *Server) Restart(t *testing.T, fresh bool) {
	t.Helper()
	s.cmd.Process.Kill()
	s.cmd.Wait()
	if fresh {
		if err := os.RemoveAll(s.Dir); err != nil {
			t.Fatal(err)
		}
	}
	s.start(t)
}

// waitHealthy polls the gRPC health service until it reports SERVING; over
// TLS when useTLS, the certificate unchecked (the probe only waits).
func waitHealthy(t *testing.T, addr string, log *bytes.Buffer, useTLS bool) {
	t.Helper()
	creds := insecure.NewCredentials()
	if useTLS {
		creds = credentials.NewTLS(&tls.Config{InsecureSkipVerify: true})
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := healthpb.NewHealthClient(conn)
	for i := 0; i < 300; i++ {
		ctx, cancel := contextWithTimeout(time.Second)
		resp, err := client.Check(ctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err == nil && resp.Status == healthpb.HealthCheckResponse_SERVING {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("server at %s never became healthy; log:\n%s", addr, log.String())
}

// Spawn is one entry of a Bazel execution log (--execution_log_json_file).
type Spawn struct {
	CommandArgs          []string  `json:"commandArgs"`
	EnvironmentVariables []EnvVar  `json:"environmentVariables"`
	Inputs               []LogFile `json:"inputs"`
	ListedOutputs        []string  `json:"listedOutputs"`
	ActualOutputs        []LogFile `json:"actualOutputs"`
	Remotable            bool      `json:"remotable"`
	Cacheable            bool      `json:"cacheable"`
	RemoteCacheable      bool      `json:"remoteCacheable"`
	Mnemonic             string    `json:"mnemonic"`
	Runner               string    `json:"runner"`
	RemoteCacheHitField  bool      `json:"remoteCacheHit"`
	ExitCode             int       `json:"exitCode"`
	Platform             struct {
		Properties []EnvVar `json:"properties"`
	} `json:"platform"`
}

// RemoteCacheHit says the spawn was served by the remote cache: Bazel 7
// says so in the runner ("remote cache hit"), older Bazels in remoteCacheHit.
func (s Spawn) RemoteCacheHit() bool {
	return s.RemoteCacheHitField || s.Runner == "remote cache hit"
}

// EnvVar is a name/value pair of the log.
type EnvVar struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// LogFile is an input or output file of the log.
type LogFile struct {
	Path   string `json:"path"`
	Digest struct {
		Hash      string `json:"hash"`
		SizeBytes string `json:"sizeBytes"`
	} `json:"digest"`
}

// Size returns the file's size in bytes.
func (f LogFile) Size() int64 {
	n, _ := strconv.ParseInt(f.Digest.SizeBytes, 10, 64)
	return n
}

// ReadExecLog reads Bazel's JSON execution log: concatenated objects.
func ReadExecLog(t *testing.T, path string) []Spawn {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := json.NewDecoder(f)
	var spawns []Spawn
	for {
		var s Spawn
		err := dec.Decode(&s)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("parse %s: %v", path, err)
		}
		spawns = append(spawns, s)
	}
	return spawns
}
