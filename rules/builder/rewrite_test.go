package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRewriteLongestPrefixFirst(t *testing.T) {
	pairs, err := parseReplacements([]string{"/out=<out>", "/out/execroot/ws=."})
	if err != nil {
		t.Fatal(err)
	}
	got := string(rewrite([]byte("a /out/execroot/ws/x.h b /out/y.h"), pairs))
	if want := "a ./x.h b <out>/y.h"; got != want {
		t.Errorf("rewrite = %q, want %q", got, want)
	}
}

func TestRewritePWD(t *testing.T) {
	wd, _ := os.Getwd()
	pairs, err := parseReplacements([]string{"${PWD}/=", "x=y"})
	if err != nil {
		t.Fatal(err)
	}
	got := string(rewrite([]byte(wd+"/include/Python.h x"), pairs))
	if got != "include/Python.h y" {
		t.Errorf("rewrite = %q", got)
	}
}

func TestRewriteBadSpec(t *testing.T) {
	for _, s := range []string{"noequals", "=empty-old"} {
		if _, err := parseReplacements([]string{s}); err == nil {
			t.Errorf("parseReplacements(%q) accepted a bad spec", s)
		}
	}
}

func TestDispatchRewrite(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.txt")
	out := filepath.Join(dir, "out.txt")
	os.WriteFile(in, []byte("path /sandbox/123/execroot/x\n"), 0o644)
	var so, se bytes.Buffer
	if code := dispatch([]string{"rewrite", "--in", in, "--out", out, "--replace", "/sandbox/123/execroot/=@/"}, &so, &se); code != 0 {
		t.Fatalf("exit %d: %s", code, se.String())
	}
	b, _ := os.ReadFile(out)
	if string(b) != "path @/x\n" {
		t.Errorf("output = %q", b)
	}
	if _, err := os.Stat(out + ".tmp"); !os.IsNotExist(err) {
		t.Errorf("temporary file left behind: %v", err)
	}
}

func TestDispatchErrors(t *testing.T) {
	var so, se bytes.Buffer
	if code := dispatch([]string{"nope"}, &so, &se); code != 2 || !strings.Contains(se.String(), `"nope"`) {
		t.Errorf("unknown subcommand: exit %d, stderr %q", code, se.String())
	}
	se.Reset()
	if code := dispatch([]string{"rewrite", "--in", "/does/not/exist", "--out", "/tmp/x"}, &so, &se); code != 1 || !strings.Contains(se.String(), "/does/not/exist") {
		t.Errorf("missing input: exit %d, stderr %q", code, se.String())
	}
}
