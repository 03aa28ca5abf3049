package worker

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/ferrule-build/ferrule/remote/digest"
	"github.com/ferrule-build/ferrule/remote/store"
	"github.com/ferrule-build/ferrule/remote/store/disk"
	"github.com/ferrule-build/ferrule/remote/store/memory"
	"google.golang.org/grpc/codes"
)

// The attacks of issue 13 on the worker: each test runs an action that
// tries one and checks that the sandbox (or output collection) stops it.

// helperEnv makes the test binary, run as an action, do one thing of
// sandboxHelper's instead of running tests.
const helperEnv = "FERRULE_SANDBOX_TEST_HELPER"

func init() {
	if what := os.Getenv(helperEnv); what != "" {
		os.Exit(sandboxHelper(what))
	}
}

func sandboxHelper(what string) int {
	switch what {
	case "net":
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Println("listen:", err)
			return 1
		}
		go func() {
			if c, err := l.Accept(); err == nil {
				c.Write([]byte("hello over loopback"))
				c.Close()
			}
		}()
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			fmt.Println("dial loopback:", err)
			return 1
		}
		b, _ := io.ReadAll(c)
		fmt.Printf("loopback: %s\n", b)
		// A documentation address (TEST-NET-1) and a public resolver:
		// with no interface but lo there is no route to either.
		for _, addr := range []string{"192.0.2.1:80", "8.8.8.8:53"} {
			if c, err := net.DialTimeout("tcp", addr, 2*time.Second); err == nil {
				c.Close()
				fmt.Println("reached", addr)
			} else if !strings.Contains(err.Error(), "network is unreachable") {
				fmt.Println("unexpected error for", addr, err)
			}
		}
		return 0
	case "alloc":
		// Fresh pages are not touched: without a limit this costs address
		// space, not memory.
		b := make([]byte, 8<<30)
		fmt.Println("allocated", len(b)>>30, "GiB")
		return 0
	}
	return 3
}

// requireSandbox skips where the kernel gives no mount namespace (in CI,
// FERRULE_E2E=1, that is a failure).
func requireSandbox(t *testing.T, f *fixture) {
	t.Helper()
	if !f.r.sandbox.sandboxed() {
		if os.Getenv("FERRULE_E2E") == "1" {
			t.Fatal("FERRULE_E2E=1 but this worker cannot create the sandbox's namespaces")
		}
		t.Skip("the kernel does not let this process create mount namespaces: no sandbox to test")
	}
}

func (f *fixture) ok(out Outcome) *repb.ActionResult {
	f.t.Helper()
	if out.Status.GetCode() != 0 {
		f.t.Fatalf("status %v", out.Status)
	}
	return out.Result
}

func TestActionCannotReadShadow(t *testing.T) {
	if _, err := os.Stat("/etc/shadow"); err != nil {
		t.Skip("this host has no /etc/shadow")
	}
	f := newFixture(t)
	requireSandbox(t, f)
	res := f.ok(f.run(sh(`cat /etc/shadow && echo READ`), nil, time.Minute))
	if res.ExitCode == 0 || strings.Contains(f.get(res.StdoutDigest), "READ") {
		t.Fatalf("the action read /etc/shadow: exit %d, stdout %q", res.ExitCode, f.get(res.StdoutDigest))
	}
}

// The action runs as an unprivileged uid with no capabilities at all and
// no way to gain any.
func TestActionIsUnprivileged(t *testing.T) {
	f := newFixture(t)
	requireSandbox(t, f)
	res := f.ok(f.run(sh(`id -u; grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs):' /proc/self/status | tr -s '\t' ' '`), nil, time.Minute))
	out := f.get(res.StdoutDigest)
	if f.r.sandbox.userNS {
		if !strings.HasPrefix(out, "0\n") {
			t.Errorf("in a user namespace the action should be its uid 0 (the worker's own uid): %q", out)
		}
	} else if !strings.HasPrefix(out, strconv.Itoa(ActionUID)+"\n") {
		t.Errorf("uid: %q, want %d", out, ActionUID)
	}
	for _, c := range []string{"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"} {
		if !strings.Contains(out, c+": 0000000000000000\n") {
			t.Errorf("%s not empty: %q", c, out)
		}
	}
	if !strings.Contains(out, "NoNewPrivs: 1") {
		t.Errorf("no_new_privs not set: %q", out)
	}
}

