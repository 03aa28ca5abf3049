package s3_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/ferrule-build/ferrule/remote/store"
	"github.com/ferrule-build/ferrule/remote/store/s3"
	"github.com/ferrule-build/ferrule/remote/store/s3/s3test"
	"github.com/ferrule-build/ferrule/remote/store/storetest"
)

func open(t testing.TB, srv *s3test.Server, bucket, prefix string) *s3.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := s3.Open(ctx, srv.Options(bucket, prefix))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// The conformance suite against a real S3 server (versitygw), each test
// under its own prefix of one bucket.
func TestConformance(t *testing.T) {
	srv := s3test.Start(t)
	srv.MakeBucket(t, "conformance")
	n := 0
	storetest.Run(t, func(t *testing.T) store.Store {
		n++
		return open(t, srv, "conformance", "run"+string(rune('a'+n)))
	})
}

// Objects are where the package says: <prefix>/cas/<hash> and
// <prefix>/ac/<hash> for the default namespace, elsewhere for others.
func TestObjectNames(t *testing.T) {
	srv := s3test.Start(t)
	srv.MakeBucket(t, "names")
	st := open(t, srv, "names", "/team/cache/")
	data := []byte("where am I")
	k := storetest.CASKey("", repb.DigestFunction_SHA256, data)
	storetest.MustPut(t, st, k, data)
	ac := storetest.ACKey("", "names")
	storetest.MustPut(t, st, ac, []byte("result"))
	inst := storetest.CASKey("other", repb.DigestFunction_SHA256, data)
	storetest.MustPut(t, st, inst, data)
	c := srv.Client(t)
	ctx := context.Background()
	for _, name := range []string{"team/cache/cas/" + k.Hash, "team/cache/ac/" + ac.Hash} {
		if _, err := c.StatObject(ctx, "names", name, minio.StatObjectOptions{}); err != nil {
			t.Errorf("object %s: %v", name, err)
		}
	}
	var others []string
	for o := range c.ListObjects(ctx, "names", minio.ListObjectsOptions{Prefix: "team/cache/ns/", Recursive: true}) {
		others = append(others, o.Key)
	}
	if len(others) != 1 || !strings.HasSuffix(others[0], "/cas/"+k.Hash) || strings.Contains(others[0], "other") {
		t.Errorf("the instance's object is %v, want one team/cache/ns/<id>/cas/%s", others, k.Hash)
	}
}

// Bad settings at start-up are errors that name the setting at fault.
func TestOpenErrors(t *testing.T) {
	srv := s3test.Start(t)
	srv.MakeBucket(t, "exists")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	good := credentials.NewStaticV4(s3test.Access, s3test.Secret, "")
	for _, tc := range []struct {
		name string
		opts s3.Options
		want string
	}{
		{"wrong secret", s3.Options{Endpoint: srv.Addr, Bucket: "exists", Creds: credentials.NewStaticV4(s3test.Access, "wrong", "")}, "refused the credentials"},
		{"unknown key", s3.Options{Endpoint: srv.Addr, Bucket: "exists", Creds: credentials.NewStaticV4("nobody", "wrong", "")}, "--s3.auth_method"},
		{"missing bucket", s3.Options{Endpoint: srv.Addr, Bucket: "absent", Creds: good}, `--s3.bucket "absent" does not exist`},
		{"unreachable", s3.Options{Endpoint: closed, Bucket: "exists", Creds: good}, "--s3.endpoint) unreachable"},
		{"scheme", s3.Options{Endpoint: "http://" + srv.Addr, Bucket: "exists", Creds: good}, "without a scheme"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.DisableSSL = true
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			st, err := s3.Open(ctx, tc.opts)
			if err == nil {
				st.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
		})
	}
}

