package explain

import (
	"bytes"
	"os"
	"testing"
)

// FuzzRead: any execution log parses or is an error, never a panic; what
// parses can be compared with itself.
// Run: go test -run '^$' -fuzz FuzzRead -fuzztime 10s ./remote/explain/
func FuzzRead(f *testing.F) {
	for _, name := range []string{"machine_a.json", "truncated.json", "wrongtype.json", "notspawn.json"} {
		data, err := os.ReadFile("testdata/" + name)
		if err != nil {
			f.Fatal(err)
		}
		if len(data) > 4096 {
			data = data[:4096]
		}
		f.Add(data)
	}
	f.Add([]byte(`[{"commandArgs":["cc"],"inputs":[{"path":"a","digest":{"hash":"00","sizeBytes":"1"}}]}]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		spawns, err := Read(bytes.NewReader(data))
		if err != nil {
			return
		}
		Compare(spawns, spawns)
	})
}