// Writes outside the input root reach nothing of the host's: not a
// directory the worker can see, not /usr, not the host's /tmp.
func TestActionCannotWriteOutsideExecRoot(t *testing.T) {
	f := newFixture(t)
	requireSandbox(t, f)
	hostDir := t.TempDir()
	hostTmp := fmt.Sprintf("/tmp/ferrule-escape-%d", time.Now().UnixNano())
	defer os.Remove(hostTmp)
	script := fmt.Sprintf(`for p in %s/escape /usr/ferrule-escape %s; do echo x > "$p" && echo "wrote $p"; done; echo x > /tmp/scratch && echo scratch`, hostDir, hostTmp)
	res := f.ok(f.run(sh(script), nil, time.Minute))
	// hostTmp's name is writable, but in the sandbox's own /tmp.
	if got := f.get(res.StdoutDigest); got != "wrote "+hostTmp+"\nscratch\n" {
		t.Errorf("stdout %q: want only the sandbox's own /tmp writable", got)
	}
	for _, p := range []string{filepath.Join(hostDir, "escape"), "/usr/ferrule-escape", hostTmp} {
		if _, err := os.Stat(p); err == nil {
			os.Remove(p)
			t.Errorf("the action wrote the host's %s", p)
		}
	}
}

// A disk store on the worker's machine (the server's, for in-process
// workers) is out of sight.
func TestActionCannotReadTheStore(t *testing.T) {
	dir := t.TempDir()
	st, err := disk.Open(disk.Options{Dir: dir, MaxBytes: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	secret := []byte("a blob another client uploaded")
	d, _ := digest.Of(fn, secret)
	if err := st.Put(t.Context(), store.Key{Kind: store.CAS, Function: fn, Hash: d.Hash, Size: d.SizeBytes}, d.SizeBytes, bytes.NewReader(secret)); err != nil {
		t.Fatal(err)
	}
	f := newFixture(t)
	requireSandbox(t, f)
	res := f.ok(f.run(sh(fmt.Sprintf(`ls -R %s; grep -r "another client" %s /tmp 2>/dev/null | head -1`, dir, dir)), nil, time.Minute))
	if out := f.get(res.StdoutDigest); strings.Contains(out, d.Hash) || strings.Contains(out, "another client") {
		t.Fatalf("the action saw the store: %q", out)
	}
}

// The action's /proc is its own: pid 1 is the action, and the worker's
// pid is not there.
func TestActionSeesItsOwnProc(t *testing.T) {
	f := newFixture(t)
	requireSandbox(t, f)
	if f.r.sandbox.flags&syscall.CLONE_NEWPID == 0 {
		t.Skip("no pid namespace here: /proc cannot be the action's own")
	}
	res := f.ok(f.run(sh(fmt.Sprintf(`tr '\0' ' ' < /proc/1/cmdline; echo; ls /proc | grep -c '^[0-9]'; test -e /proc/%d/status && echo worker-vis''ible`, os.Getpid())), nil, time.Minute))
	out := f.get(res.StdoutDigest)
	lines := strings.Split(out, "\n")
	if !strings.Contains(lines[0], "/proc/1/cmdline") {
		t.Errorf("pid 1 is not the action: %q", lines[0])
	}
	if n, _ := strconv.Atoi(lines[1]); n < 1 || n > 5 {
		t.Errorf("the action's /proc shows %s processes", lines[1])
	}
	if strings.Contains(out, "worker-visible") {
		t.Error("the worker's process is visible in the action's /proc")
	}
}

// An action that makes an input writable and changes it: it cannot, and a
// later action with the same input digest gets the original bytes.
func TestActionCannotChangeInputs(t *testing.T) {
	f := newFixture(t)
	requireSandbox(t, f)
	orig := []byte("the original input\n")
	in := f.put(orig)
	root := &repb.Directory{Files: []*repb.FileNode{{Name: "in.txt", Digest: in}}, Directories: []*repb.DirectoryNode{{Name: "sub", Digest: f.putMsg(&repb.Directory{Files: []*repb.FileNode{{Name: "tool", Digest: in, IsExecutable: true}}})}}}
	attack := sh(`chmod 666 in.txt sub/tool; echo poisoned >> in.txt; echo poisoned > sub/tool; cat in.txt; ` +
		// Replacing the input is allowed (the directory is the action's);
		// the cache's file is another inode.
		`rm -f sub/tool && echo replaced > sub/tool && echo unlinked`)
	res := f.ok(f.run(attack, root, time.Minute))
	// Under a root worker the action is another uid than the inputs'
	// owner: it cannot change them. In a user namespace (a worker that is
	// not root) it can change its own hardlinks, and the cache verifies
	// its entries before it hands them out again.
	if got := f.get(res.StdoutDigest); f.r.sandbox.inputsImmutable() && got != string(orig)+"unlinked\n" {
		t.Errorf("attack stdout %q", got)
	}
	res = f.ok(f.run(sh(`cat in.txt sub/tool`), root, time.Minute))
	if got := f.get(res.StdoutDigest); got != string(orig)+string(orig) {
		t.Fatalf("a later action sees %q, want the original bytes twice", got)
	}
}

// Output collection never follows a symlink out of the input root: the
// action replaces directory d (a declared output's parent) with a symlink
// to a host directory, or to /etc, or escapes with "..".
func TestOutputsThroughSymlinkedParentAreRefused(t *testing.T) {
	f := newFixture(t)
	hostDir := t.TempDir()
	secret := "host secret " + strconv.FormatInt(time.Now().UnixNano(), 10) + "\n"
	os.WriteFile(filepath.Join(hostDir, "passwd"), []byte(secret), 0o644)
	os.Mkdir(filepath.Join(hostDir, "keys"), 0o755)
	os.WriteFile(filepath.Join(hostDir, "keys", "id"), []byte(secret), 0o644)
	hostPasswd, _ := os.ReadFile("/etc/passwd")
	for _, tc := range []struct {
		name, target string
		cmd          func(*repb.Command)
	}{
		{"output file, absolute", hostDir, func(c *repb.Command) { c.OutputFiles = []string{"d/passwd"} }},
		{"output file, /etc", "/etc", func(c *repb.Command) { c.OutputFiles = []string{"d/passwd"} }},
		{"output file, dot-dot", "../../../../../../../../../../.." + hostDir, func(c *repb.Command) { c.OutputFiles = []string{"d/passwd"} }},
		{"output path", hostDir, func(c *repb.Command) { c.OutputPaths = []string{"d/passwd"} }},
		{"output directory", hostDir, func(c *repb.Command) { c.OutputDirectories = []string{"d/keys"} }},
		{"output path directory", hostDir, func(c *repb.Command) { c.OutputPaths = []string{"d/keys"} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.t = t
			cmd := sh(`rm -rf d && ln -s "$TARGET" d`)
			cmd.EnvironmentVariables = append(cmd.EnvironmentVariables, &repb.Command_EnvironmentVariable{Name: "TARGET", Value: tc.target})
			tc.cmd(cmd)
			out := f.run(cmd, nil, time.Minute)
			if codes.Code(out.Status.GetCode()) != codes.InvalidArgument || !strings.Contains(out.Status.GetMessage(), "leads out of the input root") {
				t.Errorf("status %v, want INVALID_ARGUMENT saying the output leads out of the input root", out.Status)
			}
			for _, content := range [][]byte{[]byte(secret), hostPasswd} {
				d, _ := digest.Of(fn, content)
				if miss, _ := f.st.FindMissing(f.ctx, []store.Key{{Kind: store.CAS, Function: fn, Hash: d.Hash, Size: d.SizeBytes}}); len(miss) == 0 {
					t.Errorf("a host file was uploaded (%d bytes)", len(content))
				}
			}
		})
	}
	// Symlinks inside outputs are recorded as symlinks, never followed.
	f.t = t
	cmd := sh(`mkdir -p out && ln -s /etc out/etc && ln -s ` + hostDir + `/passwd out/passwd && ln -s ` + hostDir + `/passwd link`)
	cmd.OutputDirectories = []string{"out"}
	cmd.OutputFiles = []string{"link"}
	res := f.ok(f.run(cmd, nil, time.Minute))
	if len(res.OutputFileSymlinks) != 1 || res.OutputFileSymlinks[0].Target != hostDir+"/passwd" || len(res.OutputDirectories) != 1 {
		t.Fatalf("result %v", res)
	}
	d, _ := digest.Of(fn, []byte(secret))
	if miss, _ := f.st.FindMissing(f.ctx, []store.Key{{Kind: store.CAS, Function: fn, Hash: d.Hash, Size: d.SizeBytes}}); len(miss) == 0 {
		t.Error("a symlink inside an output directory was followed to a host file")
	}
}

// An input symlink to a host directory as the parent of a declared output:
// the worker does not create the output's parent directories through it.
func TestOutputParentsAreNotCreatedThroughInputSymlinks(t *testing.T) {
	f := newFixture(t)
	hostDir := t.TempDir()
	cmd := sh(`true`)
	cmd.OutputFiles = []string{"d/made/out"}
	out := f.run(cmd, &repb.Directory{Symlinks: []*repb.SymlinkNode{{Name: "d", Target: hostDir}}}, time.Minute)
	if codes.Code(out.Status.GetCode()) != codes.InvalidArgument {
		t.Errorf("status %v, want INVALID_ARGUMENT", out.Status)
	}
	if _, err := os.Stat(filepath.Join(hostDir, "made")); err == nil {
		t.Error("the worker created a directory through an input symlink, outside the input root")
	}
}

// The test binary as an input of its own, to run sandboxHelper as an action.
func (f *fixture) helperInput() *repb.Directory {
	f.t.Helper()
	self, err := os.Executable()
	if err != nil {
		f.t.Fatal(err)
	}
	b, err := os.ReadFile(self)
	if err != nil {
		f.t.Fatal(err)
	}
	return &repb.Directory{Files: []*repb.FileNode{{Name: "helper", Digest: f.put(b), IsExecutable: true}}}
}

func helperCommand(what string, props ...*repb.Platform_Property) *repb.Command {
	return &repb.Command{Arguments: []string{"./helper"}, EnvironmentVariables: []*repb.Command_EnvironmentVariable{{Name: helperEnv, Value: what}},
		Platform: &repb.Platform{Properties: props}}
}

// Loopback works inside the action; nothing else is reachable.
func TestActionHasLoopbackOnly(t *testing.T) {
	f := newFixture(t)
	requireSandbox(t, f)
	if f.r.sandbox.flags&syscall.CLONE_NEWNET == 0 {
		t.Skip("no network namespace here")
	}
	res := f.ok(f.run(helperCommand("net"), f.helperInput(), time.Minute))
	if got := f.get(res.StdoutDigest); res.ExitCode != 0 || got != "loopback: hello over loopback\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q", res.ExitCode, got, f.get(res.StderrDigest))
	}
}

