package httpcache_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/protobuf/proto"

	"github.com/ferrule-build/ferrule/remote/digest"
	"github.com/ferrule-build/ferrule/remote/httpcache"
	"github.com/ferrule-build/ferrule/remote/store"
	"github.com/ferrule-build/ferrule/remote/store/disk"
	"github.com/ferrule-build/ferrule/remote/store/memory"
)

const sha = repb.DigestFunction_SHA256

func do(t *testing.T, method, url string, body []byte) (int, []byte) {
	t.Helper()
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, data
}

func hash(t *testing.T, data []byte) string {
	d, err := digest.Of(sha, data)
	if err != nil {
		t.Fatal(err)
	}
	return d.Hash
}

func TestCAS(t *testing.T) {
	st := memory.New(0)
	srv := httptest.NewServer(httpcache.New(st, httpcache.Options{}))
	defer srv.Close()
	data := []byte("some blob")
	h := hash(t, data)
	for _, prefix := range []string{"", "/team/a"} {
		url := srv.URL + prefix + "/cas/" + h
		if code, _ := do(t, "GET", url, nil); code != 404 {
			t.Fatalf("GET before PUT: %d", code)
		}
		if code, _ := do(t, "HEAD", url, nil); code != 404 {
			t.Fatalf("HEAD before PUT: %d", code)
		}
		if code, body := do(t, "PUT", url, data); code != 200 {
			t.Fatalf("PUT: %d %s", code, body)
		}
		code, got := do(t, "GET", url, nil)
		if code != 200 || !bytes.Equal(got, data) {
			t.Fatalf("GET: %d %q", code, got)
		}
		if code, _ := do(t, "HEAD", url, nil); code != 200 {
			t.Fatalf("HEAD: %d", code)
		}
	}
	// The blob is in the shared store, under the instance.
	k := store.Key{Kind: store.CAS, Instance: "team/a", Function: sha, Hash: h, Size: int64(len(data))}
	if missing, _ := st.FindMissing(context.Background(), []store.Key{k}); len(missing) != 0 {
		t.Fatal("blob not in the store under its instance")
	}
	// Mismatched content is refused and not stored.
	other := hash(t, []byte("other"))
	if code, _ := do(t, "PUT", srv.URL+"/cas/"+other, []byte("not other")); code != 400 {
		t.Fatalf("mismatched PUT: %d", code)
	}
	if code, _ := do(t, "GET", srv.URL+"/cas/"+other, nil); code != 404 {
		t.Fatalf("GET after mismatched PUT: %d", code)
	}
	// The empty blob is always there.
	if code, got := do(t, "GET", srv.URL+"/cas/"+hash(t, nil), nil); code != 200 || len(got) != 0 {
		t.Fatalf("empty blob: %d %q", code, got)
	}
	if n := st.Stats().Entries; n != 2 {
		t.Fatalf("%d entries, want 2", n)
	}
}

func TestBadRequests(t *testing.T) {
	srv := httptest.NewServer(httpcache.New(memory.New(0), httpcache.Options{}))
	defer srv.Close()
	h := hash(t, []byte("x"))
	for _, p := range []string{"/cas/xyz", "/cas/" + strings.ToUpper(h), "/foo/" + h, "/" + h, "/a/../cas/" + h, "/blobs/cas/" + h, "//cas/" + h} {
		if code, _ := do(t, "GET", srv.URL+p, nil); code != 400 && code != 404 && code != 301 {
			t.Errorf("GET %s: %d, want 400", p, code)
		}
	}
	for _, p := range []string{"/cas/xyz", "/a//b/cas/" + h, "/blobs/cas/" + h} {
		if code, _ := do(t, "GET", srv.URL+p, nil); code != 400 {
			t.Errorf("GET %s: %d, want 400", p, code)
		}
	}
	if code, _ := do(t, "DELETE", srv.URL+"/cas/"+h, nil); code != 405 {
		t.Errorf("DELETE: %d", code)
	}
	if code, _ := do(t, "PUT", srv.URL+"/ac/"+h, []byte("\xff\xff not a proto")); code != 400 {
		t.Errorf("PUT garbage AC: %d", code)
	}
	ro := httptest.NewServer(httpcache.New(memory.New(0), httpcache.Options{ReadOnly: true}))
	defer ro.Close()
	if code, _ := do(t, "PUT", ro.URL+"/cas/"+hash(t, []byte("x")), []byte("x")); code != 403 {
		t.Errorf("read-only PUT: %d", code)
	}
}

