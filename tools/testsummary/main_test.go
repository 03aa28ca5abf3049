package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestSummaryCountsTestFunctions(t *testing.T) {
	in := strings.Join([]string{
		`{"Action":"run","Package":"p","Test":"TestA"}`,
		`{"Action":"pass","Package":"p","Test":"TestA"}`,
		`{"Action":"run","Package":"p","Test":"TestB"}`,
		`{"Action":"output","Package":"p","Test":"TestB","Output":"    b_test.go:9: needs a toolchain root\n"}`,
		`{"Action":"skip","Package":"p","Test":"TestB"}`,
		`{"Action":"run","Package":"p","Test":"TestC/sub"}`,
		`{"Action":"output","Package":"p","Test":"TestC/sub","Output":"    c_test.go:3: boom\n"}`,
		`{"Action":"fail","Package":"p","Test":"TestC/sub"}`,
		`{"Action":"output","Package":"p","Test":"TestC","Output":"--- FAIL: TestC\n"}`,
		`{"Action":"fail","Package":"p","Test":"TestC"}`,
		`{"Action":"fail","Package":"p","Elapsed":1.5}`,
		`{"Action":"pass","Package":"q","Test":"TestD","Elapsed":7}`,
		`{"Action":"build-output","ImportPath":"r","Output":"r/x.go:1:1: syntax error\n"}`,
		`{"Action":"pass","Package":"q","Elapsed":0.1}`,
		`# q [build failed]`,
	}, "\n")
	var out bytes.Buffer
	s, err := run(strings.NewReader(in), &out)
	if err != nil {
		t.Fatal(err)
	}
	if s.passed != 2 || s.failed != 1 || s.skipped != 1 || s.pkgFailed != 1 {
		t.Errorf("counts %+v", s)
	}
	got := out.String()
	for _, want := range []string{
		"go: 2 passed, 1 failed, 1 skipped\n",
		"p TestB: needs a toolchain root",
		"--- FAIL: TestC (p)",
		"--- FAIL: TestC/sub (p)\n    c_test.go:3: boom",
		"FAIL\tp\t1.5s",
		"ok\tq\t0.1s",
		"# q [build failed]",
		"--- PASS: TestD (q, 7.0s)",
		"r/x.go:1:1: syntax error",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
}