// The resource limits stop a fork bomb, a huge file and a huge
// allocation; without properties the defaults apply.
func TestActionResourceLimits(t *testing.T) {
	f := newFixture(t)
	requireSandbox(t, f)
	limits := func(script string, props ...*repb.Platform_Property) *repb.Command {
		c := sh(script)
		c.Platform = &repb.Platform{Properties: props}
		return c
	}
	res := f.ok(f.run(limits(`grep -E 'Max (processes|file size|address space)' /proc/self/limits | tr -s ' '`), nil, time.Minute))
	def := ActionLimits{}.WithDefaults()
	for _, want := range []string{fmt.Sprintf("Max processes %d %d", def.Processes, def.Processes), fmt.Sprintf("Max file size %d %d", def.FileBytes, def.FileBytes), fmt.Sprintf("Max address space %d %d", def.MemoryBytes, def.MemoryBytes)} {
		if !strings.Contains(f.get(res.StdoutDigest), want) {
			t.Errorf("default limits: %q lacks %q", f.get(res.StdoutDigest), want)
		}
	}

	// A fork bomb that would hold 200 processes at once.
	bomb := limits(`n=0; i=0; while [ $i -lt 200 ]; do i=$((i+1)); (sleep 30 &) 2>/dev/null && n=$((n+1)); done; echo $n`,
		&repb.Platform_Property{Name: PropMaxProcesses, Value: "32"})
	res = f.ok(f.run(bomb, nil, 20*time.Second))
	if n, _ := strconv.Atoi(strings.TrimSpace(f.get(res.StdoutDigest))); n >= 200 {
		t.Errorf("the fork bomb started all %d processes", n)
	}

	big := limits(`head -c 4000000 /dev/zero > big; echo $?`, &repb.Platform_Property{Name: PropMaxFileSize, Value: "1048576"})
	big.OutputFiles = []string{"big"}
	res = f.ok(f.run(big, nil, time.Minute))
	if len(res.OutputFiles) != 1 || res.OutputFiles[0].Digest.SizeBytes > 1<<20 || strings.TrimSpace(f.get(res.StdoutDigest)) == "0" {
		t.Errorf("a 4 MB file under a 1 MiB limit: outputs %v, stdout %q", res.OutputFiles, f.get(res.StdoutDigest))
	}

	res = f.ok(f.run(helperCommand("alloc", &repb.Platform_Property{Name: PropMaxMemory, Value: strconv.Itoa(4 << 30)}), f.helperInput(), time.Minute))
	if res.ExitCode == 0 || strings.Contains(f.get(res.StdoutDigest), "allocated") || !strings.Contains(f.get(res.StderrDigest), "out of memory") {
		t.Errorf("8 GiB under a 4 GiB limit: exit %d, stderr %.300q", res.ExitCode, f.get(res.StderrDigest))
	}

	bad := f.run(limits(`true`, &repb.Platform_Property{Name: PropMaxProcesses, Value: "many"}), nil, time.Minute)
	if codes.Code(bad.Status.GetCode()) != codes.InvalidArgument || !strings.Contains(bad.Status.GetMessage(), PropMaxProcesses) {
		t.Errorf("a malformed limit: %v", bad.Status)
	}
}