func TestAC(t *testing.T) {
	st := memory.New(0)
	srv := httptest.NewServer(httpcache.New(st, httpcache.Options{}))
	defer srv.Close()
	out := []byte("output file")
	nested := []byte("file in a tree")
	tree := &repb.Tree{Root: &repb.Directory{Files: []*repb.FileNode{{Name: "n", Digest: mustDigest(t, nested)}}}}
	treeData, _ := proto.Marshal(tree)
	res := &repb.ActionResult{
		OutputFiles:       []*repb.OutputFile{{Path: "o", Digest: mustDigest(t, out)}},
		OutputDirectories: []*repb.OutputDirectory{{Path: "d", TreeDigest: mustDigest(t, treeData)}},
		ExecutionMetadata: &repb.ExecutedActionMetadata{Worker: "w"},
	}
	resData, _ := proto.Marshal(res)
	action := hash(t, []byte("action"))
	if code, _ := do(t, "PUT", srv.URL+"/ac/"+action, resData); code != 200 {
		t.Fatalf("PUT ac: %d", code)
	}
	// Outputs missing: the result is not served.
	if code, _ := do(t, "GET", srv.URL+"/ac/"+action, nil); code != 404 {
		t.Fatalf("GET incomplete result: %d, want 404", code)
	}
	for _, b := range [][]byte{out, treeData} {
		if code, _ := do(t, "PUT", srv.URL+"/cas/"+hash(t, b), b); code != 200 {
			t.Fatalf("PUT cas: %d", code)
		}
	}
	if code, _ := do(t, "GET", srv.URL+"/ac/"+action, nil); code != 404 {
		t.Fatalf("GET result with a tree file missing: %d, want 404", code)
	}
	// Upload the tree's file through the store (as gRPC would): the HTTP
	// cache learns its size from the result.
	k := store.Key{Kind: store.CAS, Function: sha, Hash: hash(t, nested), Size: int64(len(nested))}
	if err := st.Put(context.Background(), k, k.Size, bytes.NewReader(nested)); err != nil {
		t.Fatal(err)
	}
	code, got := do(t, "GET", srv.URL+"/ac/"+action, nil)
	if code != 200 || !bytes.Equal(got, resData) {
		t.Fatalf("GET complete result: %d", code)
	}
	code, got = do(t, "GET", srv.URL+"/cas/"+hash(t, nested), nil)
	if code != 200 || !bytes.Equal(got, nested) {
		t.Fatalf("GET of a blob known from a result: %d", code)
	}
	// A fresh handler over the same store (a restart) finds outputs after
	// reading the result.
	srv2 := httptest.NewServer(httpcache.New(st, httpcache.Options{}))
	defer srv2.Close()
	if code, _ := do(t, "GET", srv2.URL+"/ac/"+action, nil); code != 200 {
		t.Fatalf("GET result after restart: %d", code)
	}
	if code, got := do(t, "GET", srv2.URL+"/cas/"+hash(t, out), nil); code != 200 || !bytes.Equal(got, out) {
		t.Fatalf("GET output after restart: %d", code)
	}
	// Other instances do not see it.
	if code, _ := do(t, "GET", srv.URL+"/x/ac/"+action, nil); code != 404 {
		t.Fatalf("other instance: %d", code)
	}
}

func mustDigest(t *testing.T, b []byte) *repb.Digest {
	d, err := digest.Of(sha, b)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestConcurrentPuts(t *testing.T) {
	st := memory.New(0)
	srv := httptest.NewServer(httpcache.New(st, httpcache.Options{}))
	defer srv.Close()
	data := bytes.Repeat([]byte("concurrent "), 50_000)
	url := srv.URL + "/cas/" + hash(t, data)
	var wg sync.WaitGroup
	codes := make(chan int, 16)
	for range 8 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("PUT", url, bytes.NewReader(data))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				codes <- -1
				return
			}
			resp.Body.Close()
			codes <- resp.StatusCode
		}()
		go func() {
			defer wg.Done()
			resp, err := http.Get(url)
			if err != nil {
				return
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 && !bytes.Equal(got, data) {
				codes <- -2
			}
		}()
	}
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != 200 {
			t.Errorf("status %d (-2: a reader saw a partial blob)", c)
		}
	}
}

