package crates

import (
	"reflect"
	"testing"
)

func TestParseTOML(t *testing.T) {
	doc, err := parseTOML(`# comment
[package]
name = "x" # trailing comment
version = '1.0'
description = """
line one
line "two" \
  joined"""
keywords = [
  "a", # comment inside
  "b",
]
n = 1_000
yes = true

[dependencies.foo]
features = ["bar"]

[target."cfg(unix)".dependencies]
libc = { version = "0.2", default-features = false }

[[bin]]
name = "one"

[[bin]]
name = "two"
`)
	if err != nil {
		t.Fatal(err)
	}
	pkg := table(doc["package"])
	if pkg["name"] != "x" || pkg["version"] != "1.0" || pkg["n"] != int64(1000) || pkg["yes"] != true {
		t.Errorf("package = %v", pkg)
	}
	if got := pkg["description"]; got != "line one\nline \"two\" joined" {
		t.Errorf("description = %q", got)
	}
	if got := strs(pkg["keywords"]); !reflect.DeepEqual(got, []string{"a", "b"}) {
		t.Errorf("keywords = %v", got)
	}
	if got := strs(table(table(doc["dependencies"])["foo"])["features"]); !reflect.DeepEqual(got, []string{"bar"}) {
		t.Errorf("foo features = %v", got)
	}
	libc := table(table(table(table(doc["target"])["cfg(unix)"])["dependencies"])["libc"])
	if libc["default-features"] != false || libc["version"] != "0.2" {
		t.Errorf("libc = %v", libc)
	}
	if bins := list(doc["bin"]); len(bins) != 2 || table(bins[1])["name"] != "two" {
		t.Errorf("bin = %v", doc["bin"])
	}
}

func TestParseTOMLErrors(t *testing.T) {
	for _, bad := range []string{
		"name = \"unterminated\n",
		"[package\nname = 1\n",
		"a = 1\na = 2\n",
		"a = [1, 2\n",
		"a = nope\n",
	} {
		if _, err := parseTOML(bad); err == nil {
			t.Errorf("parseTOML(%q) succeeded", bad)
		}
	}
}

func TestMatchTarget(t *testing.T) {
	for spec, want := range map[string]bool{
		"":                                       true,
		"x86_64-unknown-linux-gnu":               true,
		"x86_64-pc-windows-msvc":                 false,
		"cfg(unix)":                              true,
		"cfg(windows)":                           false,
		`cfg(target_os = "linux")`:               true,
		`cfg(not(target_os = "linux"))`:          false,
		`cfg(all(unix, target_arch = "x86_64"))`: true,
		`cfg(any(windows, target_os = "macos"))`: false,
		`cfg(any(windows, unix))`:                true,
	} {
		got, err := matchTarget(spec, "x86_64-unknown-linux-gnu")
		if err != nil || got != want {
			t.Errorf("matchTarget(%q) = %v, %v; want %v", spec, got, err, want)
		}
	}
}