// The same attacks inside a toolchain root.
func TestToolchainRootSandbox(t *testing.T) {
	root := toolchainRoot(t)
	st := memory.New(1 << 30)
	r, err := New(Options{ID: "rooted", Dir: t.TempDir(), Store: st, Root: root, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, ctx: t.Context(), st: st, r: r}
	requireSandbox(t, f)
	hostDir := t.TempDir()
	script := fmt.Sprintf(`id -u; tr '\0' ' ' < /proc/1/cmdline; echo; touch /usr/x 2>/dev/null && echo wrote-r''oot; ls %s 2>/dev/null && echo host-vis''ible; cat /etc/shadow 2>/dev/null && echo read-sha''dow; echo out > o`, hostDir)
	cmd := &repb.Command{Arguments: []string{"sh", "-c", script}, EnvironmentVariables: []*repb.Command_EnvironmentVariable{{Name: "PATH", Value: "/usr/bin:/bin"}}, OutputFiles: []string{"o"}}
	res := f.ok(f.run(cmd, nil, time.Minute))
	out := f.get(res.StdoutDigest)
	if !strings.HasPrefix(out, strconv.Itoa(ActionUID)+"\n") && !r.sandbox.userNS {
		t.Errorf("uid: %q", out)
	}
	if !strings.Contains(out, "/proc/1/cmdline") {
		t.Errorf("pid 1 is not the action: %q", out)
	}
	for _, bad := range []string{"wrote-root", "host-visible", "read-shadow"} {
		if strings.Contains(out, bad) {
			t.Errorf("%s: %q", bad, out)
		}
	}
	if len(res.OutputFiles) != 1 || f.get(res.OutputFiles[0].Digest) != "out\n" {
		t.Errorf("outputs %v (stderr %q)", res.OutputFiles, f.get(res.StderrDigest))
	}
}

// Where the sandbox cannot keep an action from changing its inputs (a
// worker that is not root), the file cache hashes each entry before
// handing it out: a changed entry is fetched again.
func TestCacheVerifiesEntriesItCannotTrust(t *testing.T) {
	f := newFixture(t)
	orig := []byte("cached input\n")
	d := f.put(orig)
	c := f.r.cache
	c.verify = func() bool { return true }
	dir := t.TempDir()
	if err := c.materialize(f.ctx, "", fn, d, false, filepath.Join(dir, "a")); err != nil {
		t.Fatal(err)
	}
	// What an action owning its hardlink can do.
	if err := os.Chmod(filepath.Join(dir, "a"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "a"), []byte("poisoned!!!!\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := c.materialize(f.ctx, "", fn, d, false, filepath.Join(dir, "b")); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(filepath.Join(dir, "b"))
	fi, _ := os.Stat(filepath.Join(dir, "b"))
	if string(got) != string(orig) || fi.Mode().Perm() != 0o444 {
		t.Fatalf("after the entry was changed the cache handed out %q (mode %v)", got, fi.Mode())
	}
}

// The attacks again with the worker not root (the test binary re-run as
// uid 65534): the sandbox then lives in a user namespace, the action is the
// worker's own uid without capabilities, and the file cache re-verifies
// inputs.
func TestSandboxOfAWorkerThatIsNotRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to start the worker as another uid (a non-root run of this package covers it already)")
	}
	if os.Getenv("FERRULE_TEST_NOT_ROOT") == "1" {
		t.Skip("already the non-root run")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "ferrule-not-root-") // t.TempDir's parent is 0700
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeAll(dir) })
	os.Chmod(dir, 0o755)
	b, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "worker.test")
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, "tmp")
	os.Mkdir(tmp, 0o755)
	if err := os.Chown(tmp, ActionUID, ActionGID); err != nil {
		t.Fatal(err)
	}
	c := exec.Command(bin, "-test.v", "-test.count=1", "-test.run", "^(TestActionIsUnprivileged|TestActionCannotWriteOutsideExecRoot|TestActionSeesItsOwnProc|TestActionCannotChangeInputs|TestOutputsThroughSymlinkedParentAreRefused|TestActionHasLoopbackOnly|TestActionResourceLimits)$")
	c.Dir = tmp
	c.Env = []string{"PATH=/usr/bin:/bin", "TMPDIR=" + tmp, "HOME=" + tmp, "FERRULE_TEST_NOT_ROOT=1"}
	c.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: ActionUID, Gid: ActionGID}}
	out, err := c.CombinedOutput()
	if strings.Contains(string(out), "no sandbox to test") {
		t.Skipf("this kernel gives a worker that is not root no user namespace:\n%s", out)
	}
	if err != nil {
		t.Fatalf("as uid %d: %v\n%s", ActionUID, err, out)
	}
	if !strings.Contains(string(out), "--- PASS: TestActionCannotChangeInputs") {
		t.Fatalf("the non-root run did not run the tests:\n%s", out)
	}
}
