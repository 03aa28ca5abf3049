package crates

import "testing"

// FuzzParseTOML: the Cargo.toml/Cargo.lock reader returns a document or an
// error for any input, never panics or loops. Seeds in testdata/fuzz.
// Run: go test -run '^$' -fuzz FuzzParseTOML -fuzztime 10s ./crates/
func FuzzParseTOML(f *testing.F) {
	for _, s := range []string{
		"[package]\nname = \"a\"\nversion = \"1.0.0\"\n",
		"[dependencies]\nserde = { version = \"1\", features = [\"derive\"] }\n",
		"a.b.c = 'lit'\n[[x]]\ny = \"\"\"multi\nline\"\"\"\n",
		"k = \"\\u00e9\\n\"\narr = [1, 2, [3]]\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		parseTOML(src)
	})
}

// FuzzParseLock: a Cargo.lock is a Lock or an error; every package of a
// Lock has a name and a version.
// Run: go test -run '^$' -fuzz FuzzParseLock -fuzztime 10s ./crates/
func FuzzParseLock(f *testing.F) {
	f.Add([]byte("version = 3\n\n[[package]]\nname = \"a\"\nversion = \"0.1.0\"\ndependencies = [\"b\"]\n\n[[package]]\nname = \"b\"\nversion = \"1.2.3\"\nsource = \"registry+https://example.invalid/index\"\nchecksum = \"00\"\n"))
	f.Add([]byte("[[package]]\nname = \"x\"\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		lock, err := parseLock("Cargo.lock", data)
		if err != nil {
			return
		}
		for _, p := range append(lock.Packages, lock.Members...) {
			if p.Name == "" || p.Version == "" {
				t.Fatalf("package without name or version: %+v", p)
			}
		}
	})
}
