package httpcache_test

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ferrule-build/ferrule/remote/httpcache"
	"github.com/ferrule-build/ferrule/remote/store/memory"
)

// FuzzHandler: any request the HTTP server would parse (method, path,
// headers, body, read from raw bytes as net/http reads them) gets a 2xx or
// 4xx/503 answer, never a panic or a 500; and afterwards every CAS blob a
// GET serves has the content its path names.
// Run: go test -run '^$' -fuzz '^FuzzHandler$' -fuzztime 10s ./remote/httpcache/
func FuzzHandler(f *testing.F) {
	hello := sha256.Sum256([]byte("hello"))
	h := hex.EncodeToString(hello[:])
	for _, s := range []string{
		"PUT /cas/" + h + " HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
		"PUT /cas/" + h + " HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhellx",
		"PUT /inst/a/ac/" + h + " HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n\x0a\x01a\r\n0\r\n\r\n",
		"GET /cas/" + h + " HTTP/1.1\r\nHost: x\r\nRange: bytes=1-2\r\n\r\n",
		"HEAD /../ac/" + h + " HTTP/1.1\r\nHost: x\r\n\r\n",
		"DELETE /cas/zz HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	st := memory.New(64 << 20)
	handler := httpcache.New(st, httpcache.Options{MaxResultBytes: 1 << 20})
	f.Fuzz(func(t *testing.T, raw []byte) {
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
		if err != nil {
			return // the server answers 400 before any handler runs
		}
		w := httptest.NewRecorder()
		handler.ServeHTTP(w, req)
		if c := w.Code; c == http.StatusInternalServerError || c < 200 || c > 599 {
			t.Fatalf("%q: status %d: %s", raw, c, w.Body.String())
		}
		path := req.URL.Path
		if i := strings.LastIndex(path, "/cas/"); i >= 0 {
			get := httptest.NewRequest(http.MethodGet, "/", nil)
			get.URL.Path = path
			w := httptest.NewRecorder()
			handler.ServeHTTP(w, get)
			if w.Code == http.StatusOK {
				body, _ := io.ReadAll(w.Body)
				sum := sha256.Sum256(body)
				if want := path[i+len("/cas/"):]; hex.EncodeToString(sum[:]) != want {
					t.Fatalf("GET %s served %d bytes of another blob", path, len(body))
				}
			}
		}
	})
}