// With S3 gone, calls fail with ErrUnavailable and the store reports the
// cause; once S3 is back (same port, same directory) the data is there and
// the store is healthy again.
func TestUnavailableAndRecovery(t *testing.T) {
	srv := s3test.Start(t)
	srv.MakeBucket(t, "flaky")
	st := open(t, srv, "flaky", "")
	data := storetest.Blob(1, 1000)
	k := storetest.CASKey("", repb.DigestFunction_SHA256, data)
	storetest.MustPut(t, st, k, data)

	srv.Stop()
	ctx := context.Background()
	if _, _, err := st.Get(ctx, k, 0); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Get with S3 down: %v, want ErrUnavailable", err)
	}
	other := []byte("written while down")
	ko := storetest.CASKey("", repb.DigestFunction_SHA256, other)
	if err := st.Put(ctx, ko, ko.Size, bytes.NewReader(other)); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Put with S3 down: %v, want ErrUnavailable", err)
	}
	if _, err := st.FindMissing(ctx, []store.Key{k}); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("FindMissing with S3 down: %v, want ErrUnavailable", err)
	}
	h := st.Health()
	if h.Healthy || h.Cause == "" {
		t.Errorf("health with S3 down: %+v, want unhealthy with a cause", h)
	}

	srv.Restart(t)
	s3test.WaitHealthy(t, st.Health)
	if got := storetest.MustGet(t, st, k); !bytes.Equal(got, data) {
		t.Error("the blob written before the outage reads back different")
	}
	storetest.AssertMissing(t, st, ko)
}

// With UpdateTimestamps, a hit on an old object copies it onto itself with
// new metadata, which resets its age on AWS S3 (lifecycle rules count from
// the last write). versitygw keeps the modification time on such a copy,
// so the test looks at the metadata the copy sets.
func TestUpdateTimestamps(t *testing.T) {
	srv := s3test.Start(t)
	srv.MakeBucket(t, "touch")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	o := srv.Options("touch", "")
	o.UpdateTimestamps, o.RefreshAfter = true, time.Nanosecond
	st, err := s3.Open(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	data := []byte("old but used")
	k := storetest.CASKey("", repb.DigestFunction_SHA256, data)
	storetest.MustPut(t, st, k, data)
	c := srv.Client(t)
	info, err := c.StatObject(ctx, "touch", "cas/"+k.Hash, minio.StatObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if info.UserMetadata["Ferrule-Used"] != "" {
		t.Fatalf("a fresh object already has Ferrule-Used metadata: %v", info.UserMetadata)
	}
	if m, err := st.FindMissing(ctx, []store.Key{k}); err != nil || len(m) != 0 {
		t.Fatalf("FindMissing: %v %v", m, err)
	}
	for {
		info, err = c.StatObject(ctx, "touch", "cas/"+k.Hash, minio.StatObjectOptions{})
		if err == nil && info.UserMetadata["Ferrule-Used"] != "" {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("the hit did not refresh the object: %v %v", info.UserMetadata, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := storetest.MustGet(t, st, k); !bytes.Equal(got, data) {
		t.Error("the refreshed object reads back different")
	}
}

// failAtEnd yields data, then fails instead of reporting the end.
type failAtEnd struct{ r *bytes.Reader }

func (f failAtEnd) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err != nil {
		return n, errors.New("refused at the end")
	}
	return n, nil
}

// Values larger than StageInMemory are staged in a temporary file: they
// round-trip, and one whose reader fails at its very end uploads nothing.
func TestStagedInFile(t *testing.T) {
	srv := s3test.Start(t)
	srv.MakeBucket(t, "staged")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	o := srv.Options("staged", "")
	o.StageInMemory, o.TempDir = 1000, t.TempDir()
	st, err := s3.Open(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	data := storetest.Blob(3, 3<<20)
	k := storetest.CASKey("", repb.DigestFunction_SHA256, data)
	if err := st.Put(ctx, k, k.Size, failAtEnd{bytes.NewReader(data)}); err == nil {
		t.Fatal("Put with a reader failing at its end succeeded")
	}
	storetest.AssertMissing(t, st, k)
	storetest.MustPut(t, st, k, data)
	got, err := storetest.ReadAll(st, k, 1<<20)
	if err != nil || !bytes.Equal(got, data[1<<20:]) {
		t.Errorf("read at 1 MiB of a 3 MiB staged blob: %d bytes, %v", len(got), err)
	}
}