func TestTruncatedPut(t *testing.T) {
	st := memory.New(0)
	srv := httptest.NewServer(httpcache.New(st, httpcache.Options{}))
	defer srv.Close()
	data := bytes.Repeat([]byte("y"), 1000)
	h := hash(t, data)
	conn, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "PUT /cas/%s HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n", h)
	conn.Write(data[:300])
	conn.(*net.TCPConn).CloseWrite()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatal("truncated PUT succeeded")
		}
	}
	conn.Close()
	if n := st.Stats().Entries; n != 0 {
		t.Fatalf("truncated PUT stored %d entries", n)
	}
	if code, _ := do(t, "GET", srv.URL+"/cas/"+h, nil); code != 404 {
		t.Fatalf("GET after truncated PUT: %d", code)
	}
}

// sizerStore finds sizes by hash, as a backend may; Sizer is found through
// decorators.
type sizerStore struct {
	*memory.Store
	sizes map[string]int64
}

func (s sizerStore) Size(_ context.Context, k store.Key) (int64, error) {
	if n, ok := s.sizes[k.Hash]; ok {
		return n, nil
	}
	return 0, store.ErrNotFound
}

func TestSizerThroughDecorators(t *testing.T) {
	data := []byte("uploaded elsewhere")
	h := hash(t, data)
	mem := memory.New(0)
	k := store.Key{Kind: store.CAS, Function: sha, Hash: h, Size: int64(len(data))}
	if err := mem.Put(context.Background(), k, k.Size, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	st := store.Verifying(sizerStore{mem, map[string]int64{h: k.Size}})
	srv := httptest.NewServer(httpcache.New(st, httpcache.Options{}))
	defer srv.Close()
	if code, got := do(t, "GET", srv.URL+"/cas/"+h, nil); code != 200 || !bytes.Equal(got, data) {
		t.Fatalf("GET via Sizer: %d %q", code, got)
	}
}

// TestConcurrentPutsOnDisk: the same and different blobs PUT at once over
// HTTP onto the disk store all succeed and read back whole.
func TestConcurrentPutsOnDisk(t *testing.T) {
	d, err := disk.Open(disk.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	srv := httptest.NewServer(httpcache.New(d, httpcache.Options{}))
	defer srv.Close()
	var blobs [][]byte
	for i := range 4 {
		blobs = append(blobs, bytes.Repeat([]byte{byte('a' + i)}, 100_000*(i+1)))
	}
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for round := range 4 {
		for i, b := range blobs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				url := srv.URL + "/cas/" + hash(t, b)
				req, _ := http.NewRequest("PUT", url, bytes.NewReader(b))
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					errs <- err.Error()
					return
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					errs <- fmt.Sprintf("round %d blob %d: PUT %d %s", round, i, resp.StatusCode, body)
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	for i, b := range blobs {
		if code, got := do(t, "GET", srv.URL+"/cas/"+hash(t, b), nil); code != 200 || !bytes.Equal(got, b) {
			t.Errorf("blob %d: GET %d, %d bytes", i, code, len(got))
		}
	}
}

// TestPutIntoFullStore: a PUT that finds the store's bound held by uploads
// in progress is 503 (retry later), not 413 (the entry could fit).
func TestPutIntoFullStore(t *testing.T) {
	st := memory.New(1 << 20)
	srv := httptest.NewServer(httpcache.New(st, httpcache.Options{}))
	defer srv.Close()
	// An upload in progress holds 900 KiB of the bound.
	big := bytes.Repeat([]byte("b"), 900<<10)
	conn, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "PUT /cas/%s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", hash(t, big), len(big))
	conn.Write(big[:len(big)-1])
	for deadline := time.Now().Add(time.Minute); st.Receiving() != int64(len(big)); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the upload holds %d bytes, want %d", st.Receiving(), len(big))
		}
	}
	data := bytes.Repeat([]byte("s"), 600<<10)
	code, body := do(t, "PUT", srv.URL+"/cas/"+hash(t, data), data)
	if code != http.StatusServiceUnavailable || !strings.Contains(string(body), "1048576") {
		t.Fatalf("PUT beside an upload holding the bound: %d %s, want 503 naming the bound", code, body)
	}
}
